"""Energy distance against a brute-force double loop, and the support-points selector of AISEL (eq. 10)."""

import math

import pytest
import torch

import latentlab  # noqa: F401  (torchvision shim first)
from latentlab.samplers import energy
from latentlab.samplers.energy import energy_distance, support_points, support_points_reference
from latentlab.samplers.entropy import entropy_density, top_entropy


def brute_energy(x, y, wx=None, wy=None) -> float:
    """2 E||X-Y|| - E||X-X'|| - E||Y-Y'|| with explicit loops over every pair."""
    wx = [1.0] * len(x) if wx is None else wx.tolist()
    wy = [1.0] * len(y) if wy is None else wy.tolist()
    wx, wy = [w / sum(wx) for w in wx], [w / sum(wy) for w in wy]

    def mean_dist(a, b, wa, wb):
        total = 0.0
        for i in range(len(a)):
            for j in range(len(b)):
                total += wa[i] * wb[j] * math.dist(a[i].tolist(), b[j].tolist())
        return total

    return 2 * mean_dist(x, y, wx, wy) - mean_dist(x, x, wx, wx) - mean_dist(y, y, wy, wy)


@pytest.mark.parametrize("weighted", [False, True])
def test_energy_distance_matches_brute_force(weighted):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(13, 3, generator=gen), torch.randn(17, 3, generator=gen) + 0.5
    wx = torch.rand(13, generator=gen) if weighted else None
    wy = torch.rand(17, generator=gen) if weighted else None
    expected = brute_energy(x, y, wx, wy)
    assert expected > 0.05  # the sets differ, so a bug that returns ~0 cannot pass
    assert energy_distance(x, y, wx, wy, chunk=4) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_energy_distance_zero_for_identical_sets_and_symmetric():
    x = torch.rand(50, 4, generator=torch.Generator().manual_seed(1))
    assert abs(energy_distance(x, x)) < 1e-12
    w = torch.rand(50)
    assert abs(energy_distance(x, x, w, w)) < 1e-12
    y = x + 0.3
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x))


def test_energy_distance_weights_matter():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0]])
    assert energy_distance(x, y, torch.tensor([1.0, 0.0])) == pytest.approx(0.0, abs=1e-12)
    assert energy_distance(x, y) > 0.1


def _uniform(n, r, seed):
    return torch.rand(n, r, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_selector_beats_random_points_and_stays_in_box():
    target, w = _uniform(2000, 2, 0), None
    fixed = _uniform(10, 2, 1)
    new = support_points(target, 40, w, fixed=fixed, iters=60)
    assert new.shape == (40, 2)
    assert new.min() >= -1 and new.max() <= 1
    random = _uniform(40, 2, 2)
    ed_sp = energy_distance(torch.cat([new, fixed]), target)
    ed_random = energy_distance(torch.cat([random, fixed]), target)
    assert ed_sp < 0.5 * ed_random


def test_selector_puts_more_points_where_the_weight_is_higher():
    target = _uniform(3000, 2, 3)
    w = torch.where((target[:, 0] > 0) & (target[:, 1] > 0), 9.0, 1.0)  # 3/4 of the mass in the (+,+) quadrant
    new = support_points(target, 60, w, iters=60)
    share = ((new[:, 0] > 0) & (new[:, 1] > 0)).float().mean()
    assert share > 0.6  # area share is 0.25; mass share is 0.75


def test_selector_holds_fixed_points_and_fills_the_gap_they_leave():
    target = _uniform(3000, 2, 4)
    fixed = _uniform(60, 2, 5)
    fixed[:, 0] = fixed[:, 0].abs() * -1  # the real points cover only the left half
    before = fixed.clone()
    new = support_points(target, 60, fixed=fixed, iters=60)
    assert torch.equal(fixed, before)  # never moved (nor written to)
    assert (new[:, 0] > 0).float().mean() > 0.75  # new points go where the fixed ones leave the target uncovered
    alone = support_points(target, 60, iters=60)
    assert (alone[:, 0] > 0).float().mean() < 0.65  # without fixed points they spread over both halves


def test_vectorised_selector_equals_plain_reference():
    target, w = _uniform(500, 3, 6), torch.rand(500, generator=torch.Generator().manual_seed(7))
    fixed = _uniform(8, 3, 8)
    fast = support_points(target, 20, w, fixed=fixed, iters=15, chunk=7)
    slow = support_points_reference(target, 20, w, fixed=fixed, iters=15)
    assert torch.allclose(fast, slow, atol=1e-4)


def test_entropy_density_and_top_entropy():
    class Toy(torch.nn.Module):  # "generator": the image is the feature itself
        def __init__(self):
            super().__init__()
            self.bn = torch.nn.BatchNorm1d(1)

        def forward(self, f):
            return f

    classifier = torch.nn.Linear(1, 2)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[5.0], [-5.0]]))
        classifier.bias.zero_()
    f = torch.linspace(-1, 1, 21)[:, None]
    h = entropy_density(classifier, Toy(), f)
    assert h.shape == (21,)
    assert h.argmax() == 10 and h[10] == pytest.approx(math.log(2), rel=1e-5)  # uncertain at the boundary f = 0
    assert set(top_entropy(h, 3).tolist()) == {9, 10, 11}


def test_the_fixed_point_update_is_a_gradient_step_of_eq_10_and_never_raises_it():
    gen = torch.Generator().manual_seed(9)
    target = torch.rand(300, 2, generator=gen, dtype=torch.float64) * 2 - 1
    fixed = torch.rand(10, 2, generator=gen, dtype=torch.float64) * 2 - 1
    w = torch.rand(300, generator=gen, dtype=torch.float64)
    x = (torch.rand(20, 2, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_()
    grad, = torch.autograd.grad(energy.objective(x, target, w, fixed), x)
    x = x.detach()
    q = ((w / w.sum()) / torch.cdist(x, target)).sum(1, keepdim=True)
    assert torch.allclose(energy.update(x, target, w, fixed), x - grad / q, atol=1e-10)
    values = [energy.objective(x, target, w, fixed).item()]
    for _ in range(5):
        x = energy.update(x, target, w, fixed)
        values.append(energy.objective(x, target, w, fixed).item())
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:])) and values[-1] < values[0]


def test_the_objective_is_the_energy_distance_up_to_a_constant():
    """Eq. 10 = (m+n)/2 * D^2(points, target) minus terms that do not depend on the free points."""
    gen = torch.Generator().manual_seed(10)
    target = torch.rand(200, 2, generator=gen, dtype=torch.float64)
    w = torch.rand(200, generator=gen, dtype=torch.float64)
    a, b = torch.rand(15, 2, generator=gen, dtype=torch.float64), torch.rand(15, 2, generator=gen, dtype=torch.float64)
    gap = lambda x: energy.objective(x, target, w).item() - len(x) / 2 * energy_distance(x, target, weights_y=w)
    assert gap(a) == pytest.approx(gap(b), abs=1e-9)
