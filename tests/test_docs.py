"""The documentation site built by `make docs` (into site/).

The API reference must document every public name, with the text completed at
import time (the planning options). A headless Chromium then opens every page of
the site served over HTTP: each renders with its title, loads every asset, logs no
console error and links only to pages and anchors that exist; the search box
finds pages.
"""

from __future__ import annotations

import functools
import http.server
import importlib
import inspect
import re
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest

import keras_filterprune

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
API_DOCS = ROOT / "docs" / "api"
SUBPACKAGES = tuple(  # the namespaces of the top level
    name
    for name in keras_filterprune.__all__
    if inspect.ismodule(getattr(keras_filterprune, name))
)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

needs_site = pytest.mark.skipif(
    not (SITE / "index.html").is_file(),
    reason="site/ is not built: run `make docs` (make test and make test-slow do)",
)


def _public_objects() -> dict[str, object]:
    """Every public name: the package's `__all__` and its subpackages'."""
    public = {}
    for name in keras_filterprune.__all__:
        if name in SUBPACKAGES or name == "__version__":
            continue
        public[f"keras_filterprune.{name}"] = getattr(keras_filterprune, name)
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"keras_filterprune.{sub}")
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.ismodule(value):  # a function named as its module, whose
                value = getattr(value, name)  # attribute pytest's import reset
            public[f"keras_filterprune.{sub}.{name}"] = value
    return public


def _resolve(identifier: str) -> object:
    """The object an mkdocstrings identifier names (the longest importable module
    prefix, then attributes: `datasets.fashion_mnist.fashion_mnist` is the
    function of the module that the package's attribute of that name hides)."""
    parts = identifier.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(identifier)


def _documented() -> dict[str, list[str]]:
    """Identifiers of the `::: identifier` blocks of docs/api/, by page."""
    return {
        page.stem: re.findall(
            r"^::: (\S+)", page.read_text(encoding="utf-8"), re.MULTILINE
        )
        for page in sorted(API_DOCS.glob("*.md"))
    }


# Documented in prose, not by a `:::` block: a type alias (mkdocstrings cannot
# load `tuple[...]` by inspection) and the version string.
PROSE = {
    "keras_filterprune.handlers.AxisRule": "handlers",
    "keras_filterprune.export.MIN_TOP1_AGREEMENT": "export",
    "keras_filterprune.export.TOLERANCES": "export",
}


def test_api_reference_covers_every_public_name():
    documented = [
        _resolve(identifier) for ids in _documented().values() for identifier in ids
    ]
    missing = [
        name
        for name, obj in _public_objects().items()
        if name not in PROSE and not any(obj is d for d in documented)
    ]
    assert not missing, f"public names missing from docs/api/*.md: {missing}"
    for name, page in PROSE.items():
        short = name.rsplit(".", 1)[1]
        assert f"`{short}`" in (API_DOCS / f"{page}.md").read_text(encoding="utf-8")


@needs_site
def test_built_reference_has_every_entry_and_the_planning_options():
    for page, identifiers in _documented().items():
        folder = SITE / "api" if page == "index" else SITE / "api" / page
        html = (folder / "index.html").read_text(encoding="utf-8")
        for identifier in identifiers:
            if not inspect.ismodule(_resolve(identifier)):  # modules: no heading
                assert f'id="{identifier}"' in html, (page, identifier)
    for path in SITE.rglob("*.html"):
        assert "{planning_options}" not in path.read_text(encoding="utf-8"), path
    planning = (SITE / "api" / "planning" / "index.html").read_text(encoding="utf-8")
    training = (SITE / "api" / "training" / "index.html").read_text(encoding="utf-8")
    for html, name in ((planning, "plan_pruning"), (training, "PruningCallback")):
        entry = html.split(f'id="keras_filterprune.{name}"', 1)[1]
        entry = re.split(r"<h[23] ", entry, maxsplit=1)[0]  # to the next entry
        for option in ("target_macs", "target_params", "target_latency", "round_to"):
            assert f"<b><code>{option}</code></b>" in entry, (name, option)


