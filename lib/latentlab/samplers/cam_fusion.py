"""Stages 2 and 3 of Elberg et al. (notebook 05): EigenCAM on the sparse code, then CAM-guided fusion of a tail
sample with a nearby head sample.

Stage 2, EigenCAM (Muhammad & Yeasin 2020), class-agnostic: for the activation map A (c x h x w) of the Stage 1
classifier's last convolution, centre the h*w rows of A^T (one row per cell, one column per channel), take the
first right singular vector v_1 of that (hw x c) matrix and project:  M = ReLU(A_centred v_1),  then min-max
normalise M to [0, 1]. The sign of a singular vector is arbitrary (pytorch-grad-cam, which the official code uses,
leaves it to LAPACK); we orient v_1 so that the projection correlates positively with the channel mean of A.

Stage 3, fusion (Figure 1 "Inference", Figure 2): for every tail sample t take its k = 3 nearest head-class samples by
Euclidean distance between CAMs (scikit-learn NearestNeighbors), pick one of them, h, at random, draw thresholds
q1, q2 ~ N(0.5, 0.1) and build the fused code cell by cell (the official `Fuse`):

    keep = M_t > q1  (the tail's salient cells),    swap = M_h < q2  (the head's non-salient cells)
    z^s_f = z^s_t  where keep and not swap,
            z^s_h  where swap and not keep,
            a random mix elsewhere (both or neither): z^s_t where u > p, z^s_h otherwise, u ~ U(0, 1) per cell,
            p ~ U(0, 1) per sample,

then decode D(z^s_f) back to the latent space. A fused sample is labelled with its tail class (for multi-label
data, as in the official code, with the union of both samples' labels).

The official `SmoteishFuse` has index bugs; this module implements the intended operation. There, the head
neighbour's position `neighbour` (a row of the head-only NearestNeighbors index) is used to index the full data
set (`X[neighbour]`, `maps[neighbour]`, `y[neighbour]`), so the "neighbour" is an arbitrary, often non-head sample;
and the tail sample's CAM is read as `maps[reference]` with `reference` a position within the tail class's list,
not its row in the data set, so each tail code is paired with another sample's CAM. It also draws q1, q2 once per
tail class and one mixing mask per batch; we draw them per fused sample.

Three controls each change one thing. `masks="shuffled"` keeps the pairs, thresholds and mixing and permutes the cells
of each CAM at random (`shuffle_cells`): every map keeps its values, so as many cells pass q1 and q2 as with the CAM,
only at random places; whatever cam-fusion gains over it is due to *where* the CAMs point. `masks="random"` replaces
both CAMs by independent U(0, 1) maps, which also changes *how many* cells pass (about half, against the CAMs' few
salient ones): a second, coarser control. `partners="random"` keeps the CAM masks and pairs each tail sample with
any head sample: what the CAM neighbour search adds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

from latentlab.models.iterated import IteratedModel
from latentlab.utils import batched, module_device

# --------------------------------------------------------------------------- Stage 2: EigenCAM


def eigencam(activations: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """EigenCAM maps (N, h, w) in [0, 1] of activations (N, c, h, w): ReLU of the first principal component."""
    if activations.ndim != 4:
        raise ValueError(f"EigenCAM needs activations (N, c, h, w); got shape {tuple(activations.shape)}.")
    n, c, h, w = activations.shape
    a = activations.detach().double().reshape(n, c, h * w).transpose(1, 2)  # (N, hw, c): cells x channels
    a = a - a.mean(1, keepdim=True)  # centre every channel over the cells
    v1 = torch.linalg.svd(a, full_matrices=False).Vh[:, 0]  # (N, c): first right singular vector
    proj = (a @ v1.unsqueeze(-1)).squeeze(-1)  # (N, hw)
    sign = torch.sign((proj * a.mean(2)).sum(1, keepdim=True))
    proj = proj * torch.where(sign == 0, 1.0, sign)
    cam = proj.clamp(min=0)
    cam = cam - cam.amin(1, keepdim=True)
    cam = cam / (cam.amax(1, keepdim=True) + eps)
    return cam.reshape(n, h, w).float()


def sparse_codes(model: IteratedModel, z: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """z^s of many latents, batched, on the CPU."""
    return batched(model.eval().encode, z, batch_size)


def code_cams(model: IteratedModel, codes: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """EigenCAM of the Stage 1 classifier's last convolution, one (h, w) map per sparse code."""
    features = model.eval().classifier.features
    return batched(lambda s: eigencam(features(s)), codes, batch_size, device=module_device(model))


def channel_max_projection(codes: torch.Tensor) -> torch.Tensor:
    """Channel-wise maximum intensity projection (N, h, w) of sparse codes (the paper's Figure 2, a.2 / b.2)."""
    return codes.amax(1)


# --------------------------------------------------------------------------- Stage 3: fusion

MASKS = ("cam", "shuffled", "random")  # the method's masks and its two mask controls (see the module docstring)


def head_neighbours(tail_maps: torch.Tensor, head_maps: torch.Tensor, k: int = 3) -> np.ndarray:
    """Positions (n_tail, k) in head_maps of the k nearest head CAMs of every tail CAM (Euclidean)."""
    if not 1 <= k <= len(head_maps):
        raise ValueError(f"k must lie in [1, {len(head_maps)}] (the number of head samples); got {k}.")
    index = NearestNeighbors(n_neighbors=k).fit(head_maps.flatten(1).numpy())
    return index.kneighbors(tail_maps.flatten(1).numpy(), return_distance=False)


