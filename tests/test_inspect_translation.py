"""`sokhan inspect` on a translator: encoder, decoder and cross-attention pictures draw the weights of the
model's own forward pass; positions and embeddings work, next refuses, and a language model is unchanged."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from sokhan.api import LanguageModel
from sokhan.cli import main
from sokhan.config import ModelConfig, NormalizerConfig, TranslateConfig
from sokhan.data.parallel import ParallelData, prepare_parallel
from sokhan.errors import SokhanError
from sokhan.infer.translate import source_ids, translate_batch
from sokhan.inspect import (
    attention_maps,
    plot_attention,
    plot_embeddings,
    plot_translation_attention,
    positional_encoding,
    read_html_data,
    translation_attention,
)
from sokhan.inspect.render import shorten, token_texts
from sokhan.models import build_model
from sokhan.models.checkpoint import save_checkpoint
from sokhan.models.components import sinusoidal_table
from sokhan.text.normalize import PersianNormalizer
from sokhan.text.tokenizers import Tokenizer

SOURCE = "I see the flower."
TARGET = "من گل را می‌بینم."
KINDS = ("encoder", "decoder", "cross")
NOUNS = [("book", "کتاب"), ("house", "خانه"), ("garden", "باغ"), ("flower", "گل"), ("friend", "دوست"),
         ("city", "شهر"), ("sea", "دریا"), ("tree", "درخت")]
VERBS = [("I see the {}.", "من {} را می‌بینم."), ("you love the {}.", "تو {} را دوست داری."),
         ("we find the {}.", "ما {} را پیدا می‌کنیم."), ("they want the {}.", "آنها {} را می‌خواهند.")]


def model_folder(folder: Path, data: Path, cfg: ModelConfig, seed: int = 0) -> Path:
    """A model folder of random weights, as `translate-train` saves one (config sections, the data's tokenizer)."""
    torch.manual_seed(seed)
    config = {"format": 1, "model": cfg.to_dict(), "normalizer": NormalizerConfig().to_dict(),
              "train": {"data": str(data)}, "data": {"kind": "parallel", "tokenizer": "bpe"},
              "translation": {"source_lang": "en", "target_lang": "fa"}}
    tokenizer_json = (data / "tokenizer.json").read_text(encoding="utf-8")
    save_checkpoint(folder, 1, build_model(cfg), config, tokenizer_json, None, keep=1)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """An untrained seq2seq-tiny translator (sinusoids), one with learned positions, and an untrained GPT,
    all on one BPE trained by `prepare_parallel` on 32 English–Persian pairs (a second or two)."""
    root = tmp_path_factory.mktemp("translators")
    raw = root / "raw"
    raw.mkdir()
    pairs = [(en.format(a), fa.format(b)) for en, fa in VERBS for a, b in NOUNS]
    (raw / "train.en").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (raw / "train.fa").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    data = prepare_parallel(str(raw), root / "data", PersianNormalizer(NormalizerConfig()), vocab_size=400,
                            valid_size=2, console=Console(stderr=True, quiet=True))
    vocab = Tokenizer.load(data / "tokenizer.json").vocab_size
    seq2seq = ModelConfig.create(preset="seq2seq-tiny", vocab_size=vocab)
    return {"translator": model_folder(root / "translator", data, seq2seq),
            "learned": model_folder(root / "learned", data, ModelConfig.create(
                preset="seq2seq-tiny", vocab_size=vocab, positional="learned"), seed=1),
            "gpt": model_folder(root / "gpt", data, ModelConfig(vocab_size=vocab, block_size=64, n_layer=2, n_head=2,
                                                                n_embd=32), seed=2)}


@pytest.fixture(scope="module")
def translator(runs) -> LanguageModel:
    return LanguageModel.load(runs["translator"], device="cpu")


def the_ids(lm: LanguageModel, source: str, target: str) -> tuple[list[int], list[int]]:
    """The ids a translator reads: the source as `sokhan translate` encodes it, <|bos|> + the normalized target."""
    return source_ids(lm, source), [lm.tokenizer.bos_id] + lm.tokenizer.encode_plain(lm.normalize(target))


def forward_weights(lm: LanguageModel, src: list[int], tgt: list[int]) -> dict[str, list[torch.Tensor]]:
    """Each layer's weights, (heads, T_q, T_k), of a forward pass asked for its weights."""
    with torch.no_grad():
        out = lm.model(torch.tensor([tgt]), source=torch.tensor([src]), need_weights=True)
    return {"encoder": [w[0] for w in out.encoder_attentions], "decoder": [w[0] for w in out.attentions],
            "cross": [w[0] for w in out.cross_attentions]}


def assert_offline_page(html: Path) -> None:
    page = html.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page            # nothing fetched: no CDN, no fonts
    assert "<script src" not in page and "<link" not in page
    assert 'id="sokhan-data"' in page


def test_three_pictures_draw_the_weights_of_the_forward_pass(translator, tmp_path):
    src, tgt = the_ids(translator, SOURCE, TARGET)
    truth = forward_weights(translator, src, tgt)
    pictures = plot_translation_attention(translator, SOURCE, tmp_path, target=TARGET)
    layers, heads = translator.model.config.n_layer, translator.model.config.n_head
    assert [p.name for p in pictures] == [f"attention-{k}" for k in KINDS]
    labels = {"source": token_texts(translator.tokenizer, src), "target": token_texts(translator.tokenizer, tgt)}
    assert labels["source"][-1] == "<|eos|>" and labels["target"][0] == "<|bos|>"
    axes = {"encoder": ("source", "source"), "decoder": ("target", "target"), "cross": ("target", "source")}
    for kind, picture in zip(KINDS, pictures):
        assert picture.png.is_file() and picture.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert picture.html.name == f"attention-{kind}.html"
        assert_offline_page(picture.html)
        assert picture.extra["cells"] == [(la, h) for la in range(layers) for h in [*range(heads), None]]
        page = read_html_data(picture.html)["panels"]
        assert len(page) == len(picture.panels) == len(picture.extra["cells"])
        rows, cols = axes[kind]
        for (layer, head), panel, drawn in zip(picture.extra["cells"], picture.panels, page):
            expected = truth[kind][layer].mean(0) if head is None else truth[kind][layer][head]
            assert panel.values.shape == (len(labels[rows]), len(labels[cols]))
            np.testing.assert_allclose(panel.values, expected.numpy(), atol=1e-6)          # the PNG's data
            np.testing.assert_allclose(np.array(drawn["values"]), panel.values, atol=1e-6)  # the HTML's data
            assert panel.rows == drawn["rows"] == labels[rows] and panel.cols == drawn["cols"] == labels[cols]
            assert panel.row_name.startswith(rows) and panel.col_name.startswith(cols)
            np.testing.assert_allclose(panel.values.sum(1), 1.0, atol=1e-5)               # rows are distributions
            upper = np.triu(np.ones_like(panel.values, dtype=bool), k=1)
            if kind == "decoder":  # causal: nothing after the query, exactly 0
                assert (panel.values[upper] == 0).all() and (panel.values[~upper] > 0).all()
                assert (panel.mask == upper).all() and drawn["mask"] == upper.tolist()
            else:  # a whole sentence, no padding: every source token gets some weight
                assert panel.mask is None and drawn["mask"] is None and (panel.values > 0).all()


def test_the_weights_are_those_the_ordinary_forward_pass_used(translator):
    """Hooks recompute softmax(QKᵀ/√d) from each attention module's own projections during a forward pass that
    asks for no weights (the fused kernel) and check that these weights, times V, give the module's output."""
    model = translator.model
    src, tgt = the_ids(translator, SOURCE, TARGET)
    captured: dict[str, list[torch.Tensor]] = {kind: [] for kind in KINDS}

    def self_attention(kind):
        def hook(attn, args, kwargs, output):
            (x,) = args
            b, t, c = x.shape
            q, k, v = attn.qkv(x).view(b, t, 3, attn.n_head, attn.head_size).permute(2, 0, 3, 1, 4)
            scores = q @ k.transpose(-2, -1) / math.sqrt(attn.head_size)
            if attn.causal:
                scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
            weights = scores.softmax(-1)
            y = attn.out((weights @ v).transpose(1, 2).reshape(b, t, c))
            torch.testing.assert_close(y, output[0], atol=1e-5, rtol=1e-4)
            captured[kind].append(weights[0])
        return hook

    def cross_attention(attn, args, kwargs, output):
        x, memory_kv = args
        b, t, c = x.shape
        q = attn.q(x).view(b, t, attn.n_head, attn.head_size).transpose(1, 2)
        k, v = memory_kv.unbind(0)
        weights = (q @ k.transpose(-2, -1) / math.sqrt(attn.head_size)).softmax(-1)
        y = attn.out((weights @ v).transpose(1, 2).reshape(b, t, c))
        torch.testing.assert_close(y, output[0], atol=1e-5, rtol=1e-4)
        captured["cross"].append(weights[0])

    handles = [b.attn.register_forward_hook(self_attention("encoder"), with_kwargs=True) for b in model.encoder]
    handles += [b.attn.register_forward_hook(self_attention("decoder"), with_kwargs=True) for b in model.decoder]
    handles += [b.cross.register_forward_hook(cross_attention, with_kwargs=True) for b in model.decoder]
    try:
        with torch.no_grad():
            model(torch.tensor([tgt]), source=torch.tensor([src]))
    finally:
        for h in handles:
            h.remove()
    seen = translation_attention(translator, SOURCE, TARGET)
    assert seen.source_ids == src and seen.target_ids == tgt and seen.given and seen.target == TARGET
    for kind in KINDS:
        assert len(captured[kind]) == model.config.n_layer
        torch.testing.assert_close(getattr(seen, kind), torch.stack(captured[kind]), atol=1e-6, rtol=1e-5)


def test_default_target_is_the_models_own_translation(translator, tmp_path):
    own = translate_batch(translator, [SOURCE], TranslateConfig(beam=1))[0]
    seen = translation_attention(translator, SOURCE)
    assert not seen.given and seen.target == own
    assert seen.target_ids[0] == translator.tokenizer.bos_id
    assert translator.tokenizer.decode(seen.target_ids[1:]).strip() == own
    truth = forward_weights(translator, seen.source_ids, seen.target_ids)
    for kind in KINDS:
        torch.testing.assert_close(getattr(seen, kind), torch.stack(truth[kind]))
    cross = plot_translation_attention(translator, SOURCE, tmp_path, layer=1, head=0)[2]
    assert cross.subtitle == f"«{SOURCE}» → «{shorten(own, 40)}» (the model's own translation)"
    assert cross.title.startswith("Cross-attention in translator (seq2seq, en → fa)")
    given = plot_translation_attention(translator, SOURCE, tmp_path, target=TARGET, layer=1, head=0)[2]
    assert given.subtitle == f"«{SOURCE}» → «{TARGET}» (the target given)"


def test_layers_heads_and_cuts(translator, tmp_path):
    pictures = plot_translation_attention(translator, SOURCE, tmp_path, target=TARGET, layer=1, head=0)
    assert [p.png.name for p in pictures] == [f"attention-{k}-layer1-head0.png" for k in KINDS]
    assert [p.html.name for p in pictures] == [f"attention-{k}-layer1-head0.html" for k in KINDS]
    seen = translation_attention(translator, SOURCE, TARGET)
    for kind, picture in zip(KINDS, pictures):
        assert picture.extra["cells"] == [(1, 0)]
        torch.testing.assert_close(torch.from_numpy(picture.panels[0].values).float(), getattr(seen, kind)[1, 0])
    heads = plot_translation_attention(translator, SOURCE, tmp_path, target=TARGET, head=1)
    assert heads[2].extra["cells"] == [(0, 1), (1, 1)] and heads[2].name == "attention-cross-head1"
    for bad in ({"layer": 2}, {"head": 2}):
        with pytest.raises(SokhanError, match="out of range"):
            plot_translation_attention(translator, SOURCE, tmp_path / "never", target=TARGET, **bad)
    assert not (tmp_path / "never").exists()
    short = plot_translation_attention(translator, SOURCE, tmp_path, target=TARGET, max_tokens=3)[2]
    assert short.panels[0].values.shape == (3, 3)
    assert "source cut to its first 3 of" in short.subtitle and "target cut to its first 3 of" in short.subtitle


def test_a_language_models_attention_is_unchanged(runs, translator, tmp_path):
    gpt = LanguageModel.load(runs["gpt"], device="cpu")
    picture = plot_attention(gpt, TARGET, tmp_path)
    assert picture.name == "attention" and picture.png.name == "attention.png"
    assert picture.panels[0].rows == picture.panels[0].cols and picture.panels[0].mask is not None
    with pytest.raises(SokhanError, match="translation model"):
        attention_maps(translator, SOURCE)
    with pytest.raises(SokhanError, match="not a translator"):
        translation_attention(gpt, SOURCE)


def test_positions_and_embeddings_of_a_translator(runs, translator, tmp_path):
    np.testing.assert_allclose(positional_encoding(translator).matrix, sinusoidal_table(128, 64).numpy(), atol=1e-7)
    learned = LanguageModel.load(runs["learned"], device="cpu")
    np.testing.assert_allclose(positional_encoding(learned).matrix, learned.model.positions.weight.detach().numpy(),
                               atol=1e-7)
    emb = plot_embeddings(translator, tmp_path, top=10).extra["embeddings"]
    sources, targets = ParallelData(translator.config["train"]["data"]).pairs("train")
    counts = np.bincount(np.concatenate(sources + targets), minlength=len(emb.tokens))
    assert emb.data == Path(translator.config["train"]["data"])
    assert emb.labelled == [int(i) for i in np.argsort(-counts, kind="stable")[:10]]


# --- the command line ---------------------------------------------------------------------------


def run_cli(args: list[str], capsys) -> tuple[int, list[str], list[str]]:
    code = main(["inspect", *args])
    captured = capsys.readouterr()
    return code, captured.out.split("\n")[:-1], [line for line in captured.err.splitlines() if line.strip()]


@pytest.mark.parametrize("target", [TARGET, None])
def test_cli_draws_three_pictures(target, runs, tmp_path, capsys):
    extra = [] if target is None else ["--target", target]
    code, out, err = run_cli(["attention", str(runs["translator"]), SOURCE, *extra, "--out-dir", str(tmp_path)],
                             capsys)
    assert code == 0
    assert [Path(p).name for p in out] == [f"attention-{k}.{ext}" for k in KINDS for ext in ("png", "html")]
    for png, html in zip(out[::2], out[1::2]):
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(png).stat().st_size > 20_000
        assert_offline_page(Path(html))
        assert all(panel["title"] for panel in read_html_data(Path(html))["panels"])
    if target is None:  # the model's own translation, told on stderr
        own = translate_batch(LanguageModel.load(runs["translator"], device="cpu"), [SOURCE],
                              TranslateConfig(beam=1))[0]
        assert err == [f"translation: {own}"]
    else:
        assert err == []


def test_cli_one_layer_and_head(runs, tmp_path, capsys):
    code, out, _ = run_cli(["attention", str(runs["translator"]), SOURCE, "--target", TARGET, "--layer", "0",
                            "--head", "1", "--out-dir", str(tmp_path)], capsys)
    assert code == 0 and [Path(p).name for p in out[::2]] == [f"attention-{k}-layer0-head1.png" for k in KINDS]


def test_cli_language_models_and_other_views(runs, tmp_path, capsys):
    code, out, _ = run_cli(["attention", str(runs["gpt"]), TARGET, "--out-dir", str(tmp_path)], capsys)
    assert code == 0 and [Path(p).name for p in out] == ["attention.png", "attention.html"]
    for view in (["positions"], ["embeddings", "--top", "8"]):
        code, out, _ = run_cli([view[0], str(runs["translator"]), *view[1:], "--out-dir", str(tmp_path)], capsys)
        assert code == 0 and [Path(p).name for p in out] == [f"{view[0]}.png", f"{view[0]}.html"]


@pytest.mark.parametrize("args, fragment", [
    (["attention", "{translator}", SOURCE, "--layer", "2"], "--layer 2 is out of range"),
    (["attention", "{translator}", SOURCE, "--target", TARGET, "--head", "5"], "--head 5 is out of range"),
    (["attention", "{translator}", SOURCE, "--target", "  "], "the target is empty"),
    (["attention", "{translator}", "  "], "give a text"),
    (["attention", "{gpt}", TARGET, "--target", TARGET], "not a translator"),
    (["next", "{translator}", SOURCE], "is a translation model"),
])
def test_bad_input_is_one_line_and_exit_2(args, fragment, runs, tmp_path, capsys):
    names = {k: str(v) for k, v in runs.items()}
    code, _, err = run_cli([*[a.format(**names) for a in args], "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and fragment in err[0], err
    assert not (tmp_path / "out").exists()
