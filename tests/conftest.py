"""Shared fixtures: one tiny GPT trained on the embedded Hafez corpus, reused by every test that needs a model."""

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import train_tiny_model


@pytest.fixture
def interruptible() -> Iterator[None]:
    """The Ctrl-C tests send this process SIGINT; Python must handle it even when pytest was started with
    SIGINT ignored, as a shell does for a background job (`bash .ci/run &`), which `StopRequest` respects."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder (BPE 400, 2 layers × 32 dims, context 64) after 20 steps: seconds on a CPU."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny-model"), max_steps=20)


# The page tests drive the system Chromium (installed by .ci/run where missing) with playwright;
# playwright's own browser downloads are never used.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_executable() -> str | None:
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for one test module; skips with the reason when there is none."""
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_executable()
    if executable is None:
        pytest.skip("Chromium is not installed (/usr/bin/chromium); .ci/run installs it with apt-get")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True, timeout=60_000)
        yield b
        b.close()


@contextlib.contextmanager
def local_page(browser, url: str, height: int = 640, path: str = "/", width: int = 900) -> Iterator:
    """A fresh page at `url + path` (a server, or a file:// page with path ""). On leaving, it asserts
    the page fetched nothing from anywhere but `url` (no CDN, no web font) and raised no script error."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="fa-IR")
    outside: list[str] = []
    errors: list[str] = []

    def route(r):
        if r.request.url.startswith(url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(30_000)
    try:
        page.goto(url + path)
        yield page
    finally:
        context.close()
    assert not outside, outside
    assert not errors, errors
