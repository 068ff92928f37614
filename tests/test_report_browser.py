"""The report as a person sees it: opened in headless Chromium (Debian's package)."""

from __future__ import annotations

import struct
from pathlib import Path

import optuna
import pytest
from browser import ensure_chromium, inspect_page
from report_helpers import Cell, make_sweep, standard_cells

from bench.report import build_report

pytestmark = pytest.mark.browser
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module", autouse=True)
def chromium() -> str:
    # Installs chromium when missing; never skips (CI must run these).
    return ensure_chromium()


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_opens_without_console_errors_and_every_figure_loads(tmp_path):
    out = build_report(make_sweep(tmp_path, standard_cells()), tmp_path / "report")
    drawn = sorted((out / "figures").glob("*.png"))
    page = inspect_page(out / "index.html", tmp_path / "screenshot.png")
    assert page.console_errors == []
    assert len(page.images) == len(drawn) >= 9
    for img in page.images:
        assert img["complete"] and img["width"] > 300 and img["height"] > 100, img
    # Self-contained: the page itself and its inline images, nothing fetched.
    assert all(u.startswith(("file://", "data:image/png")) for u in page.requests), page.requests
    assert page.scroll_width <= 1280  # no horizontal scrollbar on a laptop-width window
    assert "pre beats post by" in page.text
    width, height = _png_size(page.screenshot)
    assert width == 1280 and height > 2000


def test_a_variant_named_like_a_script_shows_as_text(tmp_path):
    evil = "<script>alert(1)</script>"
    cells = [Cell({"variant": evil}, seeds=[2.0, 2.1, 2.05], tune=[(1e-3, 2.0)]),
             Cell({"variant": "plain"}, seeds=[2.5, 2.6, 2.55], tune=[(1e-3, 2.5)])]  # fmt: skip
    sweep = make_sweep(tmp_path, cells, description="notes: <img src=x onerror=alert(2)>")
    out = build_report(sweep, tmp_path / "report")
    page = inspect_page(out / "index.html", tmp_path / "screenshot.png")
    assert page.script_elements == 0
    assert page.console_errors == []
    assert evil in page.text  # shown to the reader as the name it is
    assert "<img src=x onerror=alert(2)>" in page.text
    assert all(img["alt"] != "" for img in page.images)


def test_the_browser_check_catches_broken_images_errors_and_requests(tmp_path):
    # The checks above must be able to fail: a page with each fault is caught.
    page_file = tmp_path / "bad.html"
    page_file.write_text(
        "<!DOCTYPE html><html><body><p>x</p>"
        '<img alt="broken" src="data:image/png;base64,AAAA">'
        '<img alt="remote" src="http://127.0.0.1:9/none.png">'
        "<script>console.error('boom')</script></body></html>"
    )
    page = inspect_page(page_file, tmp_path / "shot.png")
    widths = {img["alt"]: img["width"] for img in page.images}
    assert widths == {"broken": 0, "remote": 0}
    assert any("boom" in e for e in page.console_errors)
    assert any(u.startswith("http://127.0.0.1:9/") for u in page.requests)
    assert page.script_elements == 1
