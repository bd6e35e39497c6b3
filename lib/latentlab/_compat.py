"""Make `import torchvision` work with a CPU-only torch build.

PyPI's Linux torchvision wheels are linked against CUDA torch. Next to a CPU
torch wheel their C++ ops library cannot load, and torchvision 0.2x then fails
at import while registering fake kernels for two ops it never defined. We use
none of those ops (nms, roi_align, ...), only datasets, models and transforms,
so we declare the two op schemas it expects and let the import go on.
Nothing happens when the ops library loads (the normal case).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch


def _torchvision_ops_loadable() -> bool:
    """True when torchvision is absent or its C++ ops library loads."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True
    libs = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd"))
    if not libs:
        return True
    try:
        torch.ops.load_library(str(libs[0]))
        return True
    except (OSError, RuntimeError):
        return False


def patch_torchvision() -> None:
    """Declare torchvision::nms / qnms when its ops library cannot load. Idempotent: a second call (a kernel's
    importlib.reload, say) keeps the first declaration; replacing its Library object would unregister them."""
    if globals().get("_TV_LIB") is not None or _torchvision_ops_loadable():
        return
    warnings.filterwarnings("ignore", message=r"Failed to load .*_C.* extension")
    warnings.filterwarnings("ignore", message=r".*Failed to load image Python extension.*")
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        try:
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:  # already defined by an earlier call
            pass
    # Keep the Library object alive: dropping it would unregister the schemas.
    globals()["_TV_LIB"] = lib
