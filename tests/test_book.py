"""The course book in a real browser: build it (`latentlab.book`, offline, no execution), serve it on 127.0.0.1, open
every page in Debian's Chromium through Playwright, and check that figures loaded, equations were typeset by the local
MathJax (no CDN), solutions are folded and the search box finds a word. Screenshots go to build/screenshots/book/.

Locally a missing browser (chromium, or the playwright package) skips with the reason; in CI ($CI set, `.ci/run`
installs chromium with apt and the lock brings playwright) it fails.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "build" / "screenshots" / "book"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


EQUATIONS = "span.math.notranslate, div.math.notranslate"
# MathJax errors the browser test found in notebooks another session owns, {page: count}; the test fails when a page
# has more, or fewer (then delete the entry). 03: one display equation holds two \tag (eqs. 2 and 3).
KNOWN_MATH_ERRORS: dict[str, int] = {}  # page: MathJax errors known and accepted (none)


def _need(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI needs {what} for the browser test (.ci/run installs chromium with apt, make env playwright)")
    pytest.skip(f"no {what} in this environment (`make env` installs the book extra with playwright; chromium: "
                "`apt-get install chromium`)")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    _need("chromium")


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The built book's html folder."""
    try:
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError:
        _need("sphinx and myst-nb (the book extra)")
    from latentlab import book

    out = tmp_path_factory.mktemp("book")
    book.build(out)
    return out / "html"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def server(site):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
        yield b
        b.close()


def _figures_in(page: str) -> int:
    """Image outputs of the committed notebook a book page renders (0 for a notebook whose default run is to come)."""
    import nbformat

    nb = nbformat.read(REPO / "notebooks" / Path(page).with_suffix(".ipynb").name, as_version=4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def _pages(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if p.parent.name != "_static" and p.name not in ("genindex.html", "search.html")
                  and "_static" not in p.parts and "_sources" not in p.parts)


def test_the_book_is_offline(site):
    """No page loads anything from another host (scripts, styles, images, fonts): MathJax is ours."""
    for page in _pages(site):
        html = (site / page).read_text()
        outside = re.findall(r'(?:src|href)="(https?://[^"]+\.(?:js|css|png|svg|woff2?))"', html)
        assert not outside, f"{page} loads {outside[:3]}"
        assert "cdn." not in " ".join(re.findall(r'<script[^>]+src="([^"]+)"', html)), page
    assert (site / "_static" / "mathjax" / "MathJax.js").exists()


def test_every_page_in_chromium(site, server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    external: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith((server, "data:", "about:")) else None)
    pages = _pages(site)
    notebooks = [p for p in pages if p.startswith("notebooks/")]
    assert len(notebooks) == len(list((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))) and "index.html" in pages
    for name in pages:
        page.goto(f"{server}/{name}", wait_until="load")
        if page.locator(EQUATIONS).count():  # MathJax loads async: wait until it has typeset the page
            page.wait_for_function("() => window.MathJax && window.MathJax.Hub && window.MathJax.Hub.queue && "
                                   "window.MathJax.Hub.queue.pending === 0 && window.MathJax.Hub.queue.running === 0 "
                                   "&& document.querySelector('.MathJax, .MathJax_Display')", timeout=60_000)
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.complete, "
                                                   "e.naturalWidth])")
        broken = [src for src, complete, width in images if not (complete and width > 0)]
        assert not broken, f"{name}: figures that did not load: {broken[:5]}"
        math = page.eval_on_selector_all(EQUATIONS, "els => els.length")  # Sphinx's equations
        typeset = page.eval_on_selector_all(EQUATIONS, "els => els.filter(e => e.querySelector("
                                                       "'.MathJax, .MathJax_Display, .MathJax_CHTML')).length")
        errors = page.eval_on_selector_all(".MathJax_Error, merror", "els => els.length")
        raw = math - typeset
        counts = f"{name}: {math} equations, {typeset} typeset, {raw} left raw, {errors} MathJax errors"
        assert errors == KNOWN_MATH_ERRORS.get(name, 0) and raw == 0, counts
        assert page.locator("input[name='q']").count() == 1, f"{name}: no search box"
        if name.startswith("notebooks/"):
            assert len(images) >= min(2, _figures_in(name)), f"{name}: a notebook page shows its figures"
            assert math > 0 and typeset > 0, f"{name}: its equations"
            folded = page.eval_on_selector_all("details.hide, details.toggle-details, .toggle-hidden, .dropdown",
                                               "els => els.length")
            assert folded > 0, f"{name}: solutions are folded"
        page.screenshot(path=str(SHOTS / (name.replace("/", "__").removesuffix(".html") + ".png")), full_page=False)
    assert not external, f"requests to other hosts: {external[:5]}"
    page.close()


def test_the_search_box_finds_a_word(server, browser):
    page = browser.new_page()
    page.goto(f"{server}/search.html?q=autoencoder", wait_until="load")
    page.wait_for_selector("#search-results ul li, ul.search li", timeout=60_000)
    assert page.locator("ul.search li").count() >= 2
    page.screenshot(path=str(SHOTS / "search.png"))
    page.close()
