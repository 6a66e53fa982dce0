"""Sampling and scoring: filters, stop strings, streaming, the sliding window of `eval`."""

import math
import random

import pytest
import torch

from sokhan.errors import SokhanError
from sokhan.eval.bpc import bits_per_char, sequence_nll
from sokhan.infer.sampling import (
    SampleConfig,
    StreamStats,
    _compiled_steps,
    _held_back,
    _stop_cut,
    candidates,
    compile_decode_step,
    decode_step,
    generate_ids,
    next_token,
    stream_text,
)
from sokhan.models import GPT, ModelConfig, ModelOutput
from sokhan.models.components import KVCache
from sokhan.text.tokenizers import BYTE_TOKENS, Tokenizer, train_bpe, train_char


def tiny_model(block: int = 16, vocab: int = 50) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=vocab, block_size=block, n_layer=1, n_head=2, n_embd=16)).eval()


class Scripted(torch.nn.Module):
    """A 'model' that always predicts the next token of a fixed script (then its last one, again)."""

    def __init__(self, script: list[int], vocab_size: int):
        super().__init__()
        self.config = ModelConfig(vocab_size=vocab_size, block_size=64, n_layer=1, n_head=1, n_embd=8)
        self.script, self.dummy = script, torch.nn.Parameter(torch.zeros(1))
        self.i = 0

    def new_cache(self, batch):
        return KVCache(1, batch, 1, 64, 8, torch.device("cpu"), torch.float32)

    def forward(self, idx, cache=None, last_only=False, **_):
        logits = torch.full((1, 1, self.config.vocab_size), -1e9)
        logits[0, 0, self.script[min(self.i, len(self.script) - 1)]] = 0
        self.i += 1
        cache.length += idx.size(1)
        return ModelOutput(logits)  # the model protocol's named output


def kept(logits: torch.Tensor, **kw) -> set[int]:
    values, ids = candidates(logits, **kw)
    ids = ids if ids is not None else torch.arange(logits.size(-1)).expand_as(logits)
    return set(ids[torch.isfinite(values)].tolist())


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    assert kept(logits, top_k=2) == {1, 3}
    assert kept(logits, top_k=0) == {0, 1, 2, 3, 4}


def test_top_p_keeps_the_smallest_set_reaching_p():
    logp = torch.tensor([[0.15, 0.5, 0.05, 0.3]]).log()
    assert kept(logp, top_p=0.7) == {1, 3}  # 0.5 < 0.7, 0.5 + 0.3 ≥ 0.7
    assert kept(logp, top_p=0.5) == {1}
    assert kept(logp, top_p=1.0) == {0, 1, 2, 3}
    assert kept(logp, top_k=3, top_p=0.7) == {1, 3}


def test_sampling_follows_the_distribution():
    """The exponential race draws each token with its probability (chi-square-free check: 4σ)."""
    probs = torch.tensor([[0.6, 0.3, 0.1, 0.0]])
    gen = torch.Generator().manual_seed(0)
    cfg = SampleConfig(temperature=1.0)
    n = 20000
    draws = torch.cat([next_token(probs.log(), cfg, gen) for _ in range(n)]).flatten()
    freq = torch.bincount(draws, minlength=4).double() / n
    for p, f in zip(probs[0].tolist(), freq.tolist()):
        assert abs(f - p) <= 4 * (p * (1 - p) / n) ** 0.5 + 1e-9
    top1 = torch.cat([next_token(probs.log(), SampleConfig(top_k=1), gen) for _ in range(50)])
    assert (top1 == 0).all()


def test_broken_weights_are_an_error_not_garbage():
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight[3, 0] = float("nan")
    with pytest.raises(SokhanError, match="not finite"):
        list(generate_ids(model, [1, 2], SampleConfig(max_new_tokens=3)))


def test_greedy_follows_argmax_of_full_forward():
    model = tiny_model()
    prompt = [1, 7, 3]
    out = list(generate_ids(model, prompt, SampleConfig(max_new_tokens=6, temperature=0)))
    seq = list(prompt)
    for _ in range(6):
        seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    assert out == seq[3:]


