"""Energy distance and support points: how AISEL picks m new latent features (eq. 10 of Chen et al., TPAMI 2021).

The squared energy distance between distributions F and G (Szekely & Rizzo) is
    D^2(F, G) = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||  >= 0,   zero iff F = G.
AISEL treats the classifier's entropy h(f) (eq. 7) as an unnormalised density mu_h on F = [-1, 1]^r and asks for m
new features f'_1..m that, together with the n features of the real images (held fixed), minimise the energy
distance to mu_h (eq. 10):
    min_{f'_1..m}  sum_{i=1}^{m} E_{gamma ~ mu_h} ||f'_i - gamma||  -  sum_{i,j=1}^{m+n} ||f'_i - f'_j|| / (2(m+n)).
The first term pulls points to where the classifier is uncertain, the second pushes them apart (diversity), and the
real images' features count in the second term, so new points avoid regions the labelled data already cover.
We represent mu_h by N weighted samples (uniform draws gamma_k with weights h(gamma_k)) and solve eq. 10 with the
convex-concave fixed-point update of support points (Mak & Joseph 2018, "Support points", Ann. Stat., Alg. 1),
updating only the m free points: setting the gradient of eq. 10 to zero gives
    f'_i  <-  [ sum_k w_k gamma_k / d_ik  +  (1/(m+n)) sum_{j != i} (f'_i - p_j) / ||f'_i - p_j|| ]  /  sum_k w_k / d_ik
with d_ik = ||f'_i - gamma_k||, w normalised to sum to 1 and p_j running over all m + n points. Each step cannot
increase eq. 10 (it minimises a convex majoriser), and each costs O(m (N + m + n)) distances, done in chunks.
"""

from __future__ import annotations

import torch

# Rows of a distance block: CHUNK x N float64 distances stay near 64 MB for N = 20000 (20k x 20k fits easily).
CHUNK = 400


def _weights(w: torch.Tensor | None, n: int, dtype=torch.float64) -> torch.Tensor:
    """Weights normalised to sum to one (uniform when w is None)."""
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=dtype)
    w = torch.as_tensor(w, dtype=dtype).reshape(-1)
    if len(w) != n or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"Weights must be {n} non-negative numbers with a positive sum.")
    return w / w.sum()


def mean_distance(a: torch.Tensor, b: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor, chunk: int = CHUNK) -> float:
    """sum_ij wa_i wb_j ||a_i - b_j||, one block of rows of a at a time so the full matrix is never stored."""
    total = torch.zeros((), dtype=torch.float64)
    for i in range(0, len(a), chunk):
        d = torch.cdist(a[i:i + chunk], b)
        total += wa[i:i + chunk] @ d @ wb
    return float(total)


def energy_distance(x: torch.Tensor, y: torch.Tensor, weights_x: torch.Tensor | None = None,
                    weights_y: torch.Tensor | None = None, chunk: int = CHUNK) -> float:
    """Squared energy distance 2E||X-Y|| - E||X-X'|| - E||Y-Y'|| between two weighted point sets (V-statistic)."""
    x = torch.as_tensor(x, dtype=torch.float64).reshape(len(x), -1)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(len(y), -1)
    wx, wy = _weights(weights_x, len(x)), _weights(weights_y, len(y))
    xy = mean_distance(x, y, wx, wy, chunk)
    return 2 * xy - mean_distance(x, x, wx, wx, chunk) - mean_distance(y, y, wy, wy, chunk)


def _init_points(target: torch.Tensor, w: torch.Tensor, m: int, gen: torch.Generator, low: float,
                 high: float) -> torch.Tensor:
    """m target samples drawn with probability w, jittered: a point sitting exactly on a sample would stick to it."""
    idx = torch.multinomial(w, m, replacement=m > int((w > 0).sum()), generator=gen)
    jitter = 1e-2 * (high - low) * torch.randn(m, target.shape[1], generator=gen, dtype=target.dtype)
    return (target[idx] + jitter).clamp(low, high)


def _step(x: torch.Tensor, target: torch.Tensor, w: torch.Tensor, points: torch.Tensor, chunk: int,
          eps: float) -> torch.Tensor:
    """One fixed-point update of every free point x (the formula in the module docstring), all at once."""
    new = torch.empty_like(x)
    for i in range(0, len(x), chunk):
        xc = x[i:i + chunk]
        inv = w / torch.cdist(xc, target).clamp_min(eps)         # w_k / d_ik
        q = inv.sum(1, keepdim=True)                               # sum_k w_k / d_ik
        attract = inv @ target                                     # sum_k w_k gamma_k / d_ik
        d = torch.cdist(xc, points)
        inv_p = torch.where(d > eps, 1.0 / d.clamp_min(eps), 0.0)  # 1/||x_i - p_j||, 0 for p_j = x_i itself
        repel = xc * inv_p.sum(1, keepdim=True) - inv_p @ points   # sum_j (x_i - p_j) / ||x_i - p_j||
        new[i:i + chunk] = (attract + repel / len(points)) / q
    return new


