"""The Transformer's components behave as the paper says."""

import math

import pytest
import torch

from sokhan.models import GPT, ModelConfig, build_model
from sokhan.models.components import attention_mask, sinusoidal_table

VARIANTS = {
    "gpt": {},
    "paper": dict(positional="sinusoidal", prenorm=False, activation="relu", scale_embeddings=True),
    "llama": dict(positional="rope", norm="rmsnorm", activation="swiglu", bias=False, tie_weights=False),
}


def make(variant: str, **kw) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32, **{**VARIANTS[variant], **kw})
    return GPT(cfg).eval()


def twin_explicit(model: GPT) -> GPT:
    twin = GPT(ModelConfig(**{**model.config.to_dict(), "attention": "explicit"})).eval()
    twin.load_state_dict(model.state_dict())
    return twin


@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_attention_equals_explicit(variant):
    model = make(variant)
    x = torch.randint(0, 97, (3, 20))
    padding = torch.ones(3, 20, dtype=torch.long)
    padding[1, 15:] = 0  # right padding
    padding[2, :4] = 0   # left padding
    fast = model(x).logits
    out = twin_explicit(model)(x, need_weights=True)
    explicit, weights = out.logits, out.attentions
    assert torch.allclose(fast, explicit, atol=1e-5)
    assert len(weights) == 2 and weights[0].shape == (3, 4, 20, 20)
    fast_p = model(x, padding=padding).logits
    explicit_p = twin_explicit(model)(x, padding=padding).logits
    assert torch.allclose(fast_p, explicit_p, atol=1e-5)
    # need_weights on the fast model takes the explicit path and gives the same numbers
    assert torch.allclose(model(x, need_weights=True).logits, fast, atol=1e-5)


def test_attention_weights_rows_sum_to_one_and_mask_the_future():
    model = make("gpt")
    weights = model(torch.randint(0, 97, (2, 12)), need_weights=True).attentions
    for w in weights:
        assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-6)
        upper = torch.triu(torch.ones(12, 12, dtype=torch.bool), diagonal=1)
        assert (w[..., upper] == 0).all()


def test_padding_keys_get_no_attention():
    model = make("gpt")
    padding = torch.tensor([[0, 0, 1, 1, 1, 1]])
    weights = model(torch.randint(0, 97, (1, 6)), padding=padding, need_weights=True).attentions
    real_queries = weights[0][0, :, 2:, :2]  # real tokens looking at the padded positions
    assert (real_queries == 0).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_causal_mask_blocks_the_future(variant):
    """The output at position t must not depend on inputs after t: its gradient w.r.t. them is zero."""
    model = make(variant)
    x = model.embed(torch.randint(0, 97, (1, 16))).detach().requires_grad_(True)
    h = x if model.positions is None else model.positions(x)
    rope = model.rope(0, 16) if model.rope is not None else None
    for block in model.blocks:
        h, _ = block(h, rope=rope)
    t = 7
    # A random direction, not .sum(): a post-norm block ends in LayerNorm, whose outputs always sum to ~0.
    (h[0, t] * torch.randn(h.size(-1), generator=torch.Generator().manual_seed(0))).sum().backward()
    grad = x.grad[0].abs().sum(-1)
    assert (grad[t + 1:] == 0).all()
    assert (grad[: t + 1] > 0).all()


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_residual_and_attention_dropout_are_separate_switches(attention):
    """`dropout` drops sublayer outputs and embedding sums (§5.4), `attention_dropout` the attention
    weights: each alone makes a training forward random, neither touches evaluation."""
    x = torch.randint(0, 97, (2, 16))

    def differs(**kw) -> bool:
        model = make("gpt", attention=attention, **kw).train()
        return not torch.equal(model(x).logits, model(x).logits)

    assert not differs()
    assert differs(dropout=0.3) and differs(attention_dropout=0.3)
    model = make("gpt", attention=attention, dropout=0.3, attention_dropout=0.3)
    assert torch.equal(model(x).logits, model(x).logits)  # eval: no dropout at all


