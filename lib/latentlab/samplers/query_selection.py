"""Latent-space query selection (Killeen, "Query Selection based on Latent Space Sampling"; code: `latens`).

Which N unlabelled images should an expert label first, if only n labels can be paid for? Encode every image to a
code z_i in a small latent space (L = 2 in the paper), then sample the latent space instead of the images.

Algorithm 1 (the paper's pseudocode), for a clustering S = {S_1..S_C} of the codes (one cluster S = [N] for the
unclustered samplers), a distribution f_S per cluster and a distance threshold t:

  for each cluster S:
      n_S = round(n |S| / N)                                    (line 3: the cluster's quota)
      while |Q_S| < n_S:  draw z ~ f_S; accept points i in S with ||z - z_i||_2 < t     (lines 5-11)
  return the union of the Q_S

Choices we make, each a parameter:
- Which points a draw accepts (`accept`): the pseudocode adds *every* point within t; the `latens` code adds the
  *nearest* point if it lies within t. At MNIST density a ball of radius t around a draw holds hundreds of codes,
  so 'all' fills a quota with one tight clump; we default to 'nearest' (the code the paper's table came from).
  'all' adds the points within t nearest first and stops at the quota. Either way a point is accepted at most once
  (the `latens` code draws with replacement, which would give the latent arms fewer distinct labelled images than
  Random for the same budget): the nearest *not yet chosen* point within t is taken.
- Quotas: round(n |S| / N) with largest-remainder rounding, so that they sum to exactly n (plain rounding can
  give n +- a few); each quota is floor or ceil of n |S| / N.
- The threshold t is in units of the latent spread s = sqrt(mean_d Var(z_d)), the root mean per-dimension variance
  of all N codes (for a VAE whose codes follow its N(0, I) prior, s ~ 1, so the code's t = 0.25 keeps its meaning).
- Distributions f_S: 'uniform' draws each dimension uniformly between the cluster's min and max, 'normal' draws
  from a Gaussian with the cluster's mean and covariance (as `latens`' UniformSampler and
  MultivariateNormalSampler).
- Clusters: scikit-learn's AgglomerativeClustering (Ward) into 10 clusters. Ward needs O(N^2) memory, so it runs on
  a seeded subsample of `max_points` codes (5000) and every code joins the cluster with the nearest centroid.
- Draws are capped (`max_draws` per quota slot); a sampler that cannot fill a quota raises a ValueError that says
  how many points it found and what to change.

Baselines: Random (n indices uniformly without replacement) and AE-error (the n images the autoencoder reconstructs
worst). Beyond the paper, two standard cold-start selectors on the same codes: k-center greedy (the core-set
selector of Sener & Savarese 2018) and TypiClust (Hacohen et al. 2022).

Also here: two properties of a query set itself (`query_set_stats`: class coverage and class balance). The paper's
unbalanced MNIST is data, not a sampler: `latentlab.experiments.query_selection.unbalance_mnist`.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import AgglomerativeClustering, KMeans, MiniBatchKMeans
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestCentroid, NearestNeighbors

LATENT_SAMPLERS = ("uniform", "normal", "clustered-uniform", "clustered-normal")
BASELINES = ("random", "ae-error")
COLD_START = ("kcenter", "typiclust")
METHODS = BASELINES + LATENT_SAMPLERS + COLD_START


def _check(codes, n: int) -> np.ndarray:
    codes = np.asarray(codes.detach().cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.float64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a (N, L) array of latent codes; got shape {codes.shape}.")
    if int(n) != n or not 1 <= n <= len(codes):
        raise ValueError(f"n must be a whole number from 1 to the pool size {len(codes)}; got {n}. "
                         "Ask for fewer points or give a larger pool.")
    return codes


def latent_spread(codes) -> float:
    """s = sqrt(mean_d Var(z_d)): the unit of the distance threshold t."""
    codes = np.asarray(codes, dtype=np.float64)
    return float(np.sqrt(codes.var(0).mean()))


# --------------------------------------------------------------------------- clusters and quotas


def cluster(codes, n_clusters: int = 10, *, seed: int = 0, max_points: int = 5000) -> np.ndarray:
    """Agglomerative (Ward) cluster labels 0..n_clusters-1 for every code.

    Ward runs on a seeded subsample of at most max_points codes; the others join the nearest cluster centroid.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if not 1 <= n_clusters <= len(codes):
        raise ValueError(f"n_clusters must be from 1 to the number of codes ({len(codes)}); got {n_clusters}.")
    rng = np.random.default_rng(seed)
    sub = rng.choice(len(codes), min(max_points, len(codes)), replace=False)
    sub_labels = AgglomerativeClustering(n_clusters).fit_predict(codes[sub])
    if len(sub) == len(codes):
        labels = np.empty(len(codes), dtype=np.int64)
        labels[sub] = sub_labels
        return labels
    return NearestCentroid().fit(codes[sub], sub_labels).predict(codes).astype(np.int64)


