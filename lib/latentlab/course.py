"""Course pack helpers: `check(...)` for the exercise cells, and the student and solutions editions (`make student`).

Exercise cells follow one pattern. The prompt (a markdown cell) and, for a numeric or one-word answer, a code cell
where the student writes it are tagged `exercise`; the solution cells after them are tagged `solution`:

    ANSWER_1 = None  # your value
    course.check(ANSWER_1, expected, hint="...")

`check` says right or not yet (with the hint) and never prints the expected value. The student edition removes the
`solution` cells and every output (nbconvert's TagRemovePreprocessor and ClearOutputPreprocessor); the solutions
edition keeps every cell and output and unfolds the solutions.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import numbers
from collections.abc import Iterable
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor, Preprocessor, TagRemovePreprocessor

from latentlab.config import REPO

SOLUTION, EXERCISE = "solution", "exercise"  # the cell tags


def check(answer, expected, *, rtol: float | None = None, atol: float | None = None, hint: str = "") -> bool | None:
    """Print whether `answer` matches `expected` and return True / False (None while the answer is still None).

    Numbers match within rtol (relative, default 0.02) or atol (absolute, default 0.001); an integer `expected` (a
    count) has both defaults 0. Strings match case- and blank-insensitively; a list or
    tuple matches element by element. A wrong answer prints the hint, never the expected value."""
    if answer is None:
        print("Not answered yet: replace None by your answer and run the cell again.")
        return None
    right = _matches(answer, expected, rtol, atol)
    print("Right." if right else f"Not yet: {answer!r} is not it." + (f" Hint: {hint}" if hint else ""))
    return right


def _matches(answer, expected, rtol: float | None, atol: float | None) -> bool:
    if isinstance(expected, str):
        return isinstance(answer, str) and answer.strip().lower() == expected.strip().lower()
    if isinstance(expected, list | tuple):
        return (isinstance(answer, list | tuple) and len(answer) == len(expected)
                and all(_matches(a, e, rtol, atol) for a, e in zip(answer, expected)))
    if isinstance(expected, bool) or isinstance(answer, bool) or isinstance(answer, str):
        return answer is expected
    count = isinstance(expected, numbers.Integral)  # tolerances default to 0 for a count
    rtol = (0.0 if count else 0.02) if rtol is None else rtol
    atol = (0.0 if count else 1e-3) if atol is None else atol
    try:
        return math.isclose(float(answer), float(expected), rel_tol=rtol, abs_tol=atol)
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- editions


class UnfoldSolutions(Preprocessor):
    """Show the solution cells that JupyterLab keeps folded (the solutions edition is for reading them)."""

    def preprocess_cell(self, cell, resources, index):
        if SOLUTION in cell.metadata.get("tags", []):
            jupyter = cell.metadata.get("jupyter", {})
            jupyter.pop("source_hidden", None)
            jupyter.pop("outputs_hidden", None)
            if not jupyter:
                cell.metadata.pop("jupyter", None)
        return cell, resources


class DropRunMetadata(Preprocessor):
    """Remove a run's traces: papermill's injected parameters cell and its notebook metadata."""

    def preprocess(self, nb, resources):
        nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
        nb.metadata.pop("papermill", None)
        for cell in nb.cells:
            cell.metadata.pop("papermill", None)
            cell.metadata.pop("execution", None)
        return nb, resources


def _preprocessors(edition: str) -> list[Preprocessor]:
    common = [DropRunMetadata()]
    if edition == "student":
        return common + [TagRemovePreprocessor(remove_cell_tags={SOLUTION}, enabled=True),
                         ClearOutputPreprocessor(enabled=True)]
    if edition == "solutions":
        return common + [UnfoldSolutions()]
    raise ValueError(f"Unknown edition {edition!r}: student or solutions.")


def edition(src: Path, dst: Path, which: str) -> Path:
    """Write the student or solutions edition of the notebook src to dst."""
    nb = nbformat.read(src, as_version=4)
    resources: dict = {}
    for pre in _preprocessors(which):
        nb, resources = pre.preprocess(nb, resources)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return dst


def editions(notebooks: Iterable[Path], out: Path) -> dict[str, list[Path]]:
    """out/student/ and out/solutions/ for every notebook."""
    written: dict[str, list[Path]] = {"student": [], "solutions": []}
    for nb in notebooks:
        for which in written:
            written[which].append(edition(nb, out / which / nb.name, which))
    return written


def exercises(nb) -> list[list]:
    """The exercises of a notebook: for each markdown cell tagged `exercise`, the cells up to the next such prompt
    (its answer cell and its solution cells)."""
    groups: list[list] = []
    for cell in nb.cells:
        if EXERCISE in cell.metadata.get("tags", []) and cell.cell_type == "markdown":
            groups.append([cell])
        elif groups and cell.cell_type == "markdown" and cell.source.startswith("#"):
            break  # a new section: the exercises are over
        elif groups:
            groups[-1].append(cell)
    return groups


# --------------------------------------------------------------------------- course cells

HEADER, INSTALL = "course-header", "colab-install"  # tags of the cells `course_cells` writes
HEADERS, CHECKS = REPO / "course" / "headers.yaml", REPO / "course" / "checks.yaml"
PROFILES = ("smoke", "classroom", "default", "paper")

INSTALL_SOURCE = """\
# Colab only (does nothing anywhere else): clone latentlab and install it with the locked versions of
# requirements-lock.txt; Colab's own CUDA torch is kept (the lock's CPU torch is for Linux laptops and CI).
import sys