@pytest.mark.parametrize("onednn", [True, False])
def test_decode_step_without_onednn_matches_and_restores_the_switch(onednn):
    """The decode step turns oneDNN off for itself only: same logits, and the switch is as it was,
    also when the caller stops reading half way."""
    model = tiny_model()
    before = torch.backends.mkldnn.enabled
    try:
        torch.backends.mkldnn.enabled = onednn
        with torch.inference_mode():
            logits = {}
            for native in (False, True):
                cache = model.new_cache(1)
                model(torch.tensor([[1, 7, 3]]), cache=cache)
                logits[native] = decode_step(model, torch.tensor([[4]]), cache, native_kernels=native)
                assert torch.backends.mkldnn.enabled is onednn
        assert torch.allclose(logits[True], logits[False], atol=1e-5)
        tokens = generate_ids(model, [1, 2], SampleConfig(max_new_tokens=20, seed=0))
        next(tokens), next(tokens)
        assert torch.backends.mkldnn.enabled is onednn
        tokens.close()
        assert torch.backends.mkldnn.enabled is onednn
    finally:
        torch.backends.mkldnn.enabled = before


def test_compiled_decode_step_samples_what_eager_does():
    """`compile_decode_step` (torch.compile): the same seeded tokens as the eager model, across a context
    refill and the cache's last slot, and every one-row step from the second cached position on goes through
    the compiled forward."""
    eager, model = tiny_model(block=8), tiny_model(block=8)
    assert compile_decode_step(model) > 0
    compiled, calls = _compiled_steps[model], []
    _compiled_steps[model] = lambda *a, **kw: calls.append(kw["cache"].length) or compiled(*a, **kw)
    cfg = SampleConfig(max_new_tokens=20, top_k=10, seed=3)
    assert list(generate_ids(model, [1, 2, 3], cfg)) == list(generate_ids(eager, [1, 2, 3], cfg))
    assert calls and min(calls) >= 2 and len(calls) >= 15  # 19 steps, minus those the prompt of a refill takes
    # the cache's last slot needs a graph of its own, compiled at load: the steps run without guards, where a
    # recompile would raise (`torch.compiler.set_stance(skip_guard_eval_unsafe=True)`)
    assert max(calls) == 7
    assert list(generate_ids(model, [1], cfg)) == list(generate_ids(eager, [1], cfg))  # a one-token prompt


def test_a_failed_compile_is_one_line_and_leaves_the_model_eager(monkeypatch):
    model = tiny_model()

    def no_compiler(*a, **kw):
        def broken(*a, **kw):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")
        return broken

    monkeypatch.setattr(torch, "compile", no_compiler)
    with pytest.raises(SokhanError, match=r"compiling the decode step failed \(InvalidCxxCompiler: No working C\+\+ "
                                          r"compiler found\); run without --compile$"):
        compile_decode_step(model)
    assert model not in _compiled_steps
    assert len(list(generate_ids(model, [1, 2], SampleConfig(max_new_tokens=5, seed=0)))) == 5


def test_only_a_gpt_decode_step_compiles():
    from sokhan.models import build_model

    rnn = build_model(ModelConfig(family="lstm", vocab_size=50, block_size=16, n_layer=1, n_embd=16))
    with pytest.raises(SokhanError, match="--compile compiles a GPT's decode step; a lstm model has none"):
        compile_decode_step(rnn)


def test_generation_continues_past_the_context_window():
    model = tiny_model(block=8)
    out = list(generate_ids(model, [1, 2, 3], SampleConfig(max_new_tokens=30, seed=0)))
    assert len(out) == 30 and all(0 <= t < 50 for t in out)


def test_seed_makes_sampling_reproducible():
    model = tiny_model()
    a = list(generate_ids(model, [1], SampleConfig(max_new_tokens=10, seed=5)))
    b = list(generate_ids(model, [1], SampleConfig(max_new_tokens=10, seed=5)))
    assert a == b


