"""English → Persian translation with the paper's encoder–decoder: what its masks, cache and decoders promise,
a tiny model that learns 20 sentence pairs by heart (greedy and beam reproduce them, BLEU and chrF++ are 100),
the `translate` command's line-for-line output and its one-line errors, the inverse-sqrt schedule, and an
exact resume.

The model-level tests use random tiny models (no data): a mask or cache mistake changes their logits far
beyond float noise. The end-to-end tests share one overfit model (`overfit`, trained once per module).
"""

from __future__ import annotations

import io
import json
import math
import random
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from helpers import InterruptAt, assert_same_weights, weights
from sokhan.api import LanguageModel
from sokhan.cli import main
from sokhan.config import ModelConfig, NormalizerConfig, PrepareConfig, TranslateConfig, TranslateTrainConfig
from sokhan.data.parallel import ParallelData
from sokhan.data.prepare import prepare
from sokhan.errors import SokhanError
from sokhan.infer.translate import (
    beam_decode,
    greedy_decode,
    max_new_tokens,
    source_ids,
    stream_translation,
    translate_batch,
    translate_lines,
)
from sokhan.models import build_model
from sokhan.models.checkpoint import resolve_model_dir
from sokhan.models.protocol import ModelOutput
from sokhan.models.seq2seq import EncoderDecoder
from sokhan.models.trained import TrainedModel
from sokhan.recipes.translate import translate_train
from sokhan.text.normalize import PersianNormalizer
from sokhan.train import engine
from sokhan.train.optim import lr_at
from sokhan.train.translation import TranslationTask, competence

PAD, BOS, EOS = 0, 1, 2   # the tokenizer's special ids (SPECIAL_TOKENS order), used by the random models too
VOCAB = 48
QUIET = Console(stderr=True, quiet=True)


def tiny_model(prenorm: bool = False, attention: str = "sdpa", seed: int = 0, **kw) -> EncoderDecoder:
    """A random encoder–decoder, 2 + 2 layers × 32 dims, dropout off, in eval mode."""
    torch.manual_seed(seed)
    cfg = ModelConfig.create(preset="seq2seq-tiny", vocab_size=VOCAB, n_embd=32, ffn_hidden=64, block_size=40,
                             dropout=0.0, prenorm=prenorm, attention=attention, **kw)
    return build_model(cfg).eval()


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, width) and the mask of real tokens."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, ids != PAD


def random_rows(rng: random.Random, lengths: list[int], end: int | None = None) -> list[list[int]]:
    """Rows of random ordinary ids (never a special one), each ending in `end` when given."""
    return [[rng.randrange(8, VOCAB) for _ in range(n)] + ([end] if end is not None else []) for n in lengths]


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> None:
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


MODEL_VARIANTS = [pytest.param(False, "sdpa", id="post-norm"), pytest.param(True, "sdpa", id="pre-norm"),
                  pytest.param(False, "explicit", id="post-norm-explicit")]


# -- 1. padding changes nothing ----------------------------------------------------------------------------


@pytest.mark.parametrize("prenorm,attention", MODEL_VARIANTS)
def test_padding_a_batch_leaves_each_sentences_logits_unchanged(prenorm, attention):
    """A sentence alone and in a batch beside a longer source and a longer target: its real positions agree."""
    model = tiny_model(prenorm, attention)
    rng = random.Random(1)
    sources = random_rows(rng, [4, 9, 6], EOS)
    targets = [[BOS] + row for row in random_rows(rng, [3, 7, 5])]
    src, src_mask = padded(sources)
    tgt, tgt_mask = padded(targets)
    batch = model(tgt, source=src, source_padding=src_mask).logits
    with_target_mask = model(tgt, source=src, source_padding=src_mask, padding=tgt_mask).logits
    for i, (s, t) in enumerate(zip(sources, targets)):
        alone = model(torch.tensor([t]), source=torch.tensor([s])).logits[0]
        close(batch[i, : len(t)], alone)
        close(with_target_mask[i, : len(t)], alone)
    # The check can fail: without the source mask, the short sentence reads its padding.
    unmasked = model(tgt, source=src).logits
    assert (unmasked[0, :4] - batch[0, :4]).abs().max() > 1e-3


