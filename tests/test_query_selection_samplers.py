"""Latent-space query selection (notebook 03): Algorithm 1, its samplers and baselines, the t-SNE affinities.

The experiment itself (arms, data construction, encoders' cache keys, run_seed) is tested in test_query_selection.py.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from latentlab.models.autoencoder import AEConfig, train_autoencoder
from latentlab.models.tsne_ae import (
    TSNEAutoencoder,
    TSNEConfig,
    conditional_affinities,
    fit_tsne_autoencoder,
    joint_affinities,
    pairwise_sq_dists,
    student_t_similarities,
    tsne_kl,
)
from latentlab.samplers.query_selection import (
    METHODS,
    algorithm1,
    cluster,
    cluster_quotas,
    kcenter_greedy,
    latent_spread,
    query_set_stats,
    select,
    typicality,
    typiclust,
)


def _blobs(n_per: int = 60, centers: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated 2-D Gaussian blobs of different sizes, and their labels."""
    rng = np.random.default_rng(seed)
    sizes = [n_per * (1 + c % 3) for c in range(centers)]
    codes = np.concatenate([rng.normal(10 * np.array([c, c % 2]), 1.0, (s, 2)) for c, s in enumerate(sizes)])
    return codes, np.repeat(np.arange(centers), sizes)


# --------------------------------------------------------------------------- every method


@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_n_distinct_pool_indices_and_is_deterministic(method):
    codes, _ = _blobs()
    errors = np.random.default_rng(1).random(len(codes))
    picks = select(method, codes, 40, seed=3, errors=errors, n_clusters=4)
    assert len(picks) == 40 and len(np.unique(picks)) == 40
    assert picks.min() >= 0 and picks.max() < len(codes)
    assert np.array_equal(picks, select(method, codes, 40, seed=3, errors=errors, n_clusters=4))
    if method != "ae-error":  # the only method without randomness
        others = [select(method, codes, 40, seed=s, errors=errors, n_clusters=4) for s in (4, 5)]
        assert any(not np.array_equal(picks, o) for o in others)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_refuses_more_points_than_the_pool(method):
    codes, _ = _blobs(n_per=5)
    with pytest.raises(ValueError, match="pool size"):
        select(method, codes, len(codes) + 1, errors=np.zeros(len(codes)))


def test_unknown_names_and_bad_shapes_are_clear_errors():
    codes, _ = _blobs(n_per=5)
    with pytest.raises(ValueError, match="Choose one of"):
        select("gmm", codes, 5)
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        select("random", codes[:, 0], 5)
    with pytest.raises(ValueError, match="errors="):
        select("ae-error", codes, 5)
    with pytest.raises(ValueError, match="accept"):
        algorithm1(codes, 5, distribution="normal", accept="some")


# --------------------------------------------------------------------------- Algorithm 1


def test_quotas_round_n_times_cluster_share_and_sum_to_n():
    labels = np.repeat([0, 1, 2, 3], [500, 250, 125, 125])
    for n in (7, 10, 100, 333):
        q = cluster_quotas(labels, n)
        assert sum(q.values()) == n
        for c, size in zip(range(4), (500, 250, 125, 125)):
            assert q[c] in (math.floor(n * size / 1000), math.ceil(n * size / 1000))
    assert cluster_quotas(labels, 100) == {0: 50, 1: 25, 2: 13, 3: 12}  # a tie goes to the first cluster


@pytest.mark.parametrize("method", ["clustered-uniform", "clustered-normal"])
@pytest.mark.parametrize("accept", ["nearest", "all"])
def test_clustered_samplers_fill_each_cluster_to_its_quota(method, accept):
    codes, _ = _blobs()
    picks = select(method, codes, 50, seed=2, n_clusters=5, accept=accept, t=0.5)
    labels = cluster(codes, 5, seed=2)
    got = np.bincount(labels[picks], minlength=5)
    assert dict(enumerate(got.tolist())) == cluster_quotas(labels, 50)
    reused = select(method, codes, 50, seed=2, clusters=labels, accept=accept, t=0.5)  # clusters computed once
    assert np.array_equal(reused, picks)


def test_clustering_of_a_large_pool_runs_on_a_subsample_and_assigns_every_point():
    codes, truth = _blobs(n_per=400)  # 2400 points, Ward on 500 of them
    labels = cluster(codes, 5, seed=0, max_points=500)
    assert labels.shape == truth.shape and set(labels.tolist()) == set(range(5))
    # Well separated blobs: every blob is one cluster, whatever the subsample.
    assert all(len(set(labels[truth == b].tolist())) == 1 for b in range(5))


