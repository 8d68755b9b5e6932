"""A real browser for the tests: Debian's chromium driven by Playwright.

Where chromium or Playwright is missing the browser tests skip with the reason, except
under CI=true, where a missing browser fails them: CI must never pass by not looking."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "install it with: apt-get update && apt-get install -y chromium"


def chromium_path() -> str | None:
    given = os.environ.get("CHROMIUM")
    return given if given and Path(given).is_file() else next(filter(None, map(shutil.which, BROWSERS)), None)


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        _missing(f"no chromium on this machine; {INSTALL_HINT}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed; pip install -e '.[test]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    yield opened
    context.close()


def screenshot(page, name: str) -> Path | None:
    """Saved under $SCREENSHOTS (what `make screenshots` sets, for the README), else not at all."""
    folder = os.environ.get("SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