def eos_prone(model: EncoderDecoder, factor: float = 1.1) -> EncoderDecoder:
    """Make <|eos|> likelier (its tied output row longer), so random models end sentences at various steps."""
    with torch.no_grad():
        model.embed.weight[EOS] *= factor
    return model


def decode(model, sources, max_new, beam=None, alpha=0.6):
    common = dict(pad_id=PAD, bos_id=BOS, eos_id=EOS, max_new=max_new)
    if beam is None:
        return greedy_decode(model, sources, **common)
    return beam_decode(model, sources, beam=beam, alpha=alpha, **common)


@pytest.mark.parametrize("beam", [None, 3], ids=["greedy", "beam-3"])
def test_a_sentence_decodes_alike_alone_and_in_a_batch(beam):
    """Sources of different lengths padded into one batch, rows leaving it as they end: each output is its own."""
    model = eos_prone(tiny_model(seed=3))
    rng = random.Random(2)
    sources = random_rows(rng, [5, 11, 2, 8, 14], EOS)
    limits = [12, 20, 6, 16, 20]
    together = decode(model, sources, limits, beam)
    alone = [decode(model, [s], [n], beam)[0] for s, n in zip(sources, limits)]
    assert together == alone
    # Rows end at different steps (some by <|eos|>, some at their limit), so finished rows leave the batch.
    lengths = [len(out) for out in together]
    assert len(set(lengths)) > 2 and any(n < limit for n, limit in zip(lengths, limits)), lengths
    assert all(n <= limit for n, limit in zip(lengths, limits))


# -- 2. what each position can see -------------------------------------------------------------------------


class EmbeddingTap:
    """Replaces each output of the token embedding by a leaf tensor that requires grad: call 0 is the source's,
    call 1 the target's, so gradients reach the embeddings of each position of each side."""

    def __init__(self, model: EncoderDecoder):
        self.outputs: list[torch.Tensor] = []
        self.handle = model.embed.register_forward_hook(self.hook)

    def hook(self, module, args, output):
        leaf = output.detach().requires_grad_()
        self.outputs.append(leaf)
        return leaf


@pytest.mark.parametrize("prenorm,attention", MODEL_VARIANTS)
def test_the_decoder_cannot_see_ahead_and_the_encoder_sees_both_ways(prenorm, attention):
    """Gradients of the logits at target position t reach target embeddings ≤ t only (exactly zero beyond),
    every real source token and no source padding; an encoder output depends on source tokens on both sides."""
    model = tiny_model(prenorm, attention)
    rng = random.Random(3)
    sources = random_rows(rng, [6, 9], EOS)
    src, src_mask = padded(sources)
    tgt, _ = padded([[BOS] + row for row in random_rows(rng, [7, 7])])
    tap = EmbeddingTap(model)
    logits = model(tgt, source=src, source_padding=src_mask).logits
    source_in, target_in = tap.outputs
    T = tgt.size(1)
    for t in range(T):
        g_tgt, g_src = torch.autograd.grad(logits[:, t].sum(), (target_in, source_in), retain_graph=True)
        per_position = g_tgt.abs().sum(-1)                                  # (B, T)
        assert torch.all(per_position[:, t + 1:] == 0), f"position {t} sees the future: {per_position}"
        assert torch.all(per_position[:, : t + 1] > 0), f"position {t} is blind to the past: {per_position}"
        from_source = g_src.abs().sum(-1)                                   # (B, S)
        assert torch.all(from_source[0, len(sources[0]):] == 0), f"padding leaks into position {t}"
        assert torch.all(from_source[src_mask] > 0), f"position {t} misses a source token"
    # The encoder is bidirectional: a middle source position depends on positions before and after it.
    tap.outputs.clear()
    memory, _ = model.encode(src, src_mask)
    probe = torch.randn(memory.size(-1))  # not .sum(): a LayerNorm's outputs sum to a constant
    (g,) = torch.autograd.grad(memory[1, 4] @ probe, tap.outputs[0])
    per_position = g[1].abs().sum(-1)
    assert torch.all(per_position[:4] > 0) and torch.all(per_position[5:] > 0), per_position
    # Padding positions' content has no influence at all: other ids there give the same logits.
    tap.handle.remove()
    other = src.clone()
    other[~src_mask] = 17
    with torch.no_grad():
        close(model(tgt, source=other, source_padding=src_mask).logits, logits.detach(), atol=1e-6)