def test_every_accepted_point_lies_within_t_of_a_draw_so_a_tiny_threshold_fails_clearly():
    codes, _ = _blobs()
    with pytest.raises(ValueError, match="Raise the threshold t"):
        algorithm1(codes, 20, distribution="uniform", t=1e-9, seed=0, max_draws_per_point=2)


def test_the_trace_shows_every_draw_and_each_accepted_point_lies_within_t_of_its_draw():
    codes, _ = _blobs()
    labels = cluster(codes, 5, seed=0)
    trace: list = []
    picks = algorithm1(codes, 30, distribution="uniform", labels=labels, t=0.3, seed=0, trace=trace)
    accepted = np.concatenate([hits for _, _, hits in trace])
    assert np.array_equal(np.sort(accepted), picks) and len(trace) >= 30
    t_abs, taken = 0.3 * latent_spread(codes), set()
    for c, z, hits in trace:
        dist = np.linalg.norm(codes - z, axis=1)
        free_inside = [i for i in np.flatnonzero((labels == c) & (dist < t_abs)) if i not in taken]
        if len(hits) == 0:  # a rejected draw had no free point of its cluster within t
            assert free_inside == []
        else:  # 'nearest': the accepted point is the nearest free one within t
            assert hits.tolist() == [min(free_inside, key=lambda i: dist[i])]
        taken.update(hits.tolist())


def test_nearest_accept_takes_the_nearest_free_point_of_each_draw():
    # Two points; a normal fitted to them puts draws near both, so both are taken, each exactly once.
    codes = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert np.array_equal(algorithm1(codes, 2, distribution="normal", t=5.0, seed=0), [0, 1])