# --- the browser -----------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves site/ and records every request's path and status."""

    requests: list[tuple[str, int]]

    def log_request(self, code="-", size="-"):
        self.requests.append((self.path, int(code)))

    def log_message(self, format, *args):  # no output on stderr
        pass


@pytest.fixture(scope="module")
def server():
    requests: list[tuple[str, int]] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    handler = functools.partial(handler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip(
        "selenium.webdriver",
        reason="selenium is not installed: pip install -e '.[docs]'",
    )
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(
            "Chromium is not installed (Debian's chromium and chromium-driver: "
            "bash scripts/sysdeps.sh)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _pages() -> list[str]:
    """The site's pages, as URL paths (`guides/export/`), 404.html left out."""
    pages = []
    for path in sorted(SITE.rglob("index.html")):
        relative = path.parent.relative_to(SITE).as_posix()
        pages.append("" if relative == "." else relative + "/")
    return pages


def _target_file(url_path: str) -> Path:
    path = SITE / urllib.parse.unquote(url_path).lstrip("/")
    return path / "index.html" if url_path.endswith("/") else path


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    html = path.read_text(encoding="utf-8")
    return frozenset(re.findall(r'\b(?:id|name)="([^"]+)"', html))


@needs_site
@pytest.mark.slow
def test_every_page_renders_with_working_links_and_assets(server, browser):
    from selenium.webdriver.common.by import By

    base, requests = server
    pages = _pages()
    assert len(pages) >= 30, pages
    links: dict[str, str] = {}  # absolute URL -> the first page linking to it
    problems = []
    for page in pages:
        browser.get(f"{base}/{page}")
        browser.execute_script("return document.readyState")
        headings = browser.find_elements(By.CSS_SELECTOR, "article h1")
        if not headings or not headings[0].text.strip():
            problems.append(f"{page}: no h1")
        if not browser.title.strip():
            problems.append(f"{page}: no <title>")
        for entry in browser.get_log("browser"):
            if entry["level"] == "SEVERE":
                problems.append(f"{page}: console: {entry['message']}")
        for href in browser.execute_script(
            "return Array.from(document.querySelectorAll('a[href]'), a => a.href)"
        ):
            links.setdefault(href, page)
    problems += [f"HTTP {code}: {path}" for path, code in requests if code >= 400]
    checked = 0
    for href, page in sorted(links.items()):
        url = urllib.parse.urlsplit(href)
        if f"{url.scheme}://{url.netloc}" != base:
            continue  # external (not reachable from here) or mailto:
        target = _target_file(url.path)
        checked += 1
        if not target.is_file():
            problems.append(f"{page}: broken link {url.path}")
        elif url.fragment and target.suffix == ".html":
            if urllib.parse.unquote(url.fragment) not in _ids(target):
                problems.append(f"{page}: broken anchor {url.path}#{url.fragment}")
    assert checked > 100, checked
    assert not problems, "\n".join(problems)


@needs_site
@pytest.mark.slow
def test_search_finds_pages(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = server
    browser.get(f"{base}/")
    box = WebDriverWait(browser, 20).until(
        expected_conditions.element_to_be_clickable(
            (By.CSS_SELECTOR, "input.md-search__input")
        )
    )
    box.click()
    box.send_keys("recalibrate")
    results = WebDriverWait(browser, 30).until(
        lambda driver: driver.find_elements(
            By.CSS_SELECTOR, "li.md-search-result__item a"
        )
    )
    hrefs = [a.get_attribute("href") for a in results]
    assert any("/guides/recovery/" in href for href in hrefs), hrefs
    for href in hrefs:
        path = urllib.parse.urlsplit(href).path
        assert _target_file(path).is_file(), href


def test_every_public_function_and_class_has_an_example():
    """Every public function and class shows its use in a `>>>` example of its
    own docstring (a class's `__doc__`, never one inherited from its base);
    constants and the type alias in PROSE are documented in words."""
    missing = [
        name
        for name, obj in _public_objects().items()
        if callable(obj) and name not in PROSE and ">>>" not in (obj.__doc__ or "")
    ]
    assert not missing, f"public names without a `>>>` example: {missing}"
