"""VAE latent-space data augmentation (Jorge et al., VISAPP 2018), after DeVries & Taylor (2017).

The method, as the paper's slides give it:
  1. Train a VAE on the training set (validation set to monitor it).
  2. Project every training image x_j to its code z_j = f_enc(x_j) (here: the posterior mean).
  3. Alter the codes and decode the altered codes to new images, which keep the label of their source:
       noise:          z_j' = z_j + gamma * eps,  eps_i ~ N(0, sigma_i^2),  sigma_i the spread of dimension i
                       over the codes of the dataset,
       interpolation:  z_j' = (z_k - z_j) * lambda + z_j,
       extrapolation:  z_j' = (z_j - z_k) * lambda + z_j,
     with z_k a nearest neighbour of z_j *of the same class* (the point itself excluded).
  4. Train the classifier (SVM, kNN, neural network) on the real images plus the decoded ones.

The same three operations on flattened pixels instead of codes (`augment_images`) are the control that tells
whether the latent space is what helps (DeVries & Taylor found feature-space extrapolation ahead of input-space);
`affine_augment` (small random affine transforms) is the augmentation a practitioner would reach for first. Whether a
synthetic image still shows its source's class is measured by the oracle (`latentlab.oracle.Oracle.agreement`).

Each image gets `n_per_image` synthetic copies: for interpolation and extrapolation copy m uses the (m+1)-th
nearest same-class neighbour (DeVries & Taylor: "for each sample, its K nearest neighbours"); for noise, copy m
is an independent draw.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

import latentlab  # noqa: F401  (torchvision shim before torchvision.transforms)
from latentlab.models.autoencoder import ConvAutoencoder, decode_all, encode_all

OPS = ("noise", "interpolation", "extrapolation")


def _check_strength(strength: float) -> None:
    if not strength >= 0:  # also rejects NaN
        raise ValueError(f"The strength (gamma or lambda) must be >= 0; got {strength}.")


# --------------------------------------------------------------------------- the three operations (step 3)


def code_spread(z: torch.Tensor) -> torch.Tensor:
    """sigma_i: the standard deviation of every dimension of the codes z (N, d) across the dataset, shape (d,)."""
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"code_spread needs codes (N, d) with N >= 2; got shape {tuple(z.shape)}.")
    return z.std(0)


def add_noise(z: torch.Tensor, gamma: float, sigma: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise: z + gamma * eps with eps_i ~ N(0, sigma_i^2); sigma defaults to code_spread(z)."""
    _check_strength(gamma)
    sigma = code_spread(z) if sigma is None else torch.as_tensor(sigma, dtype=z.dtype)
    if sigma.shape != z.shape[1:]:
        raise ValueError(f"sigma must have one entry per code dimension {tuple(z.shape[1:])}; "
                         f"got {tuple(sigma.shape)}.")
    return z + gamma * sigma * torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)


def interpolate(z_j: torch.Tensor, z_k: torch.Tensor, lam: float) -> torch.Tensor:
    """Interpolation: (z_k - z_j) * lambda + z_j (lambda = 0 gives z_j, lambda = 1 gives its neighbour z_k)."""
    _check_strength(lam)
    return (z_k - z_j) * lam + z_j


def extrapolate(z_j: torch.Tensor, z_k: torch.Tensor, lam: float) -> torch.Tensor:
    """Extrapolation: (z_j - z_k) * lambda + z_j (moves z_j away from z_k by lambda * ||z_j - z_k||)."""
    _check_strength(lam)
    return (z_j - z_k) * lam + z_j