def objective(x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
              fixed: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 10's objective for the free points x (m, r), with `fixed` (n, r), against the weighted target samples:
    sum_i sum_k w_k ||x_i - gamma_k|| - sum_{i,j} ||p_i - p_j|| / (2(m+n)), p the m + n points (differentiable in x)."""
    w = _weights(weights, len(target), target.dtype)
    points = x if fixed is None else torch.cat([x, fixed.to(x)])
    return (torch.cdist(x, target) @ w).sum() - torch.pdist(points).sum() / len(points)  # pdist: each pair once


def update(x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
           fixed: torch.Tensor | None = None, chunk: int = CHUNK, eps: float = 1e-6) -> torch.Tensor:
    """One fixed-point update of the free points x (the formula in the module docstring): x - grad / q with q_i =
    sum_k w_k / ||x_i - gamma_k||, grad the gradient of `objective`. `support_points` iterates it (and clamps)."""
    w = _weights(weights, len(target), target.dtype)
    points = x if fixed is None else torch.cat([x, fixed.to(x)])
    return _step(x, target, w, points, chunk, eps)


def _fixed_point(target: torch.Tensor, m: int, weights: torch.Tensor | None, fixed: torch.Tensor | None, iters: int,
                 tol: float, seed: int, bounds: tuple[float, float], step) -> torch.Tensor:
    """The support-points iteration of eq. 10; `step(x, target, w, points)` returns every free point's update."""
    target = torch.as_tensor(target, dtype=torch.float32)
    w = _weights(weights, len(target), torch.float32)
    fixed = torch.zeros(0, target.shape[1]) if fixed is None else torch.as_tensor(fixed, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    x = _init_points(target, w, m, gen, *bounds)
    for _ in range(iters):
        # Clamping is the projection onto the box F; the target lives there, so it rarely binds.
        new = step(x, target, w, torch.cat([x, fixed])).clamp(*bounds)
        moved = (new - x).norm(dim=1).max()
        x = new
        if moved < tol:
            break
    return x


def support_points(target: torch.Tensor, m: int, weights: torch.Tensor | None = None,
                   fixed: torch.Tensor | None = None, iters: int = 100, tol: float = 1e-4, seed: int = 0,
                   bounds: tuple[float, float] = (-1.0, 1.0), chunk: int = CHUNK,
                   eps: float = 1e-6) -> torch.Tensor:
    """Eq. 10: m new points that, joined with `fixed`, minimise the energy distance to the weighted `target` samples.

    target: (N, r) samples of the target density; weights: (N,) unnormalised (e.g. entropies h, eq. 7);
    fixed: (n, r) points that count but never move (the real images' encodings). Returns (m, r) inside `bounds`.
    """
    step = lambda x, target, w, points: _step(x, target, w, points, chunk, eps)
    return _fixed_point(target, m, weights, fixed, iters, tol, seed, bounds, step)


def _step_reference(x: torch.Tensor, target: torch.Tensor, w: torch.Tensor, points: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """The update of `_step` written plainly, one point at a time with full distance rows."""
    new = torch.empty_like(x)
    for i in range(len(x)):
        d_target = (target - x[i]).norm(dim=1).clamp_min(eps)
        numerator = (w[:, None] * target / d_target[:, None]).sum(0)
        d_points = (x[i] - points).norm(dim=1)
        others = d_points > eps  # leaves out x_i itself (and exact duplicates)
        numerator += ((x[i] - points[others]) / d_points[others, None]).sum(0) / len(points)
        new[i] = numerator / (w / d_target).sum()
    return new


def support_points_reference(target: torch.Tensor, m: int, weights: torch.Tensor | None = None,
                             fixed: torch.Tensor | None = None, iters: int = 100, tol: float = 1e-4, seed: int = 0,
                             bounds: tuple[float, float] = (-1.0, 1.0), eps: float = 1e-6) -> torch.Tensor:
    """The same algorithm with the plain per-point update: for tests and benchmarks."""
    step = lambda x, target, w, points: _step_reference(x, target, w, points, eps)
    return _fixed_point(target, m, weights, fixed, iters, tol, seed, bounds, step)
