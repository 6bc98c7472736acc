"""Headless Chromium for the tests that look at a page as a person does (Debian's chromium and
chromedriver: the same build, so the versions always match)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# screenshots land here (CI keeps tests/artifacts); RECOVERY_TEST_ARTIFACTS moves them
ARTIFACTS = Path(os.environ.get("RECOVERY_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


@contextmanager
def chromium(width: int = 1280, height: int = 1400) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()