def same_class_neighbours(z: torch.Tensor, y: torch.Tensor, k: int = 1) -> np.ndarray:
    """Indices (N, k) of the k nearest neighbours of every row of z among the rows of its own class, itself excluded;
    column 0 is the nearest. Euclidean distance, scikit-learn's NearestNeighbors fitted per class."""
    z, y = np.asarray(torch.as_tensor(z).detach().cpu()), np.asarray(torch.as_tensor(y).cpu())
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"Need codes (N, d) and labels (N,); got shapes {z.shape} and {y.shape}.")
    if k < 1:
        raise ValueError(f"k (neighbours per point) must be at least 1; got {k}.")
    out = np.empty((len(z), k), dtype=np.int64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        if len(members) <= k:
            raise ValueError(f"Class {c} has {len(members)} image(s): too few for {k} neighbour(s) other than the "
                             f"image itself. Label at least {k + 1} images per class or use fewer synthetic images "
                             f"per image (n_per_image <= {len(members) - 1}).")
        # kneighbors() without a query returns each fitted point's neighbours with the point itself left out.
        _, idx = NearestNeighbors(n_neighbors=k).fit(z[members]).kneighbors()
        out[members] = members[idx]
    return out


def augment_codes(z: torch.Tensor, y: torch.Tensor, op: str, strength: float, n_per_image: int, *,
                  seed: int = 0, sigma: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n_per_image altered copies of every code: (codes (N * n_per_image, d), labels, source index per copy).

    op: 'noise' (strength = gamma; sigma defaults to the spread of z), 'interpolation' or 'extrapolation'
    (strength = lambda; copy m of z_j uses its (m+1)-th nearest same-class neighbour). Copies are grouped by m:
    rows [m*N, (m+1)*N) are copy m of every image. Seeded: the same seed gives the same codes.
    """
    if op not in OPS:
        raise ValueError(f"Unknown operation {op!r}. Choose one of: {', '.join(OPS)}.")
    if n_per_image < 1:
        raise ValueError(f"n_per_image must be at least 1; got {n_per_image}.")
    _check_strength(strength)
    y = torch.as_tensor(y)
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"Need codes (N, d) and labels (N,); got shapes {tuple(z.shape)} and {tuple(y.shape)}.")
    source = torch.arange(len(z)).repeat(n_per_image)
    if op == "noise":
        sigma = code_spread(z) if sigma is None else sigma
        new = add_noise(z[source], strength, sigma, torch.Generator().manual_seed(seed))
    else:
        neighbour = torch.from_numpy(same_class_neighbours(z, y, n_per_image)).T.reshape(-1)  # copy-major order
        new = (interpolate if op == "interpolation" else extrapolate)(z[source], z[neighbour], strength)
    return new, y[source], source


# --------------------------------------------------------------------------- latent space (the method) and pixels


def augment_latent(vae: ConvAutoencoder, x: torch.Tensor, y: torch.Tensor, op: str, strength: float,
                   n_per_image: int, *, seed: int = 0, sigma: torch.Tensor | None = None,
                   batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 2-3: encode x with the VAE (posterior mean), alter the codes (augment_codes), decode in batches.

    Returns synthetic images (N * n_per_image, C, H, W) in [0, 1], their labels (the source's) and source indices.
    sigma (noise only) defaults to the spread of the codes of x; pass the spread of all training codes to use those.
    """
    z_new, y_new, source = augment_codes(encode_all(vae, x, batch_size), y, op, strength, n_per_image, seed=seed,
                                         sigma=sigma)
    return decode_all(vae, z_new, batch_size), y_new, source


def augment_images(x: torch.Tensor, y: torch.Tensor, op: str, strength: float, n_per_image: int, *,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The control: the same operation on flattened pixels instead of codes (neighbours found on pixels, sigma_i the
    spread of pixel i), clipped back to [0, 1]. Same return values as augment_latent."""
    if x.ndim != 4:
        raise ValueError(f"Need images (N, C, H, W); got shape {tuple(x.shape)}.")
    flat, y_new, source = augment_codes(x.flatten(1), y, op, strength, n_per_image, seed=seed)
    return flat.clamp(0, 1).view(-1, *x.shape[1:]), y_new, source


def affine_augment(x: torch.Tensor, y: torch.Tensor, n_per_image: int, *, degrees: float = 10.0,
                   translate: float = 0.1, scale: tuple[float, float] = (0.9, 1.1), seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The practitioner's baseline: n_per_image random small affine transforms of every image (rotation up to
    `degrees`, shift up to `translate` of the size, zoom within `scale`; torchvision.transforms.v2.RandomAffine),
    seeded. Same return values and copy order as augment_latent."""
    from torchvision.transforms import v2

    if x.ndim != 4 or n_per_image < 1:
        raise ValueError(f"Need images (N, C, H, W) and n_per_image >= 1; got {tuple(x.shape)}, {n_per_image}.")
    transform = v2.RandomAffine(degrees=degrees, translate=(translate, translate), scale=scale)
    source = torch.arange(len(x)).repeat(n_per_image)
    with torch.random.fork_rng(devices=[]):  # RandomAffine draws from torch's global RNG: seed it, then restore it
        torch.manual_seed(seed)
        x_new = torch.stack([transform(x[i]) for i in source.tolist()])  # one draw per image, not per batch
    return x_new, torch.as_tensor(y)[source], source
