"""`sokhan inspect`: the pictures draw the numbers the model used, both files stand alone, bad input is one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import arabic_reshaper
import numpy as np
import pytest
import torch

from sokhan.api import LanguageModel
from sokhan.cli import main
from sokhan.config import ModelConfig
from sokhan.data.shards import TokenData
from sokhan.errors import SokhanError
from sokhan.eval.bpc import sequence_nll
from sokhan.inspect import (
    attention_maps,
    attention_picture,
    next_token_view,
    plot_attention,
    plot_curves,
    plot_embeddings,
    plot_next_token,
    positional_encoding,
    read_html_data,
)
from sokhan.inspect.render import display, matplotlib_lays_out_text, shape, token_texts, visible
from sokhan.models import build_model
from sokhan.models.checkpoint import save_checkpoint
from sokhan.models.components import apply_rotary, sinusoidal_table

TEXT = "دل من در هوای روی تو"


def random_run(folder: Path, tokenizer: Path, **model: object) -> Path:
    """A run folder holding an untrained model of any family on the tiny run's tokenizer (seconds to make)."""
    torch.manual_seed(0)
    cfg = ModelConfig(**{"vocab_size": 400, "block_size": 64, "n_layer": 2, "n_head": 2, "n_embd": 32, **model})
    net = build_model(cfg)
    save_checkpoint(folder, 0, net, {"model": cfg.to_dict()}, tokenizer.read_text(encoding="utf-8"), None)
    return folder


