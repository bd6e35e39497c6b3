"""Outputs checked, not only execution: `python -m latentlab.validate {smoke,reference,validate}`.

- smoke (`make smoke`, part of `make test`): papermill writes smoke-profile copies of the notebooks to build/smoke/
  (`runner.smoke`), each gets the outputs of its committed reference tests/reference/<notebook>.ipynb, and nbval
  executes them in strict mode: every code cell's outputs must equal the reference's after the sanitizers of
  tests/sanitize.cfg (timings, CPU seconds, paths, object addresses, worker counts) have run on both sides. A notebook
  without a reference (a new one) still runs, unchecked, and the run says so. A notebook whose code cells changed
  since its reference stops the check before anything runs: `make smoke-reference` regenerates the references, so an
  intended change is a reviewable diff of tests/reference/.
- reference (`make smoke-reference`): execute the smoke copies with nbval and write what they printed, sanitized and
  without images, to tests/reference/.
- validate (`make validate NB=... [PROFILE=default]`): re-execute a committed notebook (notebooks/<nb>.ipynb at the
  default profile, figures/<stem>/<profile>/<nb>.ipynb at another) into build/validate/<profile>/ and compare every
  output with the committed one through nbval with the same sanitizers; the summary names the cells that differ and
  the largest numeric difference in each. The executed copy is build/validate/<profile>/executed/<nb>.ipynb.

What is compared: every output's text (stdout, stderr, text/plain, text/html, text/markdown, errors) of every code
cell, after sanitizing. Images (image/png, image/jpeg) are not: nbval skips them, since a PNG's bytes change with the
matplotlib, freetype and font versions while the numbers drawn are printed beside them, and the figure's text/plain
(`<Figure size 440x164 with 2 Axes>`) is compared. References store no images (they stay small and diffable).

This module is also the pytest plugin (`-p latentlab.validate`) that records what nbval executed (option
`--latentlab-record DIR`) and, when cells differ, prints each one's largest numeric difference at the end.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import math
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from latentlab.config import PROFILE_DIR, REPO

REFERENCES = REPO / "tests" / "reference"
SANITIZERS = REPO / "tests" / "sanitize.cfg"
BUILD = REPO / "build"
IMAGES = ("image/png", "image/jpeg", "image/svg+xml")  # never compared (nbval skips png and jpeg), never stored
CELL_TIMEOUT_S = 1200  # a smoke cell; `validate` allows a default or paper run's grid cell hours
VALIDATE_CELL_TIMEOUT_S = 12 * 3600


# --------------------------------------------------------------------------- sanitizers


def sanitizers(path: Path = SANITIZERS, *, stored: bool = False) -> list[tuple[str, str]]:
    """The (regex, replacement) pairs of a sanitizer file, in nbval's format (`regex: ...` then `replace: ...`).
    stored: those a reference is stored with, all but the last (runs of spaces as one, which would flatten the
    tables of the stored text; nbval applies it to both sides when it compares)."""
    pairs = re.findall(r"^regex: (.*)$\n^replace: (.*)$", path.read_text(), flags=re.MULTILINE)
    return pairs[:-1] if stored else pairs


def sanitize(text: str, patterns: list[tuple[str, str]]) -> str:
    """Apply the patterns in order, exactly as nbval does."""
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return text


# --------------------------------------------------------------------------- references


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _text_of(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def clean_outputs(outputs: list, patterns: list[tuple[str, str]] | None) -> list:
    """Outputs as a reference stores them: no images, no output metadata, every text sanitized (when patterns)."""
    out = []
    for o in outputs:
        o = copy.deepcopy(o)
        if "data" in o:
            o["data"] = {k: (sanitize(_text_of(v), patterns) if patterns and isinstance(_text_of(v), str) else v)
                         for k, v in o["data"].items() if k not in IMAGES}
            o["metadata"] = {}
            if not o["data"]:
                continue
        if o.get("output_type") == "stream" and patterns:
            o["text"] = sanitize(_text_of(o["text"]), patterns)
        out.append(o)
    return out


def machine() -> dict:
    """What a reference's numbers depend on beside the code and the locked packages: the CPU's architecture, model
    (family, model, stepping, cache size: oneDNN picks kernels and blockings by them) and instruction-set flags and the
    torch build. On another of any of them convolutions may round differently (other
    kernels, another summation order), so a reference holds on the machine kind that made it."""
    import torch

    info: dict[str, str] = {}
    try:  # the first processor's lines; a virtual machine's "model name" can be generic, its family/model/stepping
        for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines():  # and cache size are not
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux: the processor string stands in
        info["model name"] = platform.processor()
    model = " / ".join(info.get(k, "") for k in ("model name", "cpu family", "model", "stepping", "cache size"))
    flags = " ".join(sorted(info.get("flags", "").split()))
    return {"arch": platform.machine(), "cpu": model, "flags": hashlib.sha1(flags.encode()).hexdigest()[:12],
            "torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability()}


def write_reference(executed: Path, dst: Path, patterns: list[tuple[str, str]]) -> Path:
    """Store an executed smoke notebook as a reference: its sources, its outputs sanitized and without images, and
    only the metadata that says which profile made it."""
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"  # papermill draws a new id each run: regenerated references diff clean
        if cell.cell_type == "code":
            cell.outputs = clean_outputs(cell.outputs, patterns)
    nb.metadata = {"kernelspec": nb.metadata.get("kernelspec", {}), "language_info": {"name": "python"},
                   "latentlab": {"reference": "smoke", "regenerate": "make smoke-reference NB='" + dst.stem + "'",
                                 "machine": machine()}}
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return dst


def attach_reference(prepared: Path, reference: Path) -> list[str]:
    """Give the prepared smoke copy the reference's outputs, code cell by code cell. Returns the problems (none when
    attached): a reference whose code cells are not the notebook's is stale and must be regenerated."""
    nb, ref = nbformat.read(prepared, as_version=4), nbformat.read(reference, as_version=4)
    mine, theirs = _code(nb), _code(ref)
    problems = []
    if len(mine) != len(theirs):
        problems.append(f"{len(mine)} code cells now, {len(theirs)} in the reference")
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if a.source != b.source:
            first = next((x for x, y in zip(a.source.splitlines(), b.source.splitlines()) if x != y),
                         "(lines added or removed)")
            problems.append(f"code cell {i} changed, e.g. now: {first.strip()[:100]!r}")
    if problems:
        return problems
    for a, b in zip(mine, theirs):
        a.outputs, a.execution_count = b.outputs, b.execution_count
    nbformat.write(nb, prepared)
    return []


