"""The chat page end to end: headless Chromium types a Persian message and watches the reply stream in.

Uses the system Chromium (`/usr/bin/chromium`, installed by .ci/run where missing) driven by
the `playwright` package; playwright's own browser downloads are never used. The server is
the real one, on 127.0.0.1, over a tiny model trained for the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from conftest import chromium_executable, local_page  # noqa: E402
from helpers import ServerThread  # noqa: E402
from sokhan.api import LanguageModel  # noqa: E402
from sokhan.serve import create_app  # noqa: E402

KEY = "page-key"
MESSAGE = "سلام! یک بیت از حافظ بخوان."

if chromium_executable() is None:
    pytest.skip("Chromium is not installed (/usr/bin/chromium); .ci/run installs it with apt-get",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(tiny_run):
    lm = LanguageModel.load(tiny_run)
    with ServerThread(create_app(lm, model_name="tiny-hafez", api_key=KEY)) as s:
        yield s


@pytest.fixture
def page(browser, server):
    with local_page(browser, server.url) as page:
        yield page


def test_chat_streams_a_persian_reply(page, server, tmp_path):
    expect = sync_api.expect
    assert page.locator("html").get_attribute("dir") == "rtl"
    expect(page.locator("#model-name")).to_have_text("tiny-hafez")
    expect(page.locator("#api-key-field")).to_be_visible()  # the server wants a key: the page asks for it
    page.fill("#api-key", KEY)
    page.fill("#temperature", "0.9")
    page.fill("#max-tokens", "40")
    page.fill("#input", MESSAGE)
    page.click("#send")

    user = page.locator(".message.user")
    expect(user).to_have_count(1)
    expect(user.first).to_have_text(MESSAGE)
    reply = page.locator(".message.assistant").first
    expect(reply).to_have_attribute("data-done", "true")  # the stream ended ([DONE] read)
    assert reply.inner_text().strip(), "the assistant's reply is empty"
    assert page.locator(".message.error").count() == 0

    shot = tmp_path / "webchat.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SOKHAN_WEBCHAT_SHOT"):  # to look at it: SOKHAN_WEBCHAT_SHOT=/tmp/chat.png
        Path(os.environ["SOKHAN_WEBCHAT_SHOT"]).write_bytes(shot.read_bytes())
    assert shot.is_file() and shot.stat().st_size > 1000
    messages = page.locator(".message")
    assert messages.count() == 2
    for i in range(messages.count()):
        assert messages.nth(i).get_attribute("dir") == "auto"


def test_wrong_key_shows_the_error_and_new_chat_clears(page):
    expect = sync_api.expect
    page.fill("#api-key", "wrong")
    page.fill("#input", MESSAGE)
    page.click("#send")
    error = page.locator(".message.error")
    expect(error).to_have_count(1)
    expect(error).to_contain_text("API key")
    expect(page.locator(".message.assistant")).to_have_count(0)  # the empty reply bubble is removed
    page.click("#new-chat")
    expect(page.locator(".message")).to_have_count(0)