@pytest.fixture(scope="module")
def gpt(tiny_run) -> LanguageModel:
    return LanguageModel.load(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def runs(tiny_run, gpt, tmp_path_factory) -> dict[str, Path]:
    """The trained tiny GPT (learned positions) and untrained BERT (RoPE), LSTM and sinusoidal / no-position GPTs."""
    root, tok = tmp_path_factory.mktemp("inspect-runs"), gpt.path / "tokenizer.json"
    return {"gpt": tiny_run,
            "bert": random_run(root / "bert", tok, family="bert", positional="rope"),
            "lstm": random_run(root / "lstm", tok, family="lstm", n_layer=1),
            "sinusoidal": random_run(root / "sin", tok, positional="sinusoidal"),
            "none": random_run(root / "none", tok, positional="none")}


def forward_attention(lm: LanguageModel, text: str) -> list[torch.Tensor]:
    """Each layer's weights as the model's ordinary forward pass (fused kernel) uses them.

    A hook on every attention module recomputes softmax(QKᵀ/√d + mask) from the module's own
    projections and checks that these weights, times V, give exactly the module's output.
    """
    captured: list[torch.Tensor] = []

    def hook(attn, args, kwargs, output):
        (x,), rope = args, kwargs.get("rope")  # components pass everything but the input by keyword
        b, t, c = x.shape
        q, k, v = attn.qkv(x).view(b, t, 3, attn.n_head, attn.head_size).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        scores = q @ k.transpose(-2, -1) / math.sqrt(attn.head_size)
        if attn.causal:
            scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        weights = scores.softmax(-1)
        y = attn.out((weights @ v).transpose(1, 2).reshape(b, t, c))
        torch.testing.assert_close(y, output[0], atol=1e-5, rtol=1e-4)  # these weights made the output
        captured.append(weights[0])

    handles = [block.attn.register_forward_hook(hook, with_kwargs=True) for block in lm.model.blocks]
    try:
        with torch.no_grad():
            lm.model(torch.tensor([lm.encode_prompt(text)]))
    finally:
        for h in handles:
            h.remove()
    return captured


@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_attention_picture_draws_the_weights_of_the_forward_pass(family, runs, tmp_path):
    lm = LanguageModel.load(runs[family], device="cpu")
    truth = forward_attention(lm, TEXT)
    picture = plot_attention(lm, TEXT, tmp_path)
    layers, heads = lm.model.config.n_layer, lm.model.config.n_head
    assert picture.extra["cells"] == [(la, h) for la in range(layers) for h in [*range(heads), None]]
    page = read_html_data(picture.html)["panels"]
    for (layer, head), panel, drawn in zip(picture.extra["cells"], picture.panels, page):
        expected = truth[layer].mean(0) if head is None else truth[layer][head]
        np.testing.assert_allclose(panel.values, expected.numpy(), atol=1e-6)     # the PNG's data
        np.testing.assert_allclose(np.array(drawn["values"]), panel.values, atol=1e-6)  # the HTML's data
        np.testing.assert_allclose(panel.values.sum(1), 1.0, atol=1e-5)           # rows are distributions
        upper = np.triu(np.ones_like(panel.values, dtype=bool), k=1)
        if family == "gpt":
            assert (panel.values[upper] == 0).all()                                 # exactly 0, not tiny
            assert (panel.mask == upper).all() and drawn["mask"] == upper.tolist()
            assert "masked (−∞ before softmax)" in (panel.mask_label, drawn["mask_label"])
        else:
            assert panel.mask is None and (panel.values > 0).all()


def test_attention_picks_layers_and_heads(gpt, tmp_path):
    maps = attention_maps(gpt, TEXT)
    assert attention_picture(maps, layer=1, head=0).extra["cells"] == [(1, 0)]
    assert attention_picture(maps, layer=1).extra["cells"] == [(1, 0), (1, 1), (1, None)]
    assert attention_picture(maps, head=1).extra["cells"] == [(0, 1), (1, 1)]
    one = plot_attention(gpt, TEXT, tmp_path, layer=1, head=0)
    assert one.png.name == "attention-layer1-head0.png"
    torch.testing.assert_close(torch.from_numpy(one.panels[0].values).float(), maps.weights[1, 0])
    assert one.panels[0].rows[0] == "<|bos|>" and any(t.startswith("␣") for t in one.panels[0].rows)
    for bad in ({"layer": 2}, {"head": -1}):
        with pytest.raises(SokhanError, match="out of range"):
            attention_picture(maps, **bad)


def test_next_token_view_is_the_models_likelihood(gpt, tmp_path):
    view = next_token_view(gpt, TEXT, k=5)
    assert np.isnan(view.surprisal[0]) and np.isfinite(view.surprisal[1:]).all()
    nll, _ = sequence_nll(gpt.model, view.ids, gpt.block_size)             # the scorer behind bits per char
    assert view.surprisal[1:].sum() * math.log(2) == pytest.approx(nll, rel=1e-4)
    top = gpt.next_token_probs(TEXT, k=5)
    assert [p for _, p in view.top] == pytest.approx([p for _, p in top], abs=1e-6)
    picture = plot_next_token(gpt, TEXT, tmp_path, k=5)
    bars, tokens = read_html_data(picture.html)["panels"]
    assert bars["values"] == pytest.approx([p for _, p in top], abs=1e-6)
    assert tokens["values"][0] is None and tokens["values"][1:] == pytest.approx(view.surprisal[1:].tolist(), rel=1e-5)
    assert tokens["rtl"] is True


def test_positional_encodings_are_the_models_own(runs):
    learned = LanguageModel.load(runs["gpt"], device="cpu")
    pos = positional_encoding(learned)
    np.testing.assert_allclose(pos.matrix, learned.model.positions.weight.detach().numpy(), atol=1e-7)
    np.testing.assert_allclose(np.diag(pos.similarity), 1.0, atol=1e-9)
    sin = positional_encoding(LanguageModel.load(runs["sinusoidal"], device="cpu"))
    np.testing.assert_allclose(sin.matrix, sinusoidal_table(64, 32).numpy(), atol=1e-7)
    rope = positional_encoding(LanguageModel.load(runs["bert"], device="cpu"))
    head = 32 // 2
    np.testing.assert_allclose(rope.frequencies, 10000.0 ** (-np.arange(0, head, 2) / head), rtol=1e-5)
    # RoPE scores two positions by their distance alone: the similarity is constant along diagonals
    np.testing.assert_allclose(rope.similarity[1:, 1:], rope.similarity[:-1, :-1], atol=1e-6)


def test_embeddings_name_the_most_frequent_tokens(gpt, tmp_path):
    picture = plot_embeddings(gpt, tmp_path, top=10)
    emb = picture.extra["embeddings"]
    train = np.asarray(TokenData(gpt.config["train"]["data"], "train").tokens)
    counts = np.bincount(train, minlength=len(emb.tokens))
    assert emb.labelled == [int(i) for i in np.argsort(-counts, kind="stable")[:10]]
    weights = gpt.model.embed.weight.detach().double().numpy()
    centred = weights - weights.mean(0)
    variance = np.linalg.eigvalsh(centred.T @ centred)[::-1]
    # the two coordinates carry the two largest variances of the centred matrix: that is PCA
    np.testing.assert_allclose((emb.coords ** 2).sum(0), variance[:2], rtol=1e-6)
    assert emb.explained == pytest.approx(variance[:2] / variance.sum(), rel=1e-6)


def test_curves_plot_every_logged_figure(tiny_run, tmp_path):
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    picture = plot_curves([tiny_run], tmp_path)
    loss_by_step = picture.panels[0].series
    train = [r for r in rows if r["split"] == "train"]
    assert loss_by_step[0].name.endswith("train")
    assert list(loss_by_step[0].x) == [r["step"] for r in train]
    assert list(loss_by_step[0].y) == pytest.approx([r["loss"] for r in train])
    assert (tiny_run / "loss.png").stat().st_size > 5000  # the engine's own plot still works


# --- the command line ---------------------------------------------------------------------------

VIEWS = {
    "attention": ["attention", "{gpt}", TEXT],
    "attention-one": ["attention", "{bert}", TEXT, "--layer", "1", "--head", "0"],
    "positions": ["positions", "{bert}"],
    "next": ["next", "{lstm}", TEXT, "--top-k", "5"],
    "embeddings": ["embeddings", "{gpt}", "--top", "12"],
    "curves": ["curves", "{gpt}"],
}


@pytest.mark.parametrize("view", VIEWS)
def test_each_view_writes_a_png_and_a_standalone_html(view, runs, tmp_path, capsys):
    args = [a.format(**{k: str(v) for k, v in runs.items()}) for a in VIEWS[view]]
    assert main(["inspect", *args, "--out-dir", str(tmp_path)]) == 0
    png, html = map(Path, capsys.readouterr().out.split())
    assert png.suffix == ".png" and html.suffix == ".html" and png.parent == html.parent == tmp_path
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    page = html.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page            # nothing fetched: no CDN, no fonts
    assert "<script src" not in page and "<link" not in page
    assert 'id="sokhan-data"' in page and "addEventListener(\"mousemove\"" in page
    data = read_html_data(html)
    assert data["panels"] and all(p["title"] for p in data["panels"])


def test_default_out_dir_is_the_run_folders_inspect(runs, capsys):
    assert main(["inspect", "positions", str(runs["gpt"])]) == 0
    assert Path(capsys.readouterr().out.split()[0]).parent == runs["gpt"] / "inspect"


@pytest.mark.parametrize("args, fragment", [
    (["attention", "{missing}", TEXT], "no such model folder"),
    (["attention", "{gpt}", TEXT, "--layer", "7"], "--layer 7 is out of range"),
    (["attention", "{gpt}", TEXT, "--head", "2"], "--head 2 is out of range"),
    (["attention", "{gpt}", "  "], "give a text"),
    (["attention", "{lstm}", TEXT], "only Transformers"),
    (["next", "{bert}", TEXT], "masked-LM encoder"),
    (["next", "{gpt}", TEXT, "--top-k", "0"], "--top-k"),
    (["positions", "{none}"], "positional='none'"),
    (["positions", "{lstm}"], "only Transformers"),
    (["curves", "{missing}"], "no such run folder"),
])
def test_bad_input_is_one_line_and_exit_2(args, fragment, runs, tmp_path, capsys):
    names = {k: str(v) for k, v in runs.items()} | {"missing": str(tmp_path / "nope")}
    assert main(["inspect", *[a.format(**names) for a in args], "--out-dir", str(tmp_path / "out")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error:") and fragment in err[0], err
    assert not (tmp_path / "out").exists()


# --- Persian text -------------------------------------------------------------------------------


def test_shape_gives_presentation_forms_in_visual_order():
    word = "سلام"
    shaped = shape(word)
    assert shaped != word and any(0xFE70 <= ord(c) <= 0xFEFF for c in shaped)
    assert shaped[::-1] == arabic_reshaper.reshape(word)  # read right to left, it is the shaped logical text
    assert shape("<|bos|> 42") == "<|bos|> 42"
    # a matplotlib that lays text out itself (libraqm, ≥ 3.11) must get the logical text, else it reverses twice
    assert display(word) == (word if matplotlib_lays_out_text() else shaped)


def test_tokens_are_made_visible(gpt):
    assert visible(" دل\n") == "␣دل⏎" and visible("\u200c") == "‹ZWNJ›" and visible("") == "∅"
    byte_piece = next(i for i in range(gpt.tokenizer.vocab_size) if "\ufffd" in gpt.tokenizer.decode([i]))
    assert token_texts(gpt.tokenizer, [byte_piece])[0].startswith("‹")
