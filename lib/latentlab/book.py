"""The course book (`make book`): a static site of the notebooks with their committed outputs, built offline.

Sphinx + myst-nb, no execution (`nb_execution_mode = "off"`): the pages show what the committed notebooks hold.
Solutions are folded (code cells tagged `solution` get myst-nb's `hide-cell`, markdown ones become a dropdown),
equations are typeset by a local copy of MathJax (jupyter-server-mathjax's files; no CDN), Sphinx's search box is on
every page, and each notebook's course header carries its Colab and Binder links.

    python -m latentlab.book [--out build/book]      # site in build/book/html/index.html
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import nbformat

from latentlab.config import REPO

SOURCE_NAME = "src"
CONF = '''\
project = "latentlab course"
author = "latentlab"
extensions = ["myst_nb", "sphinx_togglebutton"]
nb_execution_mode = "off"  # the committed outputs, never re-executed
nb_merge_streams = True
nb_ipywidgets_js = {}  # no require.js or widget manager from a CDN (the notebooks hold no live widgets)
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_theme_options = {"page_width": "1180px", "sidebar_width": "250px"}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}
html_static_path = ["_static"]
html_title = "latentlab course"
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"  # served from _static: no CDN
# MathJax 2 as jupyter-server-mathjax ships it: STIX-Web fonts only; myst-nb marks notebook sections
# tex2jax_ignore and its math spans `math`, which processClass turns back on.
mathjax2_config = {"tex2jax": {"inlineMath": [["\\\\(", "\\\\)"]], "displayMath": [["\\\\[", "\\\\]"]],
                               "processEscapes": True, "processClass": "math|output_area|tex2jax_process"},
                   "HTML-CSS": {"availableFonts": ["STIX-Web"], "preferredFont": "STIX-Web", "webFont": "STIX-Web",
                                "imageFont": None},
                   "messageStyle": "none"}
exclude_patterns = ["_build"]
suppress_warnings = ["myst.header", "misc.highlighting_failure", "mystnb.unknown_mime_type", "myst.xref_missing"]
'''


def mathjax_dir() -> Path:
    """The MathJax 2 distribution that jupyter-server-mathjax ships (MathJax.js, its TeX input and fonts)."""
    import jupyter_server_mathjax

    path = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (path / "MathJax.js").exists():
        raise FileNotFoundError(f"No MathJax.js under {path}: reinstall jupyter-server-mathjax")
    return path


def fold_solutions(nb) -> None:
    """Solution code cells: folded by myst-nb (`hide-cell`); solution markdown: inside a dropdown admonition."""
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "solution" not in tags:
            continue
        if cell.cell_type == "code":
            if "hide-cell" not in tags:
                cell.metadata["tags"] = [*tags, "hide-cell"]
        else:
            cell.source = f":::{{admonition}} Solution\n:class: dropdown\n\n{cell.source}\n:::"


def index_page(stems: list[str], pages: list[str]) -> str:
    toc = "\n".join(["```{toctree}", ":maxdepth: 1", ":caption: Notebooks", "", *stems, "```", "",
                     "```{toctree}", ":maxdepth: 1", ":caption: Course", "", *pages, "```"])
    return ("# latentlab: the course book\n\n"
            "Six notebooks, one a week, each reproducing a paper on latent-space data synthesis or selection for\n"
            "scarce medical labels, with the outputs of their committed default-profile runs. Every notebook opens\n"
            "with its objectives, prerequisites, time per profile and discussion questions, and links to Colab and\n"
            "Binder. Solutions are folded: click to open them.\n\n" + toc + "\n")


def sources(out: Path, notebooks: list[Path] | None = None) -> Path:
    """Write the book's Sphinx sources to out/src (notebooks with folded solutions, course pages, conf.py, MathJax)."""
    src = out / SOURCE_NAME
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    notebooks = notebooks or sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    stems = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        fold_solutions(nb)
        nbformat.write(nb, src / "notebooks" / path.name)
        stems.append(f"notebooks/{path.stem}")
    pages = []
    course = REPO / "course"
    if course.exists():
        (src / "course").mkdir()
        for page in sorted(course.glob("*.md")):
            if page.name.lower() != "readme.md":
                shutil.copy(page, src / "course" / page.name)
                pages.append(f"course/{page.stem}")
    (src / "index.md").write_text(index_page(stems, pages))
    (src / "conf.py").write_text(CONF)
    shutil.copytree(mathjax_dir(), src / "_static" / "mathjax")
    return src


def build(out: Path = REPO / "build" / "book", notebooks: list[Path] | None = None) -> Path:
    """Build the site into out/html; return its index.html."""
    from sphinx.cmd.build import build_main

    start = time.perf_counter()
    src = sources(out, notebooks)
    html = out / "html"
    code = build_main(["-q", "-b", "html", "-d", str(out / "doctrees"), str(src), str(html)])
    if code:
        raise RuntimeError(f"sphinx-build failed (exit {code}); see the messages above")
    print(f"[book] {html / 'index.html'} in {time.perf_counter() - start:.0f} s")
    return html / "index.html"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentlab.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "book")
    build(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