# --------------------------------------------------------------------------- numeric differences

NUMBER = re.compile(r"(?<![\w.])[-+−]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w])")


def _split(text: str) -> tuple[list[float], str]:
    numbers = [float(m.group().replace("−", "-")) for m in NUMBER.finditer(text)]
    skeleton = " ".join(NUMBER.sub("#", text).split())  # whitespace-blind: tables realign when a width changes
    return numbers, skeleton


def numeric_difference(ref: str, new: str) -> tuple[float | None, str]:
    """The largest absolute difference between the numbers of two texts, line by line where both have as many lines
    (else as a whole), over the lines that differ only in their numbers; and where it is (None, why: no such line)."""
    a, b = ref.splitlines(), new.splitlines()
    pairs = list(zip(a, b)) if len(a) == len(b) else [(ref, new)]
    best, where = None, "the texts differ in more than their numbers"
    for r, n in pairs:
        if r == n:
            continue
        (x, sx), (y, sy) = _split(r), _split(n)
        if sx != sy or len(x) != len(y):
            continue
        for u, v in zip(x, y):
            d = abs(u - v) if not (math.isnan(u) or math.isnan(v)) else (0.0 if math.isnan(u) == math.isnan(v)
                                                                         else math.inf)
            if d > 0 and (best is None or d > best):
                best, where = d, f"reference {u:g}, now {v:g}, in {r.strip()[:100]!r}"
    return best, where


def _texts(outputs: list) -> list[tuple[str, str]]:
    """(kind, text) of every output in order, the kinds nbval compares: streams by name, data by MIME type."""
    texts = []
    for o in outputs:
        if o.get("output_type") == "stream":
            texts.append((o.get("name"), _text_of(o.get("text", ""))))
        elif "data" in o:
            texts += [(k, _text_of(v)) for k, v in o["data"].items() if k not in IMAGES]
        elif o.get("output_type") == "error":
            texts.append(("error", f"{o.get('ename')}: {o.get('evalue')}"))
    return texts


def compare_cells(ref_outputs: list, new_outputs: list, patterns) -> tuple[float | None, str]:
    """Largest numeric difference between a cell's reference and new outputs (sanitized, streams merged), and
    where."""
    def merged(outputs):
        kinds: dict[str, list[str]] = {}
        for kind, text in _texts(outputs):
            kinds.setdefault(kind, []).append(sanitize(text, patterns))
        return {k: ("".join(v) if k in ("stdout", "stderr") else v) for k, v in kinds.items()}

    a, b = merged(ref_outputs), merged(new_outputs)
    if set(a) != set(b):
        return None, f"outputs {sorted(a)} in the reference, {sorted(b)} now"
    best, where = None, "the texts differ in more than their numbers"
    for kind in a:
        ra, rb = (a[kind], b[kind]) if isinstance(a[kind], list) else ([a[kind]], [b[kind]])
        if len(ra) != len(rb):
            where = f"{len(ra)} {kind} outputs in the reference, {len(rb)} now"
            continue
        for r, n in zip(ra, rb):
            if r == n:
                continue
            d, w = numeric_difference(r, n)
            if d is not None and (best is None or d > best):
                best, where = d, f"{kind}: {w}"
    return best, where


