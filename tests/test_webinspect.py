"""The page's Inspect view end to end: headless Chromium asks for a Persian sentence's attention and next tokens.

Like tests/test_webchat.py: the system Chromium (`/usr/bin/chromium`) driven by `playwright`
(its own browser downloads are never used), the real server on 127.0.0.1 over a tiny model
trained for the test, and nothing fetched from anywhere else. The numbers the page draws are
checked against `attention_maps` for the same text.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from conftest import chromium_executable, local_page  # noqa: E402
from helpers import ServerThread  # noqa: E402
from sokhan.api import LanguageModel  # noqa: E402
from sokhan.inspect import plot_attention, read_html_data  # noqa: E402
from sokhan.inspect.attention import attention_maps  # noqa: E402
from sokhan.serve import create_app  # noqa: E402

KEY = "inspect-key"
SENTENCE = "الا یا ایها الساقی"
PERSIAN = re.compile("[\u0600-\u06ff]")

if chromium_executable() is None:
    pytest.skip("Chromium is not installed (/usr/bin/chromium); .ci/run installs it with apt-get",
                allow_module_level=True)


@pytest.fixture(scope="module")
def lm(tiny_run) -> LanguageModel:
    return LanguageModel.load(tiny_run)


@pytest.fixture(scope="module")
def server(lm):
    with ServerThread(create_app(lm, model_name="tiny-hafez", api_key=KEY)) as s:
        yield s


@pytest.fixture
def page(browser, server):
    with local_page(browser, server.url, height=760) as page:
        yield page


def visible(token: str) -> str:
    """How the page shows a token (inspect.js's `visible`)."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def drawn_weights(page) -> list[list[float]]:
    """The heatmap's cells as a T×T matrix of the weights they were coloured by."""
    cells = page.eval_on_selector_all("#heatmap rect.cell",
                                      "rs => rs.map(r => [+r.dataset.row, +r.dataset.col, +r.dataset.value])")
    t = int(len(cells) ** 0.5)
    matrix = [[0.0] * t for _ in range(t)]
    for q, k, w in cells:
        matrix[q][k] = w
    return matrix


def open_inspect(page):
    expect = sync_api.expect
    expect(page.locator("#model-name")).to_have_text("tiny-hafez")  # /health is in: the selects are filled
    page.fill("#api-key", KEY)
    page.click("#tab-inspect")
    expect(page.locator("#inspect-view")).to_be_visible()
    expect(page.locator("#chat-view")).to_be_hidden()


def run(page, text: str, k: int = 10) -> None:
    page.fill("#inspect-text", text)
    page.fill("#inspect-k", str(k))
    page.click("#inspect-run")
    sync_api.expect(page.locator("#inspect-view")).to_have_attribute("data-state", "done")


def test_inspect_view_draws_a_persian_heatmap_and_bars(page, lm, tmp_path):
    expect = sync_api.expect
    open_inspect(page)
    view = page.locator("#inspect-view")
    assert view.get_attribute("dir") == "rtl" and view.get_attribute("lang") == "fa"
    assert view.evaluate("el => getComputedStyle(el).direction") == "rtl"
    expect(page.locator("#inspect-layer option")).to_have_count(2)
    expect(page.locator("#inspect-head option")).to_have_count(3)  # mean of heads, head 1, head 2
    assert page.locator("#inspect-head").input_value() == "mean"

    run(page, SENTENCE, k=7)
    maps = attention_maps(lm, SENTENCE)
    T = len(maps.tokens)
    cells = page.locator("#heatmap rect.cell")
    expect(cells).to_have_count(T * T)
    expect(page.locator("#heatmap rect.cell.masked")).to_have_count(T * (T - 1) // 2)  # the decoder's future
    rows = page.locator("#heatmap .row-labels text").all_text_contents()
    cols = page.locator("#heatmap .col-labels text").all_text_contents()
    assert rows == cols == [visible(t) for t in maps.tokens]
    assert sum(bool(PERSIAN.search(label)) for label in rows) >= T - 2  # all but <|bos|> (and maybe a space)
    assert any("␣" in label for label in rows)  # spaces are shown

    # the numbers drawn are the model's: layer 1, mean of heads, as the API rounds them
    drawn = drawn_weights(page)
    expected = maps.mean_over_heads(0)
    assert all(abs(drawn[q][k] - float(expected[q, k])) < 1e-4 for q in range(T) for k in range(T))
    assert all(abs(sum(row) - 1) < 1e-3 for row in drawn)

    # right to left: the first key is the rightmost column, and the row labels sit right of the grid
    def box(q, k):
        return page.locator(f'#heatmap rect.cell[data-row="{q}"][data-col="{k}"]').bounding_box()
    first, last = box(T - 1, 0), box(T - 1, T - 1)
    assert first["x"] > last["x"]
    assert page.locator("#heatmap .row-labels text").first.bounding_box()["x"] >= first["x"] + first["width"] - 1
    # masked cells look different from every visible cell
    fills = page.eval_on_selector_all("#heatmap rect.cell", "rs => rs.map(r => [r.classList.contains('masked'), "
                                                            "r.getAttribute('fill')])")
    assert {f for m, f in fills if m} == {"url(#masked-hatch)"}
    assert not {f for m, f in fills if not m} & {"url(#masked-hatch)"}

    # the tooltip names the query, the key and the weight
    box_ = box(T - 1, 1)
    page.mouse.move(box_["x"] + box_["width"] / 2, box_["y"] + box_["height"] / 2)
    tip = page.locator("#heat-tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text(visible(maps.tokens[T - 1]))
    expect(tip).to_contain_text(visible(maps.tokens[1]))
    expect(tip).to_contain_text("وزن")

    # the next-token chart: k bars, each a token and a percentage, the likeliest first
    bars = page.locator("#next-bars li.bar")
    expect(bars).to_have_count(7)
    expected_next = lm.next_token_probs(SENTENCE, 7)
    assert page.locator("#next-bars .bar-token").all_text_contents() == [visible(t) for t, _ in expected_next]
    assert all("٪" in v or "%" in v for v in page.locator("#next-bars .bar-value").all_text_contents())
    probs = [float(bars.nth(i).get_attribute("data-value")) for i in range(7)]
    assert probs == sorted(probs, reverse=True)
    assert page.locator("#inspect-status").inner_text().strip() == ""

    shot = tmp_path / "webinspect.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SOKHAN_WEBINSPECT_SHOT"):  # to look at it: SOKHAN_WEBINSPECT_SHOT=/tmp/inspect.png
        Path(os.environ["SOKHAN_WEBINSPECT_SHOT"]).write_bytes(shot.read_bytes())
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_layer_and_head_choices_redraw(page, lm):
    expect = sync_api.expect
    open_inspect(page)
    run(page, SENTENCE)
    maps = attention_maps(lm, SENTENCE)
    T = len(maps.tokens)

    page.select_option("#inspect-head", "1")  # head 2 of the layer on hand: no new request
    expect(page.locator("#heatmap")).to_have_attribute("data-head", "1")
    drawn = drawn_weights(page)
    assert all(abs(drawn[q][k] - float(maps.weights[0, 1, q, k])) < 6e-5 for q in range(T) for k in range(T))

    page.select_option("#inspect-layer", "1")  # another layer: asked for
    expect(page.locator("#heatmap")).to_have_attribute("data-layer", "1")
    expect(page.locator("#inspect-view")).to_have_attribute("data-state", "done")
    drawn = drawn_weights(page)
    assert all(abs(drawn[q][k] - float(maps.weights[1, 1, q, k])) < 6e-5 for q in range(T) for k in range(T))
    expect(page.locator("#heatmap rect.cell")).to_have_count(T * T)

    # a direct link opens the view, and the chat is one click away
    page.click("#tab-chat")
    expect(page.locator("#chat-view")).to_be_visible()
    expect(page.locator("#temperature")).to_be_visible()
    page.goto(page.url.split("#")[0] + "#inspect")
    expect(page.locator("#inspect-view")).to_be_visible()
    expect(page.locator("#temperature")).to_be_hidden()  # the chat's controls are the chat's


def test_offline_page_is_drawn_by_the_same_renderer(browser, lm, tmp_path):
    """`sokhan inspect`'s standalone page: view.js draws its embedded JSON, cell for cell, fetching nothing."""
    expect = sync_api.expect
    picture = plot_attention(lm, SENTENCE, tmp_path, layer=0)  # head 0, head 1, their mean
    panel = read_html_data(picture.html)["panels"][1]
    assert panel["title"] == "layer 0 · head 1"
    with local_page(browser, picture.html.resolve().as_uri(), height=900, path="", width=1400) as page:
        heatmap = page.locator("figure").nth(1).locator("svg.heatmap")
        cells = heatmap.locator("rect.cell").evaluate_all(
            "rs => rs.map(r => [+r.dataset.row, +r.dataset.col, +r.dataset.value, r.classList.contains('masked'), "
            "r.getAttribute('fill')])")
        T = len(panel["rows"])
        assert len(cells) == T * T
        drawn = [[0.0] * T for _ in range(T)]
        for row, col, value, masked, fill in cells:
            drawn[row][col] = value
            assert masked == panel["mask"][row][col]
            assert (fill == "url(#masked-hatch)") == masked  # the decoder's future is hatched, nothing else
        assert drawn == panel["values"]
        assert sum(masked for *_, masked, _ in cells) == T * (T - 1) // 2
        expect(page.locator("pattern#masked-hatch")).to_have_count(1)  # one hatch for the three heatmaps
        assert heatmap.locator(".row-labels text").all_text_contents() == panel["rows"]
        assert heatmap.locator(".col-labels text").all_text_contents() == panel["cols"]

        # hovering a cell shows its value in #tip; a masked cell says why it is empty
        tip = page.locator("#tip")
        expect(tip).to_be_hidden()
        heatmap.locator(f'rect.cell[data-row="{T - 1}"][data-col="1"]').hover()
        expect(tip).to_be_visible()
        expect(tip).to_contain_text(panel["rows"][T - 1])
        expect(tip).to_contain_text(panel["cols"][1])
        shown = re.search(r"attention weight \(probability\): ([0-9.e-]+)", tip.inner_text())
        assert shown and abs(float(shown.group(1)) - panel["values"][T - 1][1]) < 5e-5
        heatmap.locator('rect.cell[data-row="0"][data-col="1"]').hover()
        expect(tip).to_contain_text(panel["mask_label"])


def test_errors_show_in_the_view(page):
    expect = sync_api.expect
    open_inspect(page)
    page.fill("#api-key", "wrong")
    page.fill("#inspect-text", SENTENCE)
    page.click("#inspect-run")
    expect(page.locator("#inspect-view")).to_have_attribute("data-state", "error")
    expect(page.locator("#inspect-status")).to_contain_text("API key")
    assert page.locator("#inspect-status").inner_text().count("API key") == 1  # both requests failed: said once
    expect(page.locator("#inspect-status")).to_have_class(re.compile("error"))
    expect(page.locator("#heatmap rect.cell")).to_have_count(0)

    page.fill("#api-key", KEY)
    run_text = "دل " * 80  # more tokens than the inspector takes: the server's message is shown
    page.fill("#inspect-text", run_text)
    page.click("#inspect-run")
    expect(page.locator("#inspect-view")).to_have_attribute("data-state", "error")
    expect(page.locator("#inspect-status")).to_contain_text("64")