def test_uniform_covers_a_known_grid():
    side = 30
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2).astype(float)
    # Uniform over the grid's box takes points in proportion to area: every third of every axis gets picks.
    picks = algorithm1(grid, 90, distribution="uniform", t=0.1, seed=0)
    cells = np.bincount((grid[picks] // 10 * [3, 1]).sum(1).astype(int), minlength=9)
    assert cells.min() >= 3 and cells.max() <= 20  # expected 10 per cell
    # And it can reach every point: with t beyond half the cell diagonal it selects the whole grid.
    spacing = 1 / latent_spread(grid)
    full = algorithm1(grid, len(grid), distribution="uniform", t=0.75 * spacing, seed=0)
    assert np.array_equal(full, np.arange(len(grid)))


def test_normal_concentrates_on_the_dense_middle_and_uniform_does_not():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(3000, 2))
    radius = lambda idx: np.linalg.norm(codes[idx], axis=1).mean()
    normal = algorithm1(codes, 200, distribution="normal", seed=0)
    uniform = algorithm1(codes, 200, distribution="uniform", seed=0)
    assert radius(normal) < 1.5 < radius(uniform)


# --------------------------------------------------------------------------- cold-start selectors


def _kcenter_reference(codes: np.ndarray, n: int, first: int) -> list[int]:
    """k-center greedy written plainly: each step recomputes every point's distance to every chosen center."""
    chosen = [first]
    for _ in range(n - 1):
        gaps = [min(np.linalg.norm(codes[i] - codes[c]) for c in chosen) for i in range(len(codes))]
        chosen.append(int(np.argmax(gaps)))
    return chosen


def _radius(codes: np.ndarray, centers) -> float:
    return max(min(np.linalg.norm(p - codes[c]) for c in centers) for p in codes)


def test_kcenter_greedy_matches_brute_force_and_is_a_two_approximation():
    codes = np.random.default_rng(1).normal(size=(12, 2))
    got = kcenter_greedy(codes, 4, seed=0)
    assert got.tolist() == _kcenter_reference(codes, 4, int(got[0]))
    best = min(_radius(codes, c) for c in itertools.combinations(range(len(codes)), 4))
    assert best <= _radius(codes, got) <= 2 * best + 1e-12


def test_typiclust_picks_the_most_typical_point_of_each_cluster():
    codes, truth = _blobs(n_per=30)
    picks = typiclust(codes, 5, seed=0, k=10)
    assert sorted(truth[picks].tolist()) == list(range(5))  # one per blob
    for b in range(5):
        members = np.flatnonzero(truth == b)
        assert picks[truth[picks] == b][0] == members[typicality(codes[members], 10).argmax()]


def test_typicality_is_the_inverse_mean_distance_to_the_k_nearest_neighbours():
    codes = np.array([[0.0], [1.0], [3.0], [7.0]])
    # Point 1: neighbours at distances 1 (point 0) and 2 (point 2).
    assert typicality(codes, 2)[1] == pytest.approx(1 / 1.5)
    assert typicality(codes, 2)[3] == pytest.approx(1 / 5.0)


# --------------------------------------------------------------------------- query-set properties


def test_query_set_stats():
    assert query_set_stats([0, 1, 2, 3], 4) == {"coverage": 4, "balance": pytest.approx(1.0)}
    stats = query_set_stats([0, 0, 0, 1], 4)
    assert stats["coverage"] == 2
    assert stats["balance"] == pytest.approx(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(4))


# --------------------------------------------------------------------------- the t-SNE-style autoencoder


def _perplexity_brute_force(sq_dists: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """2^{H(P_i)} of each row, with p_{j|i} written out point by point."""
    out = []
    for i in range(len(sq_dists)):
        w = np.array([math.exp(-beta[i] * sq_dists[i, j]) if j != i else 0.0 for j in range(len(sq_dists))])
        p = w / w.sum()
        out.append(2 ** -sum(pj * math.log2(pj) for pj in p if pj > 0))
    return np.array(out)


def test_tsne_affinities_hit_the_perplexity_and_match_brute_force():
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x[:32] += 0.5  # two groups: rows need very different bandwidths
    d = pairwise_sq_dists(x)
    assert torch.allclose(d, torch.cdist(x.flatten(1).double(), x.flatten(1).double()).pow(2), atol=1e-9)
    p_cond, beta = conditional_affinities(d, perplexity=30.0)
    assert np.allclose(_perplexity_brute_force(d.numpy(), beta.numpy()), 30.0, rtol=1e-4)
    assert torch.allclose(p_cond.sum(1), torch.ones(64, dtype=torch.float64))
    assert torch.all(p_cond.diagonal() == 0)
    p = joint_affinities(x, 30.0)
    assert torch.allclose(p, p.T) and p.sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="perplexity"):
        conditional_affinities(d[:20, :20], perplexity=30.0)


def test_student_t_similarities_and_kl_match_their_definitions():
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    q = student_t_similarities(z)
    w = [[0.0 if i == j else 1 / (1 + float((z[i] - z[j]).pow(2).sum())) for j in range(6)] for i in range(6)]
    assert torch.allclose(q, torch.tensor(w) / sum(map(sum, w)), atol=1e-6)
    p = joint_affinities(torch.rand(6, 4), 2.0)
    kl = sum(p[i, j] * math.log(p[i, j] / q[i, j]) for i in range(6) for j in range(6) if i != j)
    assert tsne_kl(p, q).item() == pytest.approx(float(kl), rel=1e-5)
    assert tsne_kl(p, p.float()).item() == pytest.approx(0.0, abs=1e-6)


def test_tsne_term_trains_with_the_autoencoder_loop_and_lowers_the_kl_a_plain_autoencoder_leaves():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 16, 16, generator=gen) * 0.2
    for g in range(4):  # four kinds of image: a bright square in each quadrant
        x[16 * g:16 * (g + 1), :, 8 * (g // 2):8 * (g // 2) + 8, 8 * (g % 2):8 * (g % 2) + 8] += 0.7
    p = joint_affinities(x, 10.0)
    cfg = AEConfig(kind="tsne", latent_dim=2, width=4, epochs=40, batch_size=64, lr=3e-3)
    kls = {}
    for weight in (0.0, 20.0):
        torch.manual_seed(0)  # the same initial weights for both
        model = TSNEAutoencoder(1, 2, width=4, image_size=16, perplexity=10.0, kl_weight=weight)
        history = train_autoencoder(model, x, cfg)
        assert history[-1]["train_loss"] < history[0]["train_loss"] and model.encode(x).shape == (64, 2)
        kls[weight] = tsne_kl(p, student_t_similarities(model.encode(x))).item()
    assert kls[20.0] < 0.5 * kls[0.0]


def test_fit_tsne_autoencoder_refuses_batches_smaller_than_the_perplexity():
    with pytest.raises(ValueError, match="batch_size"):
        fit_tsne_autoencoder(torch.rand(8, 1, 28, 28), TSNEConfig(batch_size=16, perplexity=30.0))