# --------------------------------------------------------------------------- the pytest plugin


def pytest_addoption(parser):
    group = parser.getgroup("latentlab")
    group.addoption("--latentlab-record", default=None,
                    help="write each executed notebook (nbval's outputs) into this folder")


_RUNS: dict = {}  # notebook path -> {"nb": the file under test, "cells": {code index: (outputs, failed)}}


def pytest_runtest_makereport(item, call):
    if call.when != "call" or not hasattr(item, "test_outputs"):
        return
    nbfile = item.parent
    run = _RUNS.setdefault(str(nbfile.fspath), {"nb": getattr(nbfile, "nb", None), "cells": {}})
    run["cells"][item.cell_num] = (list(item.test_outputs or []), call.excinfo is not None)


def _patterns(config) -> list[tuple[str, str]]:
    path = config.getoption("nbval_sanitize_with", default=None)
    return sanitizers(Path(path)) if path else []


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    patterns = _patterns(config)
    lines, overall = [], None
    for path, run in _RUNS.items():
        code = _code(run["nb"]) if run["nb"] is not None else []
        failed = [i for i, (_, bad) in sorted(run["cells"].items()) if bad]
        checked = sum(1 for i in run["cells"] if i < len(code) and code[i].execution_count is not None)
        lines.append(f"{Path(path).name}: {len(run['cells'])} cells run, {checked} compared with the reference, "
                     f"{len(failed)} differ or fail")
        for i in failed:
            outs = run["cells"][i][0]
            if any(o.get("output_type") == "error" for o in outs):
                err = next(o for o in outs if o.get("output_type") == "error")
                lines.append(f"  cell {i}: raised {err.get('ename')}: {str(err.get('evalue'))[:120]}")
                continue
            d, where = compare_cells(code[i].outputs, outs, patterns) if i < len(code) else (None, "")
            lines.append(f"  cell {i}: " + (f"largest numeric difference {d:.6g} ({where})" if d is not None
                                            else where))
            if d is not None and (overall is None or d > overall):
                overall = d
    if lines:
        terminalreporter.section("latentlab: outputs against the reference")
        for line in lines:
            terminalreporter.write_line(line)
        if overall is not None:
            terminalreporter.write_line(f"largest numeric difference over all cells: {overall:.6g}")


def pytest_sessionfinish(session, exitstatus):
    folder = session.config.getoption("latentlab_record", default=None)
    if not folder:
        return
    for path, run in _RUNS.items():
        if run["nb"] is None:
            continue
        nb = copy.deepcopy(run["nb"])
        count = 0
        for i, cell in enumerate(_code(nb)):
            if i not in run["cells"]:
                cell.outputs, cell.execution_count = [], None
                continue
            count += 1
            outs = []
            for o in run["cells"][i][0]:
                o = nbformat.from_dict(dict(o))
                if o.output_type == "execute_result":
                    o.execution_count = count
                    o.setdefault("metadata", {})
                elif o.output_type == "display_data":
                    o.setdefault("metadata", {})
                    o.pop("execution_count", None)
                outs.append(o)
            cell.outputs, cell.execution_count = outs, count
        dst = Path(folder) / Path(path).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dst)


# --------------------------------------------------------------------------- the commands


