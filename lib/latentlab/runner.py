"""Run the notebook series at a profile: `python -m latentlab.runner {figures,run,smoke,bench,check}`.

Profiles: 'default' is each notebook's own `parameters` cell; the others (smoke, classroom, paper) override it with
configs/<profile>.yaml, a mapping {notebook stem: {PARAMETER: value}}. A run injects only `PROFILE = "<profile>"`:
the notebook's own first call (`Config.from_notebook(globals())`) applies the file, exactly as a student who sets
PROFILE in JupyterLab does.
- figures: execute notebooks/<stem>.ipynb in place (papermill), so the committed notebook carries the
  default profile's outputs, and write figures/<stem>/ (the only command that writes the tracked tree); at another
  profile (paper, scale) the executed copy and everything it writes go to figures/<stem>/<profile>/ instead, beside
  the default's (a notebook's scale section reads figures/<stem>/scale/); papermill's timing metadata is dropped to
  keep diffs small.
- run: execute a copy at a profile into build/<profile>/ (notebook, and figures/<stem>/ with its results, ledger
  and MANIFEST.json); the tracked notebooks and figures/ are never touched (`make run`).
- smoke: write parameterised copies, outputs cleared, to build/smoke/ for nbval to execute (`make test`).
- bench: wall time of each notebook at smoke and default profile into build/bench.csv.
"""

from __future__ import annotations

import argparse
import ast
import csv
import fnmatch
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import nbformat
import papermill as pm
import yaml

from latentlab.config import CONFIGS, PROFILE_DIR, REPO, overrides, profiles

NOTEBOOKS = REPO / "notebooks"
BUILD = REPO / "build"
FIGURES = REPO / "figures"
PYPROJECT = REPO / "pyproject.toml"  # the packages whose versions a manifest records
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}  # what ipykernel writes


def notebooks(pattern: str = "*") -> list[Path]:
    """The numbered notebooks whose file name matches pattern (e.g. '01*')."""
    found = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if fnmatch.fnmatch(p.name, pattern)
                   or fnmatch.fnmatch(p.stem, pattern))
    if not found:
        raise SystemExit(f"No notebook in {NOTEBOOKS} matches {pattern!r}.")
    return found


def injected(profile: str) -> dict:
    """The parameters a run at `profile` injects: PROFILE alone (none for the default profile)."""
    if profile != "default" and profile not in profiles():
        raise SystemExit(f"Unknown profile {profile!r}. Choose one of: default, {', '.join(profiles())}.")
    return {} if profile == "default" else {"PROFILE": profile}


