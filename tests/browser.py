"""A report opened in a real headless Chromium (playwright over Debian's ``chromium``, never a
downloaded browser), for the browser tests of the filter and clean reports. ``make test``
installs ``chromium`` when it is absent; without it or playwright the test skips, saying why."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Opened:
    """The page, and what went wrong on it: console errors and page errors, and the
    messages of any dialog (dismissed)."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@contextmanager
def opened(index: Path) -> Iterator[Opened]:
    """``index`` (an HTML file) loaded from ``file://``; the browser closes on exit."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip("no chromium: `make test` installs Debian's chromium package when root")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            seen = Opened(browser.new_page())
            seen.page.on(
                "console", lambda m: seen.errors.append(m.text) if m.type == "error" else None
            )
            seen.page.on("pageerror", lambda e: seen.errors.append(str(e)))
            seen.page.on("dialog", lambda d: (seen.dialogs.append(d.message), d.dismiss()))
            seen.page.goto(index.as_uri(), wait_until="load")
            yield seen
        finally:
            browser.close()
