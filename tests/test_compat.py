"""The torchvision shim can be applied any number of times (a kernel's importlib.reload calls it again)."""

from __future__ import annotations

import subprocess
import sys


def test_patch_twice_then_import_torchvision():
    code = ("import latentlab, importlib; latentlab._compat.patch_torchvision(); "
            "importlib.reload(latentlab._compat); latentlab._compat.patch_torchvision(); "
            "import torchvision, torchvision.transforms; print(torchvision.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()