def shuffle_cells(maps: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Maps (N, h, w) with the h*w cells of each permuted at random (its own permutation per map): the same values,
    at random places."""
    n, h, w = maps.shape
    order = torch.argsort(torch.rand(n, h * w, generator=generator), dim=1)
    return torch.gather(maps.reshape(n, h * w), 1, order).reshape(n, h, w)


def draw_thresholds(n: int, generator: torch.Generator | None = None, mean: float = 0.5,
                    sd: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """q1, q2 ~ N(mean, sd), one pair per fused sample."""
    q = mean + sd * torch.randn(2, n, generator=generator)
    return q[0], q[1]


def fusion_mask(m_tail: torch.Tensor, m_head: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Boolean (N, h, w): True where the fused code takes the tail's code, False where it takes the head's."""
    if m_tail.shape != m_head.shape or m_tail.ndim != 3:
        raise ValueError(f"CAMs must be (N, h, w) alike; got {tuple(m_tail.shape)} and {tuple(m_head.shape)}.")
    keep = m_tail > q1.reshape(-1, 1, 1)
    swap = m_head < q2.reshape(-1, 1, 1)
    p = torch.rand(len(m_tail), 1, 1, generator=generator)
    mix = torch.rand(m_tail.shape, generator=generator) > p
    return (keep & ~swap) | ((keep == swap) & mix)


def fuse_codes(s_tail: torch.Tensor, s_head: torch.Tensor, m_tail: torch.Tensor, m_head: torch.Tensor,
               q1: torch.Tensor, q2: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fused sparse codes (N, K, h, w): the tail code on fusion_mask, the head code elsewhere."""
    if s_tail.shape != s_head.shape:
        raise ValueError(f"Tail and head codes must have one shape; got {tuple(s_tail.shape)}, {tuple(s_head.shape)}.")
    take_tail = fusion_mask(m_tail, m_head, q1, q2, generator)
    return torch.where(take_tail.unsqueeze(1), s_tail, s_head)


@dataclass
class Fusion:
    """Fused samples: latents D(z^s_f) with their tail labels, and where they came from."""

    latents: torch.Tensor      # (n, C, h, w), decoded to the autoencoder's latent space
    labels: torch.Tensor       # (n,) the tail class of each, or (n, n_labels) multi-hot
    codes: torch.Tensor        # (n, K, h, w) fused sparse codes
    tail_index: torch.Tensor   # (n,) row of the tail sample in the latents given
    head_index: torch.Tensor   # (n,) row of its head partner


@torch.no_grad()
def cam_fusion(model: IteratedModel, z: torch.Tensor, y: torch.Tensor, tail_classes, n_per_class: int, *,
               k: int = 3, masks: str = "cam", partners: str = "cam",
               generator: torch.Generator | None = None) -> Fusion:
    """n_per_class fused samples for every tail class, from training latents z (N, C, h, w) with labels y.

    y: class labels (N,), or multi-hot labels (N, n_labels) for multi-label data (ChestMNIST: the paper's setting),
    where the head samples are those with none of the tail labels.
    masks: 'cam' (the method), 'shuffled' (the control: each CAM's cells permuted, same pairs) or 'random' (U(0, 1)
    maps instead of CAMs, same pairs).
    partners: 'cam' (the method: one of the k nearest head samples by CAM) or 'random' (the other control: any head
    sample, CAM masks kept).
    """
    if masks not in MASKS:
        raise ValueError(f"Unknown masks {masks!r}. Choose one of: {', '.join(MASKS)}.")
    if partners not in ("cam", "random"):
        raise ValueError(f"Unknown partners {partners!r}. Choose 'cam' or 'random'.")
    y = torch.as_tensor(y)
    members = {int(c): (y[:, c] > 0) if y.ndim == 2 else (y == c) for c in tail_classes}  # multi-hot or labels
    head_rows = torch.nonzero(~torch.stack(list(members.values())).any(0)).squeeze(1)
    if len(head_rows) == 0 or not all(m.any() for m in members.values()):
        raise ValueError(f"Need samples of every tail class {list(tail_classes)} and of the head classes in y.")
    codes = sparse_codes(model, z)
    cams = code_cams(model, codes)
    pairs = []
    for member in members.values():
        rows = torch.nonzero(member).squeeze(1)
        ref = rows[torch.randint(len(rows), (n_per_class,), generator=generator)]
        if partners == "cam":
            near = torch.from_numpy(head_neighbours(cams[ref], cams[head_rows], k))
            pick = near[torch.arange(n_per_class), torch.randint(k, (n_per_class,), generator=generator)]
        else:
            pick = torch.randint(len(head_rows), (n_per_class,), generator=generator)
        pairs.append((ref, head_rows[pick]))
    tail_index, head_index = (torch.cat(p) for p in zip(*pairs))
    # one label: the tail class; multi-hot labels: the union of both (the official `np.maximum`)
    labels = torch.maximum(y[tail_index], y[head_index]) if y.ndim == 2 else y[tail_index]
    if masks == "cam":
        m_tail, m_head = cams[tail_index], cams[head_index]
    elif masks == "shuffled":
        m_tail, m_head = (shuffle_cells(cams[rows], generator) for rows in (tail_index, head_index))
    else:
        m_tail, m_head = (torch.rand(cams[tail_index].shape, generator=generator) for _ in range(2))
    q1, q2 = draw_thresholds(len(labels), generator)
    fused = fuse_codes(codes[tail_index], codes[head_index], m_tail, m_head, q1, q2, generator)
    return Fusion(batched(model.decode, fused), labels, fused, tail_index, head_index)