def unknown_overrides(profile: str) -> list[str]:
    """Overrides in configs/<profile>.yaml that name no notebook or no parameter of it."""
    config = yaml.safe_load((CONFIGS / f"{profile}.yaml").read_text()) or {}
    stems = {p.stem: p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    bad = []
    for stem, params in config.items():
        if stem not in stems:
            bad.append(f"{profile}.yaml: {stem!r} is no notebook in notebooks/")
            continue
        known = set(pm.inspect_notebook(str(stems[stem])))
        bad += [f"{profile}.yaml: {stem}.{k} is not a parameter of {stem}" for k in (params or {}) if k not in known]
    return bad


def _strip(path: Path, profile: str, params: dict) -> None:
    """Drop papermill's per-cell timing and keep only which profile and parameters made the outputs."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata["papermill"] = {"profile": profile, "parameters": params}
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nbformat.write(nb, path)


def _drop_injected(path: Path) -> None:
    """Remove a parameters cell injected by an earlier run (another profile), so only one profile shows."""
    nb = nbformat.read(path, as_version=4)
    keep = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if len(keep) != len(nb.cells):
        nb.cells = keep
        nbformat.write(nb, path)


LAST_RUN: dict = {}  # wall and CPU seconds of the latest `execute` (the manifest reads them)


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (the kernel and the workers it waited for)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def execute(src: Path, dst: Path, profile: str) -> float:
    """Execute src at a profile into dst; return the wall time in seconds (CPU seconds in LAST_RUN)."""
    params = injected(profile)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src == dst:
        _drop_injected(src)
    os.environ["LATENTLAB_PROFILE"] = profile  # the kernel inherits it (figure titles, before its first cell runs)
    status = _git("status", "--porcelain", "--untracked-files=no")  # the tree that ran, before the run changes it
    LAST_RUN.update(commit=_git("rev-parse", "HEAD"), dirty=None if status is None else bool(status))
    start, cpu = time.perf_counter(), _children_cpu()
    backend = os.environ.pop("MPLBACKEND", None)  # e.g. Agg from a headless shell: the kernel keeps its inline
    try:                                          # backend, so every figure is an output of the notebook
        pm.execute_notebook(str(src), str(dst), parameters=params, cwd=str(NOTEBOOKS), kernel_name="python3",
                            progress_bar=False, log_output=False, request_save_on_cell_execute=False)
    finally:
        if backend is not None:
            os.environ["MPLBACKEND"] = backend
    seconds = time.perf_counter() - start
    LAST_RUN.update(wall_s=round(seconds, 1), cpu_s=round(_children_cpu() - cpu, 1))
    _strip(dst, profile, params)
    return seconds


# --------------------------------------------------------------------------- provenance


def parameters_of(nb: Path, profile: str) -> dict:
    """The values a notebook runs with at a profile: its parameters cell (literals), then configs/<profile>.yaml."""
    cell = next(c for c in nbformat.read(nb, as_version=4).cells
                if c.cell_type == "code" and "parameters" in c.metadata.get("tags", []))
    values = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body
              if isinstance(n, ast.Assign)}
    values.pop("PROFILE", None)
    return values | overrides(profile, nb.stem)


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def package_versions() -> dict[str, str]:
    """Installed versions of python, latentlab and every package pyproject.toml names (dev extras included)."""
    import tomllib

    project = tomllib.loads(PYPROJECT.read_text())["project"]
    names = [re.split(r"[<>=!~\[ ;]", s, maxsplit=1)[0] for s in
             project["dependencies"] + sum(project.get("optional-dependencies", {}).values(), [])]
    out = {"python": platform.python_version()}
    for name in ["latentlab", *names]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_manifest(nb: Path, profile: str, folder: Path, timing: dict) -> Path:
    """MANIFEST.json beside a notebook's figures: commit (and whether the tree had changes) when the run started,
    profile, parameters, package versions, wall and CPU seconds (`timing`: LAST_RUN), platform."""
    manifest = {"notebook": nb.name, "profile": profile, "commit": timing.get("commit"),
                "dirty": timing.get("dirty"), "parameters": parameters_of(nb, profile),
                "wall_s": timing.get("wall_s"), "cpu_s": timing.get("cpu_s"),
                "workers": os.environ.get("LATENTLAB_WORKERS"), "cores": os.cpu_count(),
                "platform": platform.platform(), "packages": package_versions()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "MANIFEST.json"
    path.write_text(json.dumps(manifest, indent=1, sort_keys=False, default=str) + "\n")
    return path


def figures(profile: str, pattern: str, out: Path | None = None) -> None:
    """Re-execute the notebooks at a profile into the tracked tree: at the default profile in place (or into `out`)
    with figures in figures/<notebook>/; at another profile the executed copy, figures, results and ledger all in
    figures/<notebook>/<profile>/ (the tracked notebook keeps the default's outputs)."""
    os.environ["LATENTLAB_FIGURES"] = str(FIGURES)
    sub = "" if profile == "default" else profile
    os.environ[PROFILE_DIR] = sub  # the kernel inherits it: `plotting.figure_dir` writes under <notebook>/<sub>
    try:
        for nb in notebooks(pattern):
            folder = FIGURES / nb.stem / sub
            dst = (out / nb.name) if out else (nb if not sub else folder / nb.name)
            print(f"[{profile}] {nb.name} -> {dst} ...", flush=True)
            seconds = execute(nb, dst, profile)
            write_manifest(nb, profile, folder, LAST_RUN)
            print(f"[{profile}] {nb.name} done in {seconds:.0f} s; outputs in {folder}/", flush=True)
    finally:
        os.environ.pop(PROFILE_DIR, None)


def run(profile: str, pattern: str, out: Path | None = None) -> list[Path]:
    """Execute copies of the notebooks at a profile into build/<profile>/ (`make run`): the executed notebook, and
    figures/<stem>/ with its figures, results, ledger and MANIFEST.json. The tracked tree is left as it was."""
    out = Path(out or BUILD / profile)
    os.environ["LATENTLAB_FIGURES"] = str(out / "figures")
    written = []
    for nb in notebooks(pattern):
        dst = out / nb.name
        print(f"[{profile}] {nb.name} -> {dst} ...", flush=True)
        execute(nb, dst, profile)
        manifest = write_manifest(nb, profile, out / "figures" / nb.stem, LAST_RUN)
        print(f"[{profile}] {nb.name} done in {LAST_RUN['wall_s']:.0f} s wall, {LAST_RUN['cpu_s']:.0f} CPU-s\n"
              f"  notebook: {dst}\n  figures, results, ledger, MANIFEST.json: {manifest.parent}/", flush=True)
        written.append(dst)
    return written


def smoke(pattern: str, out: Path = BUILD / "smoke") -> None:
    """Write smoke-size copies of the notebooks to out/ (nbval executes them)."""
    out.mkdir(parents=True, exist_ok=True)
    for nb in notebooks(pattern):
        pm.execute_notebook(str(nb), str(out / nb.name), parameters=injected("smoke"), prepare_only=True,
                            kernel_name="python3", progress_bar=False)
        copy = nbformat.read(out / nb.name, as_version=4)  # no default-profile outputs under a smoke parameters cell
        for cell in copy.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(copy, out / nb.name)
        print(f"[smoke] prepared {out / nb.name}")


def bench(pattern: str, profiles: tuple[str, ...] = ("smoke", "default")) -> None:
    """Time every notebook at each profile (copies under build/bench/, figures too) into build/bench.csv."""
    os.environ.setdefault("LATENTLAB_FIGURES", str(BUILD / "bench" / "figures"))
    rows = []
    for profile in profiles:
        for nb in notebooks(pattern):
            seconds = execute(nb, BUILD / "bench" / profile / nb.name, profile)
            rows.append({"what": nb.stem, "profile": profile, "seconds": round(seconds, 1)})
            print(f"[bench] {nb.stem:<28} {profile:<8} {seconds:7.1f} s", flush=True)
    append_bench(rows)


def append_bench(rows: list[dict]) -> Path:
    """Append timing rows (what, profile, seconds) to build/bench.csv."""
    path = BUILD / "bench.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["what", "profile", "seconds"])
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"[bench] appended {len(rows)} rows to {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentlab.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["figures", "run", "smoke", "bench", "check"])
    parser.add_argument("--profile", default="default", choices=["default", *profiles()],
                        help="profile for 'figures' and 'run' (default: the notebooks' own parameters)")
    parser.add_argument("--nb", default="*", help="notebook file-name pattern, e.g. '01*' (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="for 'figures': write executed notebooks here instead of in place; for 'run': instead of "
                             "build/<profile>/")
    args = parser.parse_args(argv)
    if args.command == "figures":
        figures(args.profile, args.nb, args.out)
    elif args.command == "run":
        run(args.profile, args.nb, args.out)
    elif args.command == "smoke":
        smoke(args.nb)
    elif args.command == "bench":
        bench(args.nb)
    else:
        bad = sum((unknown_overrides(p) for p in profiles()), [])
        print("\n".join(bad) or "configs: every override names a real parameter")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
