"""Sampling and scoring: filters, stop strings, streaming, the sliding window of `eval`."""

import math

import pytest
import torch

from sokhan.errors import SokhanError
from sokhan.eval.bpc import bits_per_char, sequence_nll
from sokhan.infer.sampling import (
    SampleConfig,
    _held_back,
    candidates,
    decode_step,
    generate_ids,
    next_token,
    stream_text,
)
from sokhan.models import GPT, ModelConfig, ModelOutput
from sokhan.text.tokenizers import train_char


def tiny_model(block: int = 16, vocab: int = 50) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=vocab, block_size=block, n_layer=1, n_head=2, n_embd=16)).eval()


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

    class Scripted(torch.nn.Module):
        """A 'model' that always predicts the next character of a fixed script."""

        def __init__(self, script: list[int]):
            super().__init__()
            self.config = ModelConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=1, n_embd=8)
            self.script, self.dummy = script, torch.nn.Parameter(torch.zeros(1))
            self.i = 0

        def new_cache(self, batch):
            from sokhan.models.components import KVCache
            return KVCache(1, batch, 1, 64, 8, torch.device("cpu"), torch.float32)

        def forward(self, idx, cache=None, last_only=False, **_):
            logits = torch.full((1, 1, tok.vocab_size), -1e9)
            logits[0, 0, self.script[min(self.i, len(self.script) - 1)]] = 0
            self.i += 1
            cache.length += idx.size(1)
            return ModelOutput(logits)  # the model protocol's named output

    script = tok.encode("ab|cd ef")
    pieces = list(stream_text(Scripted(script), tok, [tok.bos_id], SampleConfig(max_new_tokens=20, stop=["|cd"])))
    assert "".join(pieces) == "ab"
    assert all("|" not in p for p in pieces)
    pieces = list(stream_text(Scripted(script + [tok.eos_id]), tok, [tok.bos_id], SampleConfig(max_new_tokens=20)))
    assert "".join(pieces) == "ab|cd ef"


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