def test_stop_string_cuts_and_is_never_partially_streamed():
    tok = train_char(["ab|cd ef"])
    assert _held_back("xyz|c", ["|cd"]) == 2
    assert _held_back("xyz", ["|cd"]) == 0

    script = tok.encode("ab|cd ef")
    pieces = list(stream_text(Scripted(script, tok.vocab_size), tok, [tok.bos_id],
                              SampleConfig(max_new_tokens=20, stop=["|cd"])))
    assert "".join(pieces) == "ab"
    assert all("|" not in p for p in pieces)
    pieces = list(stream_text(Scripted(script + [tok.eos_id], tok.vocab_size), tok, [tok.bos_id],
                              SampleConfig(max_new_tokens=20)))
    assert "".join(pieces) == "ab|cd ef"


def random_ids(tok: Tokenizer, rng: random.Random) -> list[int]:
    """A random run of ids, no <|eos|>/<|end|>; for a char tokenizer half of them byte tokens."""
    stops = {tok.eos_id, tok.token_id("<|end|>")}
    ids = [i for i in range(tok.vocab_size) if i not in stops]
    byte_ids = [tok.token_id(t) for t in BYTE_TOKENS] if tok.kind == "char" else ids
    return [rng.choice(byte_ids if rng.random() < 0.5 else ids) for _ in range(rng.randint(1, 12))]


def sentencepiece_like(texts: list[str]) -> Tokenizer:
    """A char tokenizer decoded as Llama's SentencePiece tokenizer is: byte fallback, and the decode's first
    space dropped (so a piece decoded alone is not a slice of the whole)."""
    from tokenizers import decoders

    tok = train_char(texts)
    tok.hf.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return tok


@pytest.mark.parametrize("kind", ["char", "bpe", "sentencepiece"])
def test_streamed_pieces_are_always_the_final_decode(kind):
    """Whatever the ids (stray bytes, half characters, special tokens, stop strings), the pieces
    streamed join to the decode of every id sampled, cut at a stop string: a char tokenizer's
    byte fallback decodes a run of bytes as one, so '€' streamed from <0xE2><0x82><0xAC>
    becomes '����' once <0xFF> follows, and a piece already printed would be wrong."""
    texts = ["سلام دنیا، این یک آزمون است. می‌روم کِتاب", "hello world € 😀 ab|cd"] * 5
    tok = {"char": train_char, "sentencepiece": sentencepiece_like}.get(
        kind, lambda t: train_bpe(t, vocab_size=300, min_frequency=1))(texts)
    rng = random.Random(0)
    for _ in range(300):
        script = random_ids(tok, rng)
        cfg = SampleConfig(max_new_tokens=len(script), temperature=0,
                           stop=rng.choice([[], ["a"], ["€"], ["ل", "o w"], ["\ufffd"]]))
        stats = StreamStats()
        pieces = list(stream_text(Scripted(script, tok.vocab_size), tok, [tok.bos_id], cfg, stats))
        text = tok.decode(script[:stats.tokens])
        cut = _stop_cut(text, cfg.stop)
        assert "".join(pieces) == text[:cut], [tok.id_to_token(i) for i in script]


def test_a_long_stream_decodes_a_few_ids_per_token(monkeypatch):
    """Each token decodes the ids after the settled text (and the one before it), not every id so far: a
    reply of n tokens costs O(n), not O(n²), and the pieces still join to the whole decode."""
    tok = train_bpe(["سلام دنیا، این یک آزمون است. hello world"] * 5, vocab_size=300, min_frequency=1)
    script = tok.encode("سلام دنیا، این یک آزمون است. hello world " * 20)
    lengths: list[int] = []
    decode = tok.decode
    monkeypatch.setattr(tok, "decode", lambda ids: lengths.append(len(list(ids))) or decode(ids))
    cfg = SampleConfig(max_new_tokens=len(script), temperature=0)
    pieces = list(stream_text(Scripted(script, tok.vocab_size), tok, [tok.bos_id], cfg))
    assert "".join(pieces) == decode(script) and len(script) > 200
    assert max(lengths) <= 4, max(lengths)