# -- 3. cached decoding = the full forward -----------------------------------------------------------------


@pytest.mark.parametrize("prenorm,attention", MODEL_VARIANTS)
def test_cached_decoding_equals_the_full_forward(prenorm, attention):
    """Token by token with the cache (the encoder run once, the source padded) gives the full forward's logits."""
    model = tiny_model(prenorm, attention)
    rng = random.Random(4)
    src, src_mask = padded(random_rows(rng, [5, 10], EOS))
    tgt = torch.tensor([[BOS] + row for row in random_rows(rng, [8, 8])])
    with torch.no_grad():
        full = model(tgt, source=src, source_padding=src_mask).logits
        cache = model.new_cache(2)
        steps = [model(tgt[:, :1], source=src, source_padding=src_mask, cache=cache).logits]
        steps += [model(tgt[:, t: t + 1], cache=cache).logits for t in range(1, tgt.size(1))]  # no source again
        assert cache.length == tgt.size(1)
        close(torch.cat(steps, dim=1), full)
        # A prefix of several tokens, then one at a time, with need_weights on (the explicit path) at the end.
        cache = model.new_cache(2)
        first = model(tgt[:, :4], source=src, source_padding=src_mask, cache=cache).logits
        rest = [model(tgt[:, t: t + 1], cache=cache, need_weights=t == 8).logits for t in range(4, tgt.size(1))]
        close(torch.cat([first, *rest], dim=1), full)
        # Beam search reorders the cache's rows: continuing on rows (1, 1, 0) = the full forward on those rows.
        cache = model.new_cache(2)
        model(tgt[:, :5], source=src, source_padding=src_mask, cache=cache)
        rows = torch.tensor([1, 1, 0])
        cache.reorder(rows)
        after = torch.cat([model(tgt[rows, t: t + 1], cache=cache).logits for t in range(5, tgt.size(1))], dim=1)
        close(after, full[rows, 5:])


# -- 4. beam 1 is greedy -----------------------------------------------------------------------------------


def test_beam_search_of_width_one_is_greedy_whatever_the_length_penalty():
    """One hypothesis has nothing to compare its length with: beam 1 is greedy decoding for every α."""
    model = eos_prone(tiny_model(seed=3))
    rng = random.Random(2)
    sources = random_rows(rng, [3, 7, 12, 5, 9, 4], EOS)
    limits = [20] * len(sources)
    greedy = decode(model, sources, limits)
    assert any(len(out) < 20 for out in greedy) and any(len(out) > 3 for out in greedy), greedy
    for alpha in (0.0, 0.6, 2.0):
        assert decode(model, sources, limits, beam=1, alpha=alpha) == greedy, alpha
    # Wider beams do search something else: otherwise the comparison above proves little.
    assert decode(model, sources, limits, beam=4) != greedy


class MarkovDecoder(torch.nn.Module):
    """A stand-in translator whose next token depends on the last one only (a table of log-probabilities), so a
    test can script the search problem beam search faces; the encoder, the source and the cache do nothing."""

    capabilities = EncoderDecoder.capabilities

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table)

    def new_cache(self, batch: int):
        return Rows()

    def forward(self, idx, targets=None, *, cache=None, **kw):
        return ModelOutput(self.table[idx])


class Rows:
    """The cache of a stand-in translator: a token count, and rows that beam search may reorder."""

    def __init__(self):
        self.length = 0

    def reorder(self, rows: torch.Tensor) -> None:
        pass


def test_beam_search_keeps_the_best_hypothesis_when_worse_ones_end_first():
    """The right sentence is A B C D E (each word 0.9 likely); skipping a word costs a factor 0.05, so a hypothesis
    that skipped one ends a step before the right one, at a far lower score. Those endings must not stop the
    search before the right one ends (counting `beam` ended hypotheses alone did: it returned a skipping one)."""
    A = 3
    sentence = [BOS, A, A + 1, A + 2, A + 3, A + 4, EOS]
    table = torch.full((VOCAB, VOCAB), 1e-4)
    for i in range(len(sentence) - 1):
        table[sentence[i], sentence[i + 1]] = 0.9
        if i + 2 < len(sentence):
            table[sentence[i], sentence[i + 2]] = 0.05
    model = MarkovDecoder((table / table.sum(-1, keepdim=True)).log())
    right = sentence[1:-1]
    assert decode(model, [[5, EOS]], [20]) == [right]
    for beam in (2, 3, 4):
        for alpha in (0.0, 0.6, 1.0):
            assert decode(model, [[5, EOS]], [20], beam=beam, alpha=alpha) == [right], (beam, alpha)


