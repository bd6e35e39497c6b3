"""Model packs: a profile's trained models as one archive an instructor hands out (`make pack PROFILE=...`).

A pack is an uncompressed tar (the .pt files are zip archives already) of flat cache files plus MD5SUMS, the MD5 of
every member; beside it, `<pack>.md5` holds the archive's own MD5. With $LATENTLAB_MODELS_URL set (and optionally
$LATENTLAB_MODELS_BACKUP_URL), the first `cache.train_or_load` of a process fetches the pack into the model cache:

1. download the archive and its .md5 into a temporary folder beside the cache (the backup URL when the first fails);
2. check the archive's MD5, refuse any member that is not a plain file directly inside the cache folder (no '..', no
   absolute path, no link or device), unpack into the temporary folder and check every member against MD5SUMS;
3. only then move the files into the cache (each rename atomic), and leave a marker so later runs skip the download.

Any failure raises PackError naming the URL and the reason, with the cache exactly as it was. The files are only
ever read by `torch.load(..., weights_only=True)` (`cache._read`): a pack holds tensors, never code that runs.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from latentlab.config import cache_dir

URL_ENV, BACKUP_ENV = "LATENTLAB_MODELS_URL", "LATENTLAB_MODELS_BACKUP_URL"
SUMS = "MD5SUMS"
TIMEOUT_S = 60


class PackError(RuntimeError):
    """A model pack that cannot be used: download failed, checksum wrong, or a member refused."""


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _models(folder: Path) -> list[Path]:
    """The cache files of a folder: *.pt, no hidden or temporary files."""
    return sorted(p for p in folder.glob("*.pt") if p.is_file() and not p.name.startswith("."))


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, path: Path | None = None) -> None:
    """A deterministic member: no owner, no time stamp."""
    info = tarfile.TarInfo(name)
    info.size = len(data) if data is not None else path.stat().st_size
    info.mode, info.mtime = 0o644, 0
    with (io.BytesIO(data) if data is not None else open(path, "rb")) as f:
        tar.addfile(info, f)


def pack(source: Path, archive: Path, files: Iterable[Path] | None = None) -> Path:
    """Write the models of `source` (or the given files in it) as `archive` with MD5SUMS inside and `<archive>.md5`
    beside it. Returns the archive's path."""
    files = sorted(files) if files is not None else _models(source)
    if not files:
        raise PackError(f"No trained models (*.pt) in {source}: run the profile first (make run PROFILE=...).")
    sums = "".join(f"{md5(p)}  {p.name}\n" for p in files).encode()
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, SUMS, data=sums)
        for p in files:
            _add(tar, p.name, path=p)
    os.replace(tmp, archive)
    Path(f"{archive}.md5").write_text(f"{md5(archive)}  {archive.name}\n")
    return archive


def _checked_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, refusing (PackError) one that would land outside the folder it unpacks into."""
    members = tar.getmembers()
    for m in members:
        name = m.name
        if not m.isfile() or name.startswith(("/", "\\")) or "/" in name or "\\" in name or name in ("", ".", ".."):
            kind = "link" if m.issym() or m.islnk() else "folder" if m.isdir() else "path"
            raise PackError(f"refused the member {name!r} ({kind}): a pack holds plain files directly inside the "
                            "cache folder, and this one would unpack outside it or is no plain file")
    return members


def unpack(archive: Path, dest: Path) -> list[Path]:
    """Check and unpack a downloaded archive into the empty folder dest; return the model files (MD5SUMS checked)."""
    with tarfile.open(archive, "r:") as tar:
        members = _checked_members(tar)
        tar.extractall(dest, members=members, filter="data")
    sums_file = dest / SUMS
    if not sums_file.exists():
        raise PackError(f"the pack has no {SUMS}")
    listed = {}
    for line in sums_file.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.strip()] = digest
    files = sorted(p for p in dest.iterdir() if p.name != SUMS)
    if {p.name for p in files} != set(listed):
        raise PackError(f"the pack's files differ from its {SUMS}")
    bad = [p.name for p in files if md5(p) != listed[p.name]]
    if bad:
        raise PackError(f"MD5 mismatch for {', '.join(bad)}")
    return files


def _download(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r, open(dest, "wb") as f:
        shutil.copyfileobj(r, f)


def fetch(url: str, cache: Path) -> list[Path]:
    """Download, verify and install the pack at url into cache; PackError (cache untouched) on any failure."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".pack-") as tmp:
        tmp = Path(tmp)
        archive = tmp / "pack.tar"
        try:
            _download(url, archive)
            _download(f"{url}.md5", tmp / "pack.md5")
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise PackError(f"cannot download {url} ({type(err).__name__}: {err})") from err
        expected, got = ((tmp / "pack.md5").read_text().split() or ["nothing"])[0], md5(archive)
        if expected != got:
            raise PackError(f"{url}: bad checksum, the archive's MD5 is {got} but its .md5 file says {expected} (a "
                            "broken or partial download, or the wrong file)")
        staged = tmp / "files"
        staged.mkdir()
        files = unpack(archive, staged)
        installed = []
        for p in files:  # every check passed: move them in, one atomic rename each (same file system)
            os.replace(p, cache / p.name)
            installed.append(cache / p.name)
    return installed


def _marker(cache: Path, url: str) -> Path:
    return cache / f".pack-{hashlib.sha256(url.encode()).hexdigest()[:16]}.ok"


def ensure(cache: Path | None = None) -> list[Path]:
    """Install the pack of $LATENTLAB_MODELS_URL (else its backup) into the model cache once; [] when no URL is set
    or it is installed already. Worker processes wait on one lock, so only one downloads."""
    urls = [u for u in (os.environ.get(URL_ENV), os.environ.get(BACKUP_ENV)) if u]
    if not urls:
        return []
    cache = Path(cache or cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    if any(_marker(cache, u).exists() for u in urls):
        return []
    errors = []
    lock_file = Path(tempfile.gettempdir()) / f"latentlab-pack-{hashlib.sha256(bytes(cache)).hexdigest()[:12]}.lock"
    with open(lock_file, "w") as lock:  # outside the cache: a failed install leaves the cache exactly as it was
        fcntl.flock(lock, fcntl.LOCK_EX)
        if any(_marker(cache, u).exists() for u in urls):  # another process installed it meanwhile
            return []
        for url in urls:
            try:
                files = fetch(url, cache)
            except PackError as err:
                errors.append(str(err))
                continue
            _marker(cache, url).write_text(f"{len(files)} files from {url}\n")
            print(f"model pack: {len(files)} models from {url} into {cache}", flush=True)
            return files
    raise PackError("The model pack could not be installed; the model cache is as it was. "
                    + " | ".join(errors) + f" (unset {URL_ENV} to train the models instead)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentlab.modelpack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pack", "fetch"])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--cache", type=Path, default=None, help="model folder (default: $LATENTLAB_CACHE)")
    parser.add_argument("--out", type=Path, default=None, help="archive (default: build/packs/models-<profile>.tar)")
    args = parser.parse_args(argv)
    from latentlab.config import REPO

    if args.command == "pack":
        out = args.out or REPO / "build" / "packs" / f"models-{args.profile}.tar"
        path = pack(args.cache or cache_dir(), out)
        print(f"model pack: {path} ({path.stat().st_size / 2**20:.1f} MiB, {len(_models(args.cache or cache_dir()))} "
              f"models), checksum {path}.md5\nServe both files and set {URL_ENV}=<address of the .tar>.")
    else:
        files = ensure(args.cache)
        print(f"model pack: {len(files)} models installed" if files else "model pack: nothing to do")


if __name__ == "__main__":
    main()
