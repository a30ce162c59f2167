"""The HTML reports in real headless Chromium: nothing fetched, no console error, every plot drawn."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from wsbench.core.results import read_results
from wsbench.report.compare import compare_runs, load_runs
from wsbench.report.html import render_comparison, render_report, write_html

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Visit:
    page: Page
    url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def visit(browser: Browser, path: Path) -> Visit:
    """Open ``path``; every request other than the file itself is recorded and aborted."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    v = Visit(page=page, url=path.resolve().as_uri())
    page.on("request", lambda request: v.requests.append(request.url))
    page.on("console", lambda msg: v.console_errors.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: v.console_errors.append(str(exc)))
    page.route("**/*", lambda route: route.continue_() if route.request.url == v.url else route.abort())
    page.goto(v.url, wait_until="load")
    page.wait_for_timeout(200)  # let anything lazy (there should be nothing) try to load
    return v


def assert_plots_drawn(v: Visit, expected: int) -> None:
    figures = v.page.locator("figure.plot-figure[data-drawn=yes]")
    assert figures.count() == expected
    for i in range(expected):
        svg = figures.nth(i).locator("svg.plot")
        box = svg.bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] > 150, box
        image = Image.open(io.BytesIO(svg.screenshot())).convert("L")
        histogram = image.histogram()
        non_white = sum(histogram[:200]) / (image.width * image.height)
        assert non_white > 0.01, f"plot {i} looks blank ({non_white:.3%} dark pixels)"
        assert len([n for n in histogram if n]) > 20, f"plot {i} has too few shades to be a drawn plot"


def test_run_report_in_chromium(browser: Browser, tornado_file: Path, tmp_path: Path) -> None:
    out = write_html(render_report(read_results(tornado_file)), tmp_path / "report.html")
    v = visit(browser, out)
    assert v.requests == [v.url], f"the report requested {v.requests}"
    assert v.console_errors == []
    assert_plots_drawn(v, 6)
    assert v.page.locator("h1").inner_text().startswith("wsbench report: broadcast")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    v.page.screenshot(path=str(SCREENSHOTS / "html-report.png"), full_page=True)
    v.page.close()


def test_truncated_report_shows_its_warning(browser: Browser, truncated_file: Path, tmp_path: Path) -> None:
    out = write_html(render_report(read_results(truncated_file)), tmp_path / "truncated.html")
    v = visit(browser, out)
    warning = v.page.locator("#warnings")
    assert warning.is_visible()
    assert "no footer" in warning.inner_text()
    assert v.requests == [v.url] and v.console_errors == []
    assert_plots_drawn(v, 6)
    v.page.close()


def test_comparison_in_chromium(browser: Browser, tornado_file: Path, aiohttp_file: Path, tmp_path: Path) -> None:
    comparison = compare_runs(load_runs([read_results(tornado_file), read_results(aiohttp_file)]))
    out = write_html(render_comparison(comparison), tmp_path / "compare.html")
    v = visit(browser, out)
    assert v.requests == [v.url], f"the comparison requested {v.requests}"
    assert v.console_errors == []
    assert_plots_drawn(v, 6)
    assert "Faster: aiohttp" in v.page.locator("#headline").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    v.page.screenshot(path=str(SCREENSHOTS / "html-compare.png"), full_page=True)
    v.page.close()


def test_conformance_matrix_in_chromium(browser: Browser, conformance_file: Path, tmp_path: Path) -> None:
    out = write_html(render_report(read_results(conformance_file)), tmp_path / "conformance.html")
    v = visit(browser, out)
    assert v.requests == [v.url] and v.console_errors == []
    assert v.page.locator("table.matrix tbody tr").count() == 6
    v.page.close()


def test_the_network_check_catches_a_request(browser: Browser, tmp_path: Path) -> None:
    """Negative control: a page that does load something from elsewhere is caught by the same check."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    v = visit(browser, page)
    assert v.requests != [v.url]
    assert "http://127.0.0.1:9/x.png" in v.requests
    v.page.close()