def cluster_quotas(labels, n: int) -> dict[int, int]:
    """Algorithm 1, line 3: n_S = round(n |S| / N) per cluster, rounded by largest remainder to sum to n."""
    clusters, sizes = np.unique(np.asarray(labels), return_counts=True)
    exact = n * sizes / sizes.sum()
    quota = np.floor(exact).astype(int)
    by_remainder = np.argsort(-(exact - quota), kind="stable")
    quota[by_remainder[: n - quota.sum()]] += 1
    return {int(c): int(q) for c, q in zip(clusters, quota)}


# --------------------------------------------------------------------------- Algorithm 1


def draw(distribution: str, codes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` latent points z ~ f_S fitted to `codes` (one cluster): 'uniform' (per-dimension min..max) or 'normal'
    (mean and covariance)."""
    if distribution == "uniform":
        return rng.uniform(codes.min(0), codes.max(0), size=(size, codes.shape[1]))
    if distribution == "normal":
        cov = np.cov(codes, rowvar=False).reshape(codes.shape[1], codes.shape[1]) if len(codes) > 1 else None
        if cov is None:
            return np.repeat(codes, size, axis=0)
        return rng.multivariate_normal(codes.mean(0), cov, size=size, method="eigh")
    raise ValueError(f"Unknown latent distribution {distribution!r}. Choose 'uniform' or 'normal'.")


def _fill_quota(codes: np.ndarray, quota: int, distribution: str, t: float, rng: np.random.Generator,
                accept: str, max_draws: int, trace: list | None = None, batch: int = 256) -> list[int]:
    """Lines 4-12 of Algorithm 1 for one cluster: positions (into `codes`) of `quota` distinct accepted points.

    trace: a list that receives (z, positions accepted by that draw) for every draw."""
    chosen: list[int] = []
    free = np.ones(len(codes), dtype=bool)
    draws = 0
    while len(chosen) < quota:
        if draws >= max_draws:
            raise ValueError(f"Algorithm 1 found only {len(chosen)} of {quota} points of a cluster of {len(codes)} "
                             f"within t after {draws} draws from the {distribution} distribution. Raise the "
                             f"threshold t, ask for fewer points, or raise max_draws_per_point.")
        for z in draw(distribution, codes, min(batch, max_draws - draws), rng):
            draws += 1
            d = np.linalg.norm(codes - z, axis=1)
            d[~free] = np.inf
            if accept == "nearest":
                hits = [int(d.argmin())] if d.min() < t else []
            else:  # 'all': every free point within t, nearest first, up to the quota
                inside = np.flatnonzero(d < t)
                hits = inside[np.argsort(d[inside], kind="stable")][: quota - len(chosen)].tolist()
            chosen += hits
            free[hits] = False
            if trace is not None:
                trace.append((z, hits))
            if len(chosen) == quota:
                break
    return chosen


def algorithm1(codes, n: int, *, distribution: str, labels=None, t: float = 0.25, seed: int = 0,
               accept: str = "nearest", max_draws_per_point: int = 50, trace: list | None = None) -> np.ndarray:
    """Algorithm 1: n distinct indices of `codes` sampled by f_S per cluster (labels=None: one cluster).

    t is in units of the latent spread (`latent_spread`); each cluster may draw at most
    max_draws_per_point * n_S + 100 times. trace: a list that receives (cluster, z, indices accepted) for every
    draw, to show the algorithm at work. Returns the chosen indices, sorted.
    """
    codes = _check(codes, n)
    if accept not in ("nearest", "all"):
        raise ValueError(f"Unknown accept rule {accept!r}. Choose 'nearest' (the latens code) or 'all' "
                         "(the paper's pseudocode).")
    if t <= 0:
        raise ValueError(f"The threshold t must be positive (in units of the latent spread); got {t}.")
    labels = np.zeros(len(codes), dtype=np.int64) if labels is None else np.asarray(labels)
    if labels.shape != (len(codes),):
        raise ValueError(f"labels must give one cluster per code, shape ({len(codes)},); got {labels.shape}.")
    rng = np.random.default_rng(seed)
    t_abs = t * latent_spread(codes)
    picks = []
    for c, quota in cluster_quotas(labels, n).items():
        members = np.flatnonzero(labels == c)
        steps = [] if trace is not None else None
        found = _fill_quota(codes[members], quota, distribution, t_abs, rng, accept,
                            max_draws_per_point * quota + 100, steps)
        picks.append(members[found])
        if trace is not None:
            trace += [(c, z, members[hits]) for z, hits in steps]
    return np.sort(np.concatenate(picks))


# --------------------------------------------------------------------------- baselines and cold-start selectors


def random_selection(n_pool: int, n: int, *, seed: int = 0) -> np.ndarray:
    """Random: n distinct indices of range(n_pool), uniformly, seeded, sorted."""
    if int(n) != n or not 1 <= n <= n_pool:
        raise ValueError(f"n must be a whole number from 1 to the pool size {n_pool}; got {n}.")
    return np.sort(np.random.default_rng(seed).choice(n_pool, int(n), replace=False))


def ae_error_selection(errors, n: int) -> np.ndarray:
    """AE-error: the n images with the largest reconstruction error (ties: lower index first), sorted."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    _check(errors[:, None], n)
    return np.sort(np.argsort(-errors, kind="stable")[:n])


def kcenter_greedy(codes, n: int, *, seed: int = 0) -> np.ndarray:
    """k-center greedy (Sener & Savarese 2018): start at a seeded random point, then add the point farthest from
    every chosen one, n - 1 times (a 2-approximation of the minimax cover). Returns indices in the order chosen."""
    codes = _check(codes, n)
    sq = (codes**2).sum(1)
    sq_dist_to = lambda c: np.maximum(sq + sq[c] - 2 * codes @ codes[c], 0)  # ||z_i - z_c||^2 for every i
    chosen = [int(np.random.default_rng(seed).integers(len(codes)))]
    nearest = sq_dist_to(chosen[0])  # squared distance of every point to its nearest center
    for _ in range(n - 1):
        chosen.append(int(nearest.argmax()))
        nearest = np.minimum(nearest, sq_dist_to(chosen[-1]))
    return np.array(chosen)


def typicality(codes, k: int = 20) -> np.ndarray:
    """TypiClust's typicality of each code: 1 / (mean distance to its k nearest neighbours among `codes`)."""
    codes = np.asarray(codes, dtype=np.float64)
    k = min(k, len(codes) - 1)
    if k < 1:
        return np.ones(len(codes))
    if len(codes) <= 1000:  # small sets (TypiClust's clusters): one distance matrix beats a neighbour index
        dist = np.sort(pairwise_distances(codes), axis=1)[:, : k + 1]
    else:
        dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(codes).kneighbors(codes)
    return 1.0 / (dist[:, 1:].mean(1) + 1e-12)  # column 0 is the point itself


def typiclust(codes, n: int, *, seed: int = 0, k: int = 20) -> np.ndarray:
    """TypiClust (Hacohen et al. 2022), cold start: k-means into n clusters, then the most typical point of each
    (typicality measured within its cluster). As in the authors' code, KMeans up to 50 clusters and MiniBatchKMeans
    beyond. A cluster left empty by MiniBatchKMeans is replaced by the most typical point not yet picked.
    Returns indices, sorted."""
    codes = _check(codes, n)
    kmeans = KMeans(n, n_init=1, random_state=seed) if n <= 50 else \
        MiniBatchKMeans(n, n_init=1, random_state=seed, batch_size=4096)
    labels = kmeans.fit_predict(codes)
    typ = np.zeros(len(codes))
    picks = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        typ[members] = typicality(codes[members], k)
        picks.append(members[int(typ[members].argmax())])
    order = np.argsort(-typ, kind="stable")
    rest = order[~np.isin(order, picks)]
    return np.sort(np.concatenate([picks, rest[: n - len(picks)]]).astype(np.int64))


# --------------------------------------------------------------------------- one entry point


def select(method: str, codes, n: int, *, seed: int = 0, errors=None, t: float = 0.25, n_clusters: int = 10,
           clusters=None, accept: str = "nearest", max_points: int = 5000, typiclust_k: int = 20) -> np.ndarray:
    """n distinct pool indices chosen by `method` (one of METHODS) from latent codes (N, L), sorted.

    errors: per-image reconstruction errors (N,), needed by 'ae-error' only. t, n_clusters, accept and max_points
    set Algorithm 1 (see `algorithm1` and `cluster`); clusters: labels from `cluster` to reuse (else computed
    with this seed); typiclust_k: the neighbours of TypiClust's typicality.
    """
    codes = _check(codes, n)
    if method == "random":
        return random_selection(len(codes), n, seed=seed)
    if method == "ae-error":
        if errors is None or len(errors) != len(codes):
            raise ValueError("'ae-error' needs errors=, one reconstruction error per code.")
        return ae_error_selection(errors, n)
    if method == "kcenter":
        return np.sort(kcenter_greedy(codes, n, seed=seed))
    if method == "typiclust":
        return typiclust(codes, n, seed=seed, k=typiclust_k)
    if method in LATENT_SAMPLERS:
        clustered = method.startswith("clustered-")
        labels = None
        if clustered:
            labels = cluster(codes, n_clusters, seed=seed, max_points=max_points) if clusters is None else clusters
        return algorithm1(codes, n, distribution=method.removeprefix("clustered-"), labels=labels, t=t, seed=seed,
                          accept=accept)
    raise ValueError(f"Unknown selection method {method!r}. Choose one of: {', '.join(METHODS)}.")


# --------------------------------------------------------------------------- query-set properties


def query_set_stats(y_selected, n_classes: int) -> dict[str, float]:
    """Class coverage (number of classes present) and class balance (entropy of the class histogram / log K,
    1 = perfectly balanced) of a query set's labels."""
    counts = np.bincount(np.asarray(y_selected, dtype=np.int64), minlength=n_classes)
    p = counts[counts > 0] / counts.sum()
    balance = float(-(p * np.log(p)).sum() / np.log(n_classes)) if n_classes > 1 else 1.0
    return {"coverage": int((counts > 0).sum()), "balance": balance}
