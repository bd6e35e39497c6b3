"""Model packs end to end against an HTTP server on 127.0.0.1: good pack, bad checksum, broken URL -> backup,
members escaping the cache, code in a pickle, and train_or_load fetching the pack on first use."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from latentlab import cache, modelpack


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A static file server on 127.0.0.1 (a free port) over tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """An instructor's cache with two trained models (train_or_load), and the config of the first."""
    monkeypatch.delenv(modelpack.URL_ENV, raising=False)
    monkeypatch.delenv(modelpack.BACKUP_ENV, raising=False)
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path / "instructor"))
    configs = [{"width": 2, "seed": s} for s in (0, 1)]
    for c in configs:
        cache.train_or_load("toy", c, lambda: nn.Linear(3, 2), lambda m: nn.init.constant_(m.weight, 0.5))
    return tmp_path / "instructor", configs


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def _student(tmp_path, monkeypatch, url, backup=None) -> Path:
    folder = tmp_path / "student"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "own-model.pt").write_bytes(b"mine")  # something already there, to see it is left alone
    monkeypatch.setenv("LATENTLAB_CACHE", str(folder))
    monkeypatch.setenv(modelpack.URL_ENV, url)
    if backup:
        monkeypatch.setenv(modelpack.BACKUP_ENV, backup)
    else:
        monkeypatch.delenv(modelpack.BACKUP_ENV, raising=False)
    monkeypatch.setattr(cache, "_PACK_DONE", set())
    return folder


def test_pack_download_verify_unpack_and_train_or_load_uses_it(trained, server, tmp_path, monkeypatch):
    source, configs = trained
    base, www = server
    archive = modelpack.pack(source, www / "models-classroom.tar")
    assert Path(f"{archive}.md5").read_text().split()[0] == modelpack.md5(archive)
    with tarfile.open(archive) as tar:  # MD5SUMS first, then the two models
        names = tar.getnames()
        sums = tar.extractfile(modelpack.SUMS).read().decode()
    assert names[0] == modelpack.SUMS and sorted(names[1:]) == sorted(p.name for p in source.glob("*.pt"))
    assert all(modelpack.md5(source / n) in sums for n in names[1:])

    folder = _student(tmp_path, monkeypatch, f"{base}/models-classroom.tar")

    def must_not_train(model):
        raise AssertionError("the model should come from the pack")

    model = cache.train_or_load("toy", configs[0], lambda: nn.Linear(3, 2), must_not_train)
    assert torch.equal(model.weight.detach().cpu(), torch.full((2, 3), 0.5))
    assert {p.name for p in folder.glob("*.pt")} == {"own-model.pt", *names[1:]}
    assert (folder / "own-model.pt").read_bytes() == b"mine"
    # a second run downloads nothing: the marker says it is installed (the server is gone for this one)
    (www / "models-classroom.tar").unlink()
    monkeypatch.setattr(cache, "_PACK_DONE", set())
    assert modelpack.ensure(folder) == []


def test_bad_checksum_is_a_clear_error_and_leaves_the_cache_as_it_was(trained, server, tmp_path, monkeypatch):
    source, configs = trained
    base, www = server
    archive = modelpack.pack(source, www / "p.tar")
    Path(f"{archive}.md5").write_text("0" * 32 + "  p.tar\n")
    folder = _student(tmp_path, monkeypatch, f"{base}/p.tar")
    before = _listing(folder)
    with pytest.raises(modelpack.PackError, match="bad checksum.*cache is as it was|cache is as it was.*bad checksum"):
        cache.train_or_load("toy", configs[0], lambda: nn.Linear(3, 2), lambda m: None)
    assert _listing(folder) == before


def test_a_truncated_download_is_refused(trained, server, tmp_path, monkeypatch):
    source, _ = trained
    base, www = server
    archive = modelpack.pack(source, www / "p.tar")
    archive.write_bytes(archive.read_bytes()[:1000])  # the .md5 is of the whole file
    folder = _student(tmp_path, monkeypatch, f"{base}/p.tar")
    before = _listing(folder)
    with pytest.raises(modelpack.PackError, match="bad checksum"):
        modelpack.ensure(folder)
    assert _listing(folder) == before