if "google.colab" in sys.modules and "latentlab" not in sys.modules:
    import subprocess
    from pathlib import Path

    src = Path("/content/latentlab")
    if not src.exists():
        url = "{url}"
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{branch}", url, str(src)], check=True)
    pins = [p for p in (src / "requirements-lock.txt").read_text().splitlines()
            if p and not p.startswith(("#", "-", "torch==", "torchvision=="))]
    (src / "colab-constraints.txt").write_text("\\n".join(pins))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", str(src / "colab-constraints.txt"),
                    "-e", str(src)], check=True)
    sys.path.insert(0, str(src / "lib"))
"""


def links(stem: str, repository: str, branch: str) -> dict[str, str]:
    """The notebook's Colab and Binder addresses."""
    return {"colab": f"https://colab.research.google.com/github/{repository}/blob/{branch}/notebooks/{stem}.ipynb",
            "binder": f"https://mybinder.org/v2/gh/{repository}/{branch}?labpath=notebooks/{stem}.ipynb"}


def header_markdown(stem: str, entry: dict, repository: str, branch: str) -> str:
    """The course header cell: week, Colab and Binder links, objectives, prerequisites, time per profile, discussion."""
    url = links(stem, repository, branch)
    lines = [f"> **Course pack, week {entry['week']} of 6** ([syllabus](../course/syllabus.md)) · "
             f"[Open in Colab]({url['colab']}) · [Launch on Binder]({url['binder']})", "",
             "**Learning objectives.** After this notebook you can:", ""]
    lines += [f"- {o}" for o in entry["objectives"]]
    lines += ["", f"**Prerequisites.** {entry['prerequisites']}", "",
              "**Time per profile** (2 CPU cores; set `PROFILE` in the parameters cell, or run "
              f"`make run NB='{stem[:2]}*' PROFILE=<profile>`, which writes to `build/<profile>/`):", "",
              "| profile | time |", "|---|---|"]
    lines += [f"| {p} | {entry['times'][p]} |" for p in PROFILES]
    lines += ["", "**To discuss.**", ""]
    lines += [f"{i}. {q}" for i, q in enumerate(entry["discussion"], 1)]
    return "\n".join(lines)


def _tagged(cells, tag: str) -> int | None:
    return next((i for i, c in enumerate(cells) if tag in c.metadata.get("tags", [])), None)


def _tag(cell, tag: str) -> None:
    tags = cell.metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def course_cells(nb, stem: str, headers: dict, checks: dict | None = None) -> None:
    """Write (or rewrite) the course header after the title cell and the Colab install cell after the parameters cell,
    tag each exercise prompt (the markdown cell before a run of solution cells) `exercise`, and write the answer cells
    {exercise number: source} of `checks` after their prompts. Idempotent; every other cell, outputs included, stays
    as it was."""
    entry = headers["notebooks"][stem]
    text = header_markdown(stem, entry, headers["repository"], headers.get("branch", "main"))
    i = _tagged(nb.cells, HEADER)
    if i is None:
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(text, metadata={"tags": [HEADER]}))
    else:
        nb.cells[i].source = text
    url = f"https://github.com/{headers['repository']}"
    code = INSTALL_SOURCE.format(branch=headers.get("branch", "main"), url=url)
    i = _tagged(nb.cells, INSTALL)
    if i is None:
        params = _tagged(nb.cells, "parameters")
        nb.cells.insert(params + 1, nbformat.v4.new_code_cell(code, metadata={"tags": [INSTALL]}))
    else:
        nb.cells[i].source = code
    for k, cell in enumerate(nb.cells):
        if SOLUTION in cell.metadata.get("tags", []) and (k == 0 or SOLUTION not in
                                                          nb.cells[k - 1].metadata.get("tags", [])):
            prompt = next((c for c in reversed(nb.cells[:k]) if c.cell_type == "markdown"
                           and SOLUTION not in c.metadata.get("tags", [])), None)
            if prompt is not None:
                _tag(prompt, EXERCISE)
    for number, source in (checks or {}).items():
        cell_id = f"check-{stem[:2]}-{number}"
        existing = next((c for c in nb.cells if c.get("id") == cell_id), None)
        if existing is not None:
            existing.source = source
            continue
        prompt = exercises(nb)[int(number) - 1][0]
        nb.cells.insert(nb.cells.index(prompt) + 1,
                        nbformat.v4.new_code_cell(source, metadata={"tags": [EXERCISE]}, id=cell_id))


def write_course_cells(paths: Iterable[Path], headers_file: Path = HEADERS, checks_file: Path = CHECKS) -> list[Path]:
    """course_cells on each notebook file (read, change, write back), from course/headers.yaml and checks.yaml."""
    import yaml

    headers = yaml.safe_load(headers_file.read_text())
    checks = yaml.safe_load(checks_file.read_text()) if checks_file.exists() else {}
    done = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        course_cells(nb, path.stem, headers, (checks or {}).get(path.stem))
        nbformat.write(nb, path)
        done.append(path)
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentlab.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["editions", "cells"],
                        help="editions: build/student/ and build/solutions/; cells: (re)write the course cells")
    parser.add_argument("--nb", default="*", help="notebook file-name pattern (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "build")
    args = parser.parse_args(argv)
    found = sorted(p for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb") if fnmatch.fnmatch(p.name, args.nb)
                   or fnmatch.fnmatch(p.stem, args.nb))
    if args.command == "cells":
        for path in write_course_cells(found):
            print(f"[cells] {path}")
        return
    written = editions(found, args.out)
    for which, paths in written.items():
        print(f"[{which}] {len(paths)} notebooks in {args.out / which}/")


if __name__ == "__main__":
    main()