def _nbval(files: list[Path], *, record: Path, lax: bool = False, figures: Path | None = None,
           profile_dir: str | None = None, capture: bool = False, cell_timeout: int = CELL_TIMEOUT_S):
    """nbval on files (strict unless lax) with the sanitizers, recording what ran. The kernel gets the environment
    a papermill run gives it: no MPLBACKEND (figures are outputs), LATENTLAB_FIGURES when given. Returns the exit
    status (with capture: the finished process, its output in .stdout)."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "lib"), *filter(None, [env.get("PYTHONPATH")])])
    if figures is not None:
        env["LATENTLAB_FIGURES"] = str(figures)
    if profile_dir is not None:
        env[PROFILE_DIR] = profile_dir
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "latentlab.validate", "--nbval-lax" if lax else "--nbval",
           "--nbval-current-env", f"--nbval-cell-timeout={cell_timeout}", "--nbval-kernel-startup-timeout=600",
           "--nbval-sanitize-with", str(SANITIZERS),
           "--latentlab-record", str(record), "-o", "filterwarnings=ignore::DeprecationWarning",
           *map(str, files)]
    if capture:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def smoke(pattern: str, out: Path = BUILD / "smoke") -> int:
    """`make smoke`: the smoke copies, each with its reference's outputs, executed and compared strictly."""
    from latentlab import runner

    shutil.rmtree(out, ignore_errors=True)
    runner.smoke(pattern, out)
    stale, missing, elsewhere, files, here = [], [], [], [], machine()
    for nb in runner.notebooks(pattern):
        prepared, reference = out / nb.name, REFERENCES / nb.name
        files.append(prepared)
        if not reference.exists():
            missing.append(nb.stem)
            continue
        made_on = nbformat.read(reference, as_version=4).metadata.get("latentlab", {}).get("machine")
        if made_on != here:
            elsewhere.append((nb.stem, made_on))
        problems = attach_reference(prepared, reference)
        if problems:
            stale.append(f"{nb.name}: " + "; ".join(problems))
    if stale:
        print("The smoke references are older than these notebooks (their code cells differ), so their outputs "
              "cannot be checked:\n  " + "\n  ".join(stale) +
              f"\nRun `make smoke-reference NB='<notebook>'` and review the diff of {REFERENCES.relative_to(REPO)}/.",
              file=sys.stderr)
        return 2
    for stem in missing:
        print(f"[smoke] {stem}: no reference in {REFERENCES.relative_to(REPO)}/; its outputs are NOT checked "
              f"(run `make smoke-reference NB='{stem}'` and commit the file)", flush=True)
    for stem, made_on in elsewhere:
        print(f"[smoke] {stem}: its reference was made on another machine kind ({made_on}; this one: {here}); "
              "outputs can differ in the last digits there, so the notebooks run without their outputs compared "
              "(nbval lax). Regenerate the references here (`make smoke-reference`) for the strict check.", flush=True)
    return _nbval(files, record=out / "executed", figures=out / "figures", lax=bool(elsewhere))


def reference(pattern: str, out: Path = BUILD / "smoke-reference") -> int:
    """`make smoke-reference`: execute the smoke copies and write their outputs to tests/reference/."""
    from latentlab import runner

    shutil.rmtree(out, ignore_errors=True)
    runner.smoke(pattern, out)
    patterns, failed = sanitizers(stored=True), []
    for nb in runner.notebooks(pattern):  # one nbval run each: a reference is written as soon as its run is done
        executed = out / "executed" / nb.name
        if _nbval([out / nb.name], record=out / "executed", lax=True, figures=out / "figures") or not executed.exists():
            print(f"[smoke-reference] {nb.name}: the run failed; its reference is left as it was", file=sys.stderr)
            failed.append(nb.name)
            continue
        print(f"[smoke-reference] wrote {write_reference(executed, REFERENCES / nb.name, patterns)}", flush=True)
    return 1 if failed else 0


def committed(nb: Path, profile: str) -> Path:
    """Where a notebook's committed outputs at a profile are: the notebook itself (default) or figures/<stem>/<p>/."""
    return nb if profile == "default" else REPO / "figures" / nb.stem / profile / nb.name


def validate(pattern: str, profile: str = "default", out: Path | None = None) -> int:
    """`make validate`: re-execute committed notebooks into build/validate/<profile>/ and compare every output."""
    from latentlab import runner

    out = Path(out or BUILD / "validate" / profile)
    files = []
    for nb in runner.notebooks(pattern):
        src = committed(nb, profile)
        if not src.exists():
            raise SystemExit(f"No committed {profile}-profile outputs of {nb.stem}: {src} does not exist.")
        (out / nb.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / nb.name)
        files.append(out / nb.name)
        print(f"[validate] {src.relative_to(REPO)} -> re-executed as {(out / 'executed' / nb.name).relative_to(REPO)}"
              f", figures in {(out / 'figures').relative_to(REPO)}/", flush=True)
    os.environ["LATENTLAB_PROFILE"] = profile
    return _nbval(files, record=out / "executed", figures=out / "figures", profile_dir="",
                  cell_timeout=VALIDATE_CELL_TIMEOUT_S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentlab.validate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["smoke", "reference", "validate"])
    parser.add_argument("--nb", default="*", help="notebook file-name pattern, e.g. '01*' (default: all)")
    parser.add_argument("--profile", default="default", help="for 'validate': whose committed outputs")
    args = parser.parse_args(argv)
    if args.command == "smoke":
        sys.exit(smoke(args.nb))
    if args.command == "reference":
        sys.exit(reference(args.nb))
    sys.exit(validate(args.nb, args.profile))


if __name__ == "__main__":
    main()