def test_broken_url_falls_back_to_the_backup_and_both_broken_is_an_error(trained, server, tmp_path, monkeypatch):
    source, _ = trained
    base, www = server
    modelpack.pack(source, www / "p.tar")
    folder = _student(tmp_path, monkeypatch, f"{base}/missing.tar", backup=f"{base}/p.tar")
    installed = modelpack.ensure(folder)
    assert sorted(p.name for p in installed) == sorted(p.name for p in source.glob("*.pt"))
    assert all((folder / p.name).read_bytes() == p.read_bytes() for p in source.glob("*.pt"))

    folder = _student(tmp_path / "b", monkeypatch, f"{base}/missing.tar", backup="http://127.0.0.1:9/nothing.tar")
    before = _listing(folder)
    with pytest.raises(modelpack.PackError, match="cannot download .*missing.tar.*cannot download .*nothing.tar"):
        modelpack.ensure(folder)
    assert _listing(folder) == before


def _evil_pack(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> None:
    with tarfile.open(path, "w") as tar:
        tar.addfile(tarfile.TarInfo(modelpack.SUMS), io.BytesIO(b""))
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    Path(f"{path}.md5").write_text(f"{modelpack.md5(path)}  {path.name}\n")  # a correct checksum: only the member


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "subfolder", "symlink"])
def test_members_escaping_the_cache_are_refused(kind, server, tmp_path, monkeypatch):
    base, www = server
    member = tarfile.TarInfo({"dotdot": "../escaped.pt", "absolute": str(tmp_path / "escaped.pt"),
                              "subfolder": "a/../../escaped.pt", "symlink": "link.pt"}[kind])
    if kind == "symlink":
        member.type, member.linkname = tarfile.SYMTYPE, str(tmp_path / "escaped.pt")
    else:
        member.size = 1
    _evil_pack(www / "evil.tar", member)
    folder = _student(tmp_path, monkeypatch, f"{base}/evil.tar")
    before = _listing(folder)
    with pytest.raises(modelpack.PackError, match="refused the member"):
        modelpack.ensure(folder)
    assert _listing(folder) == before
    assert not (tmp_path / "escaped.pt").exists() and not list(tmp_path.rglob("escaped.pt"))


class _Payload:
    """A pickle that would create a file when unpickled without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pack_cannot_run_code_weights_only(server, tmp_path, monkeypatch):
    base, www = server
    marker = tmp_path / "code-ran"
    config = {"width": 2, "seed": 0}
    staging = tmp_path / "staging"
    monkeypatch.setenv("LATENTLAB_CACHE", str(staging))
    name = cache.cache_path("toy", config).name
    staging.mkdir()
    torch.save({"weight": _Payload(marker)}, staging / name)
    modelpack.pack(staging, www / "evil.tar")
    folder = _student(tmp_path, monkeypatch, f"{base}/evil.tar")
    trained = []
    with pytest.warns(UserWarning, match="cannot be loaded"):
        model = cache.train_or_load("toy", config, lambda: nn.Linear(3, 2),
                                    lambda m: trained.append(nn.init.constant_(m.weight, 0.25)))
    assert not marker.exists(), "unpickling ran code: torch.load without weights_only=True"
    assert trained and torch.equal(model.weight.detach().cpu(), torch.full((2, 3), 0.25))  # retrained instead
    assert (folder / name).exists()


def test_weights_are_only_loaded_with_weights_only():
    """Every torch.load in the library passes weights_only=True."""
    lib = Path(cache.__file__).parent
    calls = [(p.name, line.strip()) for p in lib.rglob("*.py") for line in p.read_text().splitlines()
             if "torch.load(" in line and not line.strip().startswith("#")]
    assert calls and all("weights_only=True" in line for _, line in calls), calls