# -- 5. a tiny model learns 20 pairs by heart --------------------------------------------------------------

NOUNS = [("book", "كتاب"), ("house", "خانه"), ("garden", "باغ"), ("flower", "گل"), ("friend", "دوست")]  # Arabic kaf
VERBS = [("I see the {}.", "من {} را می‌بینم."), ("you love the {}.", "تو {} را دوست داری."),
         ("we find the {}.", "ما {} را پیدا می‌کنیم."), ("they want the {}.", "آنها {} را می‌خواهند.")]
PAIRS = [(en.format(n_en), fa.format(n_fa)) for en, fa in VERBS for n_en, n_fa in NOUNS]
SOURCES = [en for en, _ in PAIRS]
RAW_TARGETS = [fa for _, fa in PAIRS]
# What the model learns, and what BLEU compares with: the Persian side as prepare normalizes it (ك → ک).
REFERENCES = [PersianNormalizer(NormalizerConfig())(fa).strip() for fa in RAW_TARGETS]


def write_lines(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + end for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A data folder whose train, valid and test splits are the same 20 pairs."""
    folder = tmp_path_factory.mktemp("corpus")
    for split in ("train", "valid", "test"):
        write_lines(folder / f"{split}.en", SOURCES)
        write_lines(folder / f"{split}.fa", RAW_TARGETS)
    return folder


@pytest.fixture(scope="module")
def overfit(corpus, tmp_path_factory):
    """`translate-train` on the 20 pairs: seq2seq-tiny (2 + 2 layers × 64), the 20 pairs in one batch, 200 full-batch
    steps at lr 3e-3, no dropout or label smoothing: it learns them by heart. Returns (run folder, result)."""
    run = tmp_path_factory.mktemp("overfit") / "run"
    cfg = TranslateTrainConfig(data=str(corpus), out_dir=str(run), vocab_size=300, max_steps=200, max_time=0,
                               lr=3e-3, warmup_steps=10, label_smoothing=0.0, eval_interval=200, beam=4,
                               batch_tokens=1024, device="cpu", progress=False, seed=0)
    return run, translate_train(cfg, dict(preset="seq2seq-tiny", dropout=0.0), QUIET)


@pytest.fixture(scope="module")
def translator(overfit) -> LanguageModel:
    return LanguageModel.load(overfit[0], device="cpu")


def test_a_tiny_model_learns_twenty_pairs_by_heart(overfit, translator):
    run, result = overfit
    assert REFERENCES != RAW_TARGETS  # normalization matters: the references are what prepare made of the text
    assert (run / "data" / "test.fa").read_text(encoding="utf-8").splitlines() == REFERENCES
    assert result.score is not None and (result.score.bleu, result.score.chrf) == pytest.approx((100, 100))
    assert translator.translate_all(SOURCES, beam=1) == REFERENCES
    assert translator.translate_all(SOURCES, beam=4) == REFERENCES
    assert translator.translate_all(SOURCES, beam=3, length_penalty=0.0, batch_size=7) == REFERENCES
    # Decoding reads a source as training did: the task's batch row (prepared ids, <|eos|>) = `source_ids`.
    task = TranslationTask(ParallelData(run / "data"), 1024, translator.block_size, 0.0, torch.device("cpu"), 0,
                           PAD, BOS, EOS, splits=("test",))
    batch = task.collate("test", np.arange(20))
    for i, text in enumerate(SOURCES):
        ids = source_ids(translator, text)
        assert batch.source[i][batch.source_padding[i]].tolist() == ids and ids[-1] == translator.tokenizer.eos_id
    # One sentence alone, its source with untidy spacing (normalized as training saw it), streamed piece by piece.
    assert translator.translate("  I see  the\tbook. ", beam=4) == REFERENCES[0]
    pieces = list(stream_translation(translator, SOURCES[7], TranslateConfig()))
    assert len(pieces) > 1 and "".join(pieces) == REFERENCES[7]


def test_beam_one_is_greedy_on_a_trained_model(translator):
    """On sentences it knows and two it has never seen, for every α; and `translate_batch` with beam 1 is greedy."""
    tok = translator.tokenizer
    sources = [source_ids(translator, s) for s in SOURCES[::3] + ["The weather is nice today.", "I love books."]]
    limits = [max_new_tokens(len(ids), TranslateConfig(), translator.block_size) for ids in sources]
    common = dict(pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id, max_new=limits)
    greedy = greedy_decode(translator.model, sources, **common)
    for alpha in (0.0, 0.6, 3.0):
        assert beam_decode(translator.model, sources, beam=1, alpha=alpha, **common) == greedy
    lines = translate_batch(translator, SOURCES[::3], TranslateConfig(beam=1))
    assert lines == [tok.decode(ids) for ids in greedy[: len(lines)]] == REFERENCES[::3]


# -- 6. BLEU and chrF++ of the perfect translations ---------------------------------------------------------


def test_eval_gives_bleu_and_chrf_100_for_perfect_translations(overfit, tmp_path, capsys):
    """`sokhan eval --source --reference` on the sentences the model knows by heart, references as published."""
    run = str(overfit[0])
    source = write_lines(tmp_path / "test.en", SOURCES)
    reference = write_lines(tmp_path / "test.fa", RAW_TARGETS)  # as published: eval normalizes them
    assert main(["eval", run, "--source", str(source), "--reference", str(reference)]) == 0
    out = capsys.readouterr().out
    assert "BLEU 100.00  chrF++ 100.00  (20 sentences)" in out, out
    assert "tok:13a" in out and "nw:2" in out  # sacrebleu's signatures: BLEU's tokenizer, chrF++'s word order
    # It trained on these very sentences, and eval says so.
    assert f"warning: 20 of these 20 source sentences are in the model's training data ({run}/data/train.en)" in out
    wrong = write_lines(tmp_path / "wrong.fa", RAW_TARGETS[1:] + RAW_TARGETS[:1])  # off by one line
    assert main(["eval", run, "--source", str(source), "--reference", str(wrong), "--beam", "2"]) == 0
    bleu, chrf = map(float, re.search(r"BLEU ([\d.]+)  chrF\+\+ ([\d.]+)", capsys.readouterr().out).groups())
    assert bleu < 60 and chrf < 80
    unseen = write_lines(tmp_path / "unseen.en", ["Good morning.", "The sea is wide."])
    assert main(["eval", run, "--source", str(unseen), "--reference", str(unseen)]) == 0
    assert "none of these source sentences is in the model's training data" in capsys.readouterr().out
    moved = tmp_path / "moved"  # the model alone, its prepared data nowhere to be found
    shutil.copytree(resolve_model_dir(run), moved)
    config = json.loads((moved / "config.json").read_text(encoding="utf-8"))
    config["train"]["data"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert main(["eval", str(moved), "--source", str(unseen), "--reference", str(unseen)]) == 0
    assert "training data was not found: whether it saw these sentences is unchecked" in capsys.readouterr().out


# -- 7. the translate command: one line out per line in -----------------------------------------------------


def test_translate_keeps_one_output_line_per_input_line(overfit, tmp_path, capsys, monkeypatch):
    """Blank lines in the middle and at the end stay blank lines, across batches; stdin and one sentence too."""
    run = str(overfit[0])
    lines = [SOURCES[0], "", SOURCES[5], "   ", SOURCES[10], SOURCES[15], "", ""]
    expected = [REFERENCES[0], "", REFERENCES[5], "", REFERENCES[10], REFERENCES[15], "", ""]
    path = write_lines(tmp_path / "in.en", lines)
    assert main(["translate", run, "--input", str(path), "--batch-size", "3", "--beam", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out.split("\n") == expected + [""] and captured.err == ""
    # From stdin, the last line without its newline, and greedy.
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\n".join(lines[:5]).encode())))
    assert main(["translate", run, "--input", "-", "--beam", "1"]) == 0
    assert capsys.readouterr().out.split("\n") == expected[:5] + [""]
    assert main(["translate", run, SOURCES[19]]) == 0
    assert capsys.readouterr().out == REFERENCES[19] + "\n"


class Scripted(torch.nn.Module):
    """A stand-in translator that writes `script` whatever the source (token t of it at step t, then <|eos|>)."""

    capabilities = EncoderDecoder.capabilities

    def __init__(self, script: list[int], vocab_size: int):
        super().__init__()
        self.script, self.vocab_size = script + [EOS], vocab_size
        self.register_buffer("device_marker", torch.zeros(1))
        self.config = ModelConfig.create(preset="seq2seq-tiny", vocab_size=vocab_size)

    def new_cache(self, batch: int):
        return Rows()

    def forward(self, idx, targets=None, *, cache=None, **kw):
        step = min(cache.length, len(self.script) - 1)
        cache.length += idx.size(1)
        logits = torch.full((idx.size(0), idx.size(1), self.vocab_size), -10.0)
        logits[:, :, self.script[step]] = 10.0
        return ModelOutput(logits)


def test_a_translation_is_always_one_line(translator):
    """Training targets never hold a line break, but a model can still write one (a byte-level BPE has the byte):
    each translation must stay on its line, or the output no longer pairs up with the input."""
    tok = translator.tokenizer
    script = tok.encode("من\nکتاب\t را\u2028دیدم  ")
    scripted = TrainedModel(Scripted(script, tok.vocab_size), tok, translator.normalize, {}, Path("scripted"))
    for beam in (1, 2):
        lines = list(translate_lines(scripted, ["one", "", "two"], TranslateConfig(beam=beam)))
        assert lines == ["من کتاب را دیدم", "", "من کتاب را دیدم"], beam
    assert "".join(stream_translation(scripted, "one", TranslateConfig())) == "من کتاب را دیدم"


# -- 8. bad input: one line, exit 2 -------------------------------------------------------------------------


def error_line(capsys, argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_a_source_longer_than_the_context_is_refused_or_cut_with_a_warning(overfit, tmp_path, capsys):
    run = str(overfit[0])
    long_line = " ".join([SOURCES[1]] * 60)
    path = write_lines(tmp_path / "long.en", [SOURCES[0], SOURCES[1], long_line, SOURCES[2]])
    # In the second batch of two: the line is still counted in the file.
    error_line(capsys, ["translate", run, "--input", str(path), "--too-long", "refuse", "--batch-size", "2"],
               f"{path}:3:", "more than the model's context of 128", "too-long mode 'truncate'")
    assert main(["translate", run, "--input", str(path), "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    out = captured.out.split("\n")
    assert len(out) == 5 and out[:2] == REFERENCES[:2] and out[3:] == [REFERENCES[2], ""], out
    warnings_ = [line for line in captured.err.splitlines() if line.strip()]
    assert len(warnings_) == 1 and warnings_[0].startswith("warning:") and f"{path}:3:" in warnings_[0], warnings_
    assert "cut to the model's context of 128" in warnings_[0]
    error_line(capsys, ["translate", run, long_line, "--too-long", "refuse"], "more than the model's context")


def test_translating_needs_a_translator_and_a_translator_does_not_sample_or_chat(overfit, tiny_run, tmp_path,
                                                                                 capsys, translator):
    run = str(overfit[0])
    source = write_lines(tmp_path / "s.en", SOURCES[:2])
    error_line(capsys, ["translate", str(tiny_run), "hello"], "not a translator", "translate-train")
    error_line(capsys, ["eval", str(tiny_run), "--source", str(source), "--reference", str(source)],
               "not a translator")
    error_line(capsys, ["sample", run, "--prompt", "سلام"], "translation model", "sokhan translate")
    error_line(capsys, ["chat", run], "translation model", "chat does not apply")
    error_line(capsys, ["eval", run, str(source)], "translation model", "bits per character")
    for call in (lambda: translator.generate("سلام"), lambda: translator.chat([{"role": "user", "content": "سلام"}]),
                 lambda: translator.bits_per_char("سلام")):
        with pytest.raises(SokhanError, match="translation model"):
            call()
    error_line(capsys, ["translate", run], "give the sentence to translate, or --input FILE")
    error_line(capsys, ["translate", run, "hi", "--input", str(source)], "not both")


def test_translate_train_refuses_misaligned_files(tmp_path, capsys):
    data = tmp_path / "data"
    write_lines(data / "train.en", SOURCES[:7])
    write_lines(data / "train.fa", RAW_TARGETS[:5])
    out = tmp_path / "out"
    line = error_line(capsys, ["translate-train", "--data", str(data), "--out-dir", str(out), "--preset",
                               "seq2seq-tiny", "--vocab-size", "300"],
                      "train.en has 7 lines", "train.fa has 5", "line-aligned")
    assert not (out / "checkpoints").exists(), line


def test_train_points_a_seq2seq_model_to_translate_train(tmp_path, capsys):
    data = prepare(PrepareConfig(source="hafez", out_dir=str(tmp_path / "prepared"), tokenizer="bpe", vocab_size=300),
                   progress=False)
    out = tmp_path / "out"
    error_line(capsys, ["train", "--data", str(data), "--out-dir", str(out), "--model", "seq2seq"],
               "sentence pairs", "sokhan translate-train")
    assert not (out / "checkpoints").exists()


# -- 9. the paper's learning-rate schedule -------------------------------------------------------------------


def test_inverse_sqrt_schedule_warms_up_then_decays_with_the_root_of_the_step():
    lr, min_lr, warmup = 1e-3, 1e-5, 40
    lrs = [lr_at(step, lr, min_lr, warmup, 100, schedule="inverse-sqrt") for step in range(20_000)]
    for step in range(warmup):
        assert lrs[step] == pytest.approx(lr * (step + 1) / warmup)
    for step in range(warmup, 20_000):
        assert lrs[step] == pytest.approx(max(min_lr, lr * math.sqrt(warmup / (step + 1))))
        # the paper's d^-0.5 · min(s^-0.5, s · w^-1.5), s counted from 1, scaled to peak at lr
        s = step + 1
        assert lrs[step] == pytest.approx(max(min_lr, lr * math.sqrt(warmup) * min(s ** -0.5, s * warmup ** -1.5)))
    assert max(lrs) == pytest.approx(lr) and lrs.index(max(lrs)) == warmup - 1  # the peak: the warmup's last step
    assert lrs[warmup] < lr and lr_at(10**4 * warmup, lr, min_lr, warmup, 100, schedule="inverse-sqrt") == min_lr
    # It has no end: neither the step budget nor the time budget moves it (they do move the cosine).
    for step in (0, warmup + 5, 500, 5000):
        base = lr_at(step, lr, min_lr, warmup, 100, schedule="inverse-sqrt")
        assert lr_at(step, lr, min_lr, warmup, 10**6, 0.9, "inverse-sqrt") == base
        assert lr_at(step, lr, min_lr, warmup, 200, 0.0, "inverse-sqrt") == base
    assert lr_at(60, lr, min_lr, warmup, 10**6, 0.9) < lr_at(60, lr, min_lr, warmup, 10**6, 0.0)


# -- 10. exact resume ------------------------------------------------------------------------------------------


def short_run(corpus: Path, out: Path, **kw):
    """8 steps of a tiny translator with dropout 0.1, batches of 2–3 pairs (8 to draw from), an
    evaluation and checkpoint every 4 steps; no time budget (a wall-clock cosine is not reproducible)."""
    cfg = TranslateTrainConfig(data=str(corpus), out_dir=str(out), vocab_size=300, max_steps=kw.pop("max_steps", 8),
                               max_time=0, warmup_steps=2, eval_interval=4, beam=1, eval_sentences=1,
                               batch_tokens=96, lr=1e-3, device="cpu", progress=False, seed=3, **kw)
    return translate_train(cfg, dict(preset="seq2seq-tiny", n_embd=32, ffn_hidden=64, dropout=0.1), QUIET)


@pytest.mark.usefixtures("interruptible")
def test_ctrl_c_then_resume_gives_the_weights_of_a_run_never_stopped(corpus, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    assert short_run(corpus, straight).train.step == 8
    # 3 calls a step (a batch, the forward pass, clipping), 40 in the evaluation at step 4 (20 batches, 20 passes):
    # one moment in steps 1-4, one in that evaluation, one in steps 5-7.
    rng = random.Random("ctrl-c seq2seq")
    for k in (rng.randrange(2, 13), rng.randrange(13, 53), rng.randrange(53, 62)):
        run = tmp_path / f"k{k}"
        with monkeypatch.context() as m:
            hook = InterruptAt(m, k, [(TranslationTask, "sample"), (EncoderDecoder, "forward"),
                                      (torch.nn.utils, "clip_grad_norm_")])
            first = short_run(corpus, run)
        assert hook.calls >= k and first.train.interrupted and first.train.step < 8, k
        resumed = short_run(corpus, run, resume=True)
        assert resumed.train.step == 8 and not resumed.train.interrupted and resumed.score is not None
        assert_same_weights(straight, run)
    other = tmp_path / "other-seed"  # the comparison can fail: another seed gives other weights
    short_run(corpus, other, max_steps=1)
    assert not torch.equal(weights(other)["embed.weight"], weights(straight)["embed.weight"])


def test_a_run_stopped_at_its_step_budget_resumes_on_the_inverse_sqrt_schedule(corpus, tmp_path, monkeypatch):
    """The paper's schedule has no end, so a run stopped after 4 steps and resumed to 8 is the run of 8."""
    used: list[tuple[int, float]] = []

    def recorded(step, *args):
        used.append((step, lr_at(step, *args)))
        return used[-1][1]

    monkeypatch.setattr(engine, "lr_at", recorded)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    # No curriculum: like the cosine, it follows the budget, and this run's budget grows from 4 steps to 8.
    short_run(corpus, straight, lr_schedule="inverse-sqrt", curriculum=0.0)
    assert short_run(corpus, stopped, lr_schedule="inverse-sqrt", max_steps=4, curriculum=0.0).train.step == 4
    assert short_run(corpus, stopped, lr_schedule="inverse-sqrt", resume=True, curriculum=0.0).train.step == 8
    assert_same_weights(straight, stopped)
    # The engine got the schedule from translate-train: warmup of 2 steps, then lr · sqrt(2 / (step + 1)).
    expected = [(step, lr_at(step, 1e-3, 1e-5, 2, 8, schedule="inverse-sqrt")) for step in range(8)]
    assert used == expected + expected[:4] + expected[4:]
    assert used[7][1] > lr_at(7, 1e-3, 1e-5, 2, 8)  # not the cosine, which ends at min_lr at step 8


# -- 11. shortest pairs first ----------------------------------------------------------------------------------


def test_the_curriculum_opens_the_shortest_batches_first(overfit, corpus, tmp_path, monkeypatch):
    """Platanios et al.'s competence: the shortest 1 % of the batches at the start, half of them an eighth of the
    way in (√0.25), all of them from half the run on; validation batches are never held back."""
    assert competence(0.0, 0.5) == pytest.approx(0.01) and competence(0.5, 0.5) == competence(0.9, 0.0) == 1.0
    assert competence(0.125, 0.5) == pytest.approx(0.5, abs=1e-4)
    task = TranslationTask(ParallelData(overfit[0] / "data"), 48, 128, 0.0, torch.device("cpu"), 0, PAD, BOS, EOS,
                           curriculum=0.5)
    batches = task.batches["train"]
    assert len(batches) >= 6
    widths = [max(len(task.pairs["train"][1][i]) for i in batch) for batch in batches]
    assert widths == sorted(widths) and widths[0] < widths[-1]  # sorted by length: the first batches are shortest
    drawn: list[int] = []
    monkeypatch.setattr(task, "collate", lambda split, indices: drawn.append(
        next(k for k, b in enumerate(task.batches[split]) if b is indices)))
    generator = torch.Generator().manual_seed(0)

    def draws(done: float, split: str = "train") -> set[int]:
        drawn.clear()
        task.set_progress(done)
        for _ in range(200):
            task.sample(split, generator)
        return set(drawn)

    assert draws(0.0) == {0}
    assert draws(0.125) == set(range(math.ceil(competence(0.125, 0.5) * len(batches))))  # about half
    assert draws(0.5) == set(range(len(batches)))
    assert len(draws(0.0, "val")) > 1

    # The engine tells the task how far the run is before each step: by steps here (no time budget).
    told: list[float] = []
    monkeypatch.setattr(TranslationTask, "set_progress", lambda self, done: told.append(done))
    short_run(corpus, tmp_path / "run", max_steps=4)
    assert told == [0.0, 0.25, 0.5, 0.75]