def test_tiny_temperatures_sample_greedily_and_bad_ones_are_refused():
    """Logits divided by 1e-40 overflow and 5e-324 is 0 in float32: both once gave NaN scores and
    <|pad|> (id 0) at every step. Below 1e-5 sampling is greedy, its limit."""
    model = tiny_model()
    greedy = list(generate_ids(model, [1, 2], SampleConfig(max_new_tokens=5, temperature=0)))
    assert 0 not in greedy
    for t in (1e-40, 5e-324, 1e-6):
        assert list(generate_ids(model, [1, 2], SampleConfig(max_new_tokens=5, temperature=t, seed=0))) == greedy
    assert SampleConfig(temperature=1e-6).greedy and not SampleConfig(temperature=1e-5).greedy
    for bad in (math.nan, math.inf):
        with pytest.raises(SokhanError, match="finite"):
            SampleConfig(temperature=bad)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_logits_that_break_mid_way_are_an_error_not_pad_tokens(temperature, bad):
    """A model whose logits turn NaN (or one +inf, which makes softmax all NaN) at the 4th token
    stops with one line after 3 good tokens; checking the first step only let it stream ids."""
    model = tiny_model()
    calls = 0

    def break_at_fourth(module, inputs, out):
        nonlocal calls
        calls += 1
        if calls >= 4:
            out[..., 7] = bad

    model.lm_head.register_forward_hook(break_at_fourth)
    got = []
    with pytest.raises(SokhanError, match=r"not finite .* at new token 4"):
        for token in generate_ids(model, [1, 2], SampleConfig(max_new_tokens=10, temperature=temperature, seed=0)):
            got.append(token)
    assert len(got) == 3


def test_a_zero_draw_never_picks_a_token_of_probability_zero(monkeypatch):
    """With U = 0, log U = −inf made every score p / log U −0.0: the tie went to id 0, of probability 0."""
    monkeypatch.setattr(torch.Tensor, "uniform_", lambda self, low=0.0, high=1.0, *, generator=None: self.fill_(low))
    logits = torch.tensor([[-1e4, 0.0, -1e4, -1e4]])  # softmax: exactly [0, 1, 0, 0]
    for cfg in (SampleConfig(temperature=1.0), SampleConfig(temperature=0.7, top_p=0.9),
                SampleConfig(temperature=1.0, top_k=3)):
        assert next_token(logits, cfg, None).item() == 1


def test_a_context_of_one_token_generates():
    """block_size 1: the rebuilt window once kept every token (tokens[-0:]), past the model's context."""
    model = tiny_model(block=1)
    out = list(generate_ids(model, [1, 2, 3], SampleConfig(max_new_tokens=5, temperature=0)))
    last, expected = 3, []
    for _ in range(5):
        last = int(model(torch.tensor([[last]])).logits[0, -1].argmax())
        expected.append(last)
    assert out == expected


def test_bad_sampling_options():
    for bad in (dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(top_k=-2)):
        with pytest.raises(SokhanError):
            SampleConfig(**bad)


def test_sliding_window_scores_every_token_once_and_matches_full_context():
    model = tiny_model(block=32)
    ids = torch.randint(0, 50, (30,)).tolist()
    logp = torch.log_softmax(model(torch.tensor([ids[:-1]])).logits[0], -1)
    direct = -sum(logp[i, ids[i + 1]].item() for i in range(29))
    for stride in (1, 5, 16, 32):
        nll, scored = sequence_nll(model, ids, block_size=32, stride=stride)
        assert scored == 29
        assert nll == pytest.approx(direct, rel=1e-5)
    long = torch.randint(0, 50, (200,)).tolist()
    nll, scored = sequence_nll(model, long, block_size=32, stride=8)
    assert scored == 199 and math.isfinite(nll)


def test_uniform_model_has_log2_vocab_bits_per_token():
    """A model with all-zero logits assigns 1/V to every token: bpc = log2(V) · tokens / chars."""
    model = tiny_model(block=32, vocab=64)
    torch.nn.init.zeros_(model.lm_head.weight)
    ids = torch.randint(0, 64, (100,)).tolist()
    nll, scored = sequence_nll(model, ids, block_size=32)
    n_chars = 250
    assert bits_per_char(nll, n_chars) == pytest.approx(math.log2(64) * scored / n_chars, rel=1e-6)
