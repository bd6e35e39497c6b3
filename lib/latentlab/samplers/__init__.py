"""Samplers: ways to pick points of a generative model's latent space to synthesise training images from.

One re-export line per module (each with `# noqa: F401`: these imports exist to be re-exported).
"""

from latentlab.samplers.cam_fusion import eigencam, fuse_codes  # noqa: F401  (not `cam_fusion`: the module's own name)
from latentlab.samplers.energy import energy_distance, support_points, support_points_reference  # noqa: F401
from latentlab.samplers.entropy import entropy_density, top_entropy  # noqa: F401
from latentlab.samplers.jorge import add_noise, augment_latent, extrapolate, interpolate  # noqa: F401
from latentlab.samplers.killeen import algorithm1, kcenter_greedy, select, typiclust  # noqa: F401
from latentlab.samplers.latent_opt import LatentAugmenter, latent_ascent, random_latent, synthesise  # noqa: F401