def test_sinusoidal_matches_the_paper_formula():
    d, table = 16, sinusoidal_table(50, 16)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_scaled_embeddings_start_at_the_scale_of_the_sine_table(family):
    """§3.4's ×√d_model is meant for N(0, 1/d_model) weights: unit-variance inputs, as large as the sinusoids
    they are added to. From GPT-2's N(0, 0.02) they started 6× smaller and a sinusoidal GPT never learned."""
    torch.manual_seed(0)
    ids = torch.randint(0, 500, (4, 64))
    for scaled, expected in ((True, 1.0), (False, 0.02)):
        model = build_model(ModelConfig.create(family=family, preset="tiny", vocab_size=500,
                                               positional="sinusoidal", scale_embeddings=scaled))
        assert model.embed(ids).std().item() == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_kv_cache_equals_full_forward(variant):
    model = make(variant)
    x = torch.randint(0, 97, (2, 24))
    full = model(x).logits
    cache = model.new_cache(2)
    pieces = [model(x[:, :9], cache=cache).logits]          # prefill
    pieces += [model(x[:, i:i + 1], cache=cache).logits for i in range(9, 14)]  # one token at a time
    pieces.append(model(x[:, 14:], cache=cache).logits)     # a chunk after the cache
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-5)


def test_cache_refuses_to_overflow_the_context():
    model = make("gpt")
    with pytest.raises(ValueError):
        model(torch.randint(0, 97, (1, 33)))


def test_weight_tying_and_gpt2_size():
    model = make("gpt")
    assert model.lm_head.weight is model.embed.weight
    assert make("llama").lm_head.weight is not make("llama").embed.weight
    # GPT-2 small: 124M parameters with the padded 50304 vocabulary (nanoGPT reports 123.69M non-embedding + wpe)
    with torch.device("meta"):
        gpt2 = GPT(ModelConfig.create(preset="gpt2"))
    assert abs(gpt2.num_parameters() / 1e6 - 123.69) < 0.01


def test_mask_helper_never_leaves_an_empty_row():
    allowed = attention_mask(4, 4, causal=True, padding=torch.tensor([[0, 0, 0, 1]]), device=torch.device("cpu"))
    assert allowed.any(-1).all()


def test_loss_ignores_masked_targets():
    model = make("gpt")
    x = torch.randint(0, 97, (1, 10))
    y = x.clone()
    y[0, :5] = -100
    out = model(x, y)
    logits, loss = out.logits, out.loss
    expected = torch.nn.functional.cross_entropy(logits[0, 5:], y[0, 5:])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_every_family_follows_the_model_protocol():
    """Named outputs and declared capabilities, the same for every family (models/protocol.py)."""
    from sokhan.config import FAMILIES as FAMILY_NAMES
    from sokhan.models import FAMILIES, Capabilities, ModelOutput, build_model

    assert tuple(FAMILIES) == FAMILY_NAMES  # the config's choices are the registered families
    x = torch.randint(0, 50, (2, 8))
    for name in FAMILIES:
        model = build_model(ModelConfig(family=name, vocab_size=50, n_layer=1, n_head=2, n_embd=16, block_size=16,
                                        order=3)).eval()
        caps = model.capabilities
        assert isinstance(caps, Capabilities)
        source = {"source": x} if caps.needs_source else {}  # an encoder–decoder reads a source too
        assert caps.needs_source == (name == "seq2seq")
        out = model(x, x, need_weights=True, **source)
        assert isinstance(out, ModelOutput) and out.logits.shape == (2, 8, 50) and out.loss.ndim == 0
        assert (out.attentions is not None) == caps.attention, name
        assert (model.input_embeddings() is None) == caps.lookup, name
        assert caps.windowed == (name in ("gpt", "bert", "seq2seq"))
        assert (out.cross_attentions is not None) == caps.needs_source, name
        if caps.causal:
            cache = model.new_cache(2)
            model(x[:, :5], cache=cache, **source)
            assert cache.length == 5
