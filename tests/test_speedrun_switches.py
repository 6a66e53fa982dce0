"""The speedrun's switches, each against what it claims: Muon's step and its routing, QK-norm, ReLU², zero-init."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_same_weights
from sokhan.cli import main
from sokhan.config import PRESET_TRAINING, ModelConfig, PrepareConfig
from sokhan.data.prepare import prepare
from sokhan.errors import SokhanError
from sokhan.interop.hf_export import hf_architecture
from sokhan.models import build_model
from sokhan.models.checkpoint import latest_checkpoint, read_config
from sokhan.models.components import FeedForward
from sokhan.train.optim import MuonAdamW, is_hidden_matrix, make_optimizer

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=60)


def tiny_gpt(**changes) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig.create("tiny", **{**TINY, **changes}))


# --------------------------------------------------------------------------- Muon

def reference_muon_update(grad: torch.Tensor, momentum: torch.Tensor, mu: float = 0.95) -> torch.Tensor:
    """Keller Jordan's Muon, written out from its description: Nesterov momentum (B ← μB + g, u = g + μB; torch
    keeps B as a moving average, (1 − μ) times this, the same direction), then five quintic Newton–Schulz steps
    (a, b, c) = (3.4445, −4.7750, 2.0315) in bfloat16 on the wide orientation, after scaling u to norm 1."""
    momentum.mul_(mu).add_(grad)
    u = grad + mu * momentum
    x = u.bfloat16()
    tall = x.size(0) > x.size(1)
    x = x.T if tall else x
    x = x / x.norm().clamp(min=1e-7)
    a, b, c = 3.4445, -4.7750, 2.0315
    for _ in range(5):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).float()


def test_a_muon_step_equals_the_reference_on_a_small_matrix():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(12, 5))
    start = w.detach().clone()
    opt = torch.optim.Muon([w], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    momentum = torch.zeros_like(w)
    for _ in range(3):
        grad = torch.randn_like(w)
        w.grad = grad.clone()
        opt.step()
        update = reference_muon_update(grad, momentum)
        start = start * (1 - 0.02 * 0.1) - 0.02 * 0.2 * math.sqrt(12) * update  # match_rms_adamw: 0.2·√max(A, B)
        # bfloat16 inside Newton–Schulz: the two orders of the same products agree to its precision
        torch.testing.assert_close(w.detach(), start, rtol=0, atol=2e-3)


def test_muon_orthogonalizes_the_update():
    """The point of Muon: every direction of the update moves by about the same amount (singular values near one,
    the quintic leaves them in roughly [0.7, 1.2]), however lopsided the gradient's spectrum."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(64, 16))
    w.grad = torch.randn(64, 16) @ torch.diag(torch.logspace(0, 2, 16))  # singular values spread over ~100×
    spread = torch.linalg.svdvals(w.grad)
    torch.optim.Muon([w], lr=1.0, weight_decay=0.0, adjust_lr_fn="original").step()
    s = torch.linalg.svdvals(-w.detach()) / math.sqrt(64 / 16)  # "original" scales the step by √max(1, A/B)
    assert spread.max() / spread.min() > 50
    assert s.min() > 0.6 and s.max() < 1.25, s


def test_muon_takes_the_hidden_matrices_and_adamw_everything_else():
    model = tiny_gpt()
    opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.99), "cpu", "muon")
    assert isinstance(opt, MuonAdamW)
    muon_params = {id(p) for g in opt.parts["muon"].param_groups for p in g["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in muon_params}
    assert names == {f"blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.out", "ffn.up", "ffn.down")}
    adamw_params = {id(p) for g in opt.parts["adamw"].param_groups for p in g["params"]}
    assert muon_params.isdisjoint(adamw_params)
    assert muon_params | adamw_params == {id(p) for p in model.parameters()}
    assert not is_hidden_matrix("embed.weight", model.embed.weight)
    assert not is_hidden_matrix("blocks.0.attn.qkv.lora_a", torch.zeros(2, 3))


def test_muon_with_no_hidden_matrix_to_train_is_adamw():
    """A LoRA fine-tune trains adapters only (the base is frozen): nothing for Muon, so the optimizer is AdamW."""
    model = tiny_gpt()
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith("blocks."))
    assert isinstance(make_optimizer(model, 1e-3, 0.1, (0.9, 0.99), "cpu", "muon"), torch.optim.AdamW)


def test_muon_adamw_steps_the_rest_as_adamw_alone_would():
    """The AdamW half of MuonAdamW is a plain AdamW: an embedding moves exactly as torch's AdamW moves it."""
    a, b = tiny_gpt(), tiny_gpt()
    hybrid = make_optimizer(a, 1e-3, 0.1, (0.9, 0.99), "cpu", "muon")
    plain = make_optimizer(b, 1e-3, 0.1, (0.9, 0.99), "cpu", "adamw")
    x = torch.randint(0, 60, (4, 16))
    for model, opt in ((a, hybrid), (b, plain)):
        for group in opt.param_groups:  # the engine's schedule sets every group, Muon's too
            group["lr"] = 3e-3
        model(x, x).loss.backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(a.embed.weight, b.embed.weight)
    assert torch.equal(a.blocks[0].attn_norm.weight, b.blocks[0].attn_norm.weight)
    assert not torch.allclose(a.blocks[0].attn.qkv.weight, b.blocks[0].attn.qkv.weight)
    assert all(g["lr"] == 3e-3 for g in hybrid.parts["muon"].param_groups)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "hafez"
    return prepare(PrepareConfig(source="hafez", out_dir=str(out), tokenizer="bpe", vocab_size=300), progress=False)


def train_argv(data: Path, out: Path, steps: int, *extra: str, optimizer: str = "muon") -> list[str]:
    return ["train", "--data", str(data), "--out-dir", str(out), "--preset", "tiny", "--n-layer", "1",
            "--n-embd", "32", "--block-size", "32", "--batch-size", "4", "--max-steps", str(steps),
            "--eval-interval", "3", "--eval-iters", "1", "--warmup-steps", "2", "--device", "cpu", "--no-progress",
            "--optimizer", optimizer, "--qk-norm", "--activation", "relu2", "--zero-init-out", *extra]


@pytest.mark.parametrize("on_resume", ["muon", "auto"])
def test_a_muon_run_resumes_to_the_last_bit(data, tmp_path, on_resume):
    """Muon's momentum is saved with AdamW's moments: 3 steps, stop, 3 more equals 6 straight; `--optimizer auto`
    (the default) resumes with the optimizer the run was trained with."""
    assert main(train_argv(data, tmp_path / "straight", 6)) == 0
    assert main(train_argv(data, tmp_path / "resumed", 3, "--lr-decay-steps", "6")) == 0
    assert main(train_argv(data, tmp_path / "resumed", 6, "--resume", optimizer=on_resume)) == 0
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")


def test_resuming_with_another_optimizer_is_one_line(data, tmp_path, capsys):
    assert main(train_argv(data, tmp_path / "run", 3)) == 0
    capsys.readouterr()
    code = main([*train_argv(data, tmp_path / "run", 6, "--resume"), "--optimizer", "adamw"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "trained with --optimizer muon" in errors[0] and "resume with --optimizer muon" in errors[0]


def test_muon_under_fsdp_is_refused_in_one_line(data, tmp_path, capsys):
    code = main([*train_argv(data, tmp_path / "run", 3), "--fsdp"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "--optimizer muon cannot run under --fsdp" in lines[0], lines


# --------------------------------------------------------------------------- QK-norm

def test_qk_norm_holds_each_heads_queries_and_keys_at_unit_rms():
    model = tiny_gpt(qk_norm=True).eval()
    attn = model.blocks[0].attn
    assert attn.q_norm.weight.shape == attn.k_norm.weight.shape == (16,)  # one gain per head dimension
    seen = {}
    attn.q_norm.register_forward_hook(lambda m, i, out: seen.setdefault("q", out))
    attn.k_norm.register_forward_hook(lambda m, i, out: seen.setdefault("k", out))
    model(torch.randint(0, 60, (3, 10)))
    for name in "qk":
        assert seen[name].shape == (3, 2, 10, 16)  # (batch, heads, positions, head size)
        rms = seen[name].pow(2).mean(-1).sqrt()
        torch.testing.assert_close(rms, torch.ones_like(rms), rtol=0, atol=5e-3)  # ε inside the root


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_qk_norm_makes_attention_blind_to_the_scale_of_wq_and_wk(positional):
    """Without QK-norm, 30× larger W^Q and W^K sharpen every softmax; with it the logits do not change."""
    x = torch.randint(0, 60, (2, 12))
    for qk_norm in (False, True):
        model = tiny_gpt(qk_norm=qk_norm, positional=positional, bias=False).eval()
        before = model(x).logits
        with torch.no_grad():
            for block in model.blocks:
                block.attn.qkv.weight[:64] *= 30  # the W^Q and W^K rows of the fused projection
        after = model(x).logits
        if qk_norm:
            torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
        else:
            assert (after - before).abs().max() > 1e-2


def test_qk_norm_decodes_with_the_kv_cache_as_it_reads_whole():
    model = tiny_gpt(qk_norm=True, positional="rope").eval()
    x = torch.randint(0, 60, (1, 9))
    whole = model(x).logits[:, -1]
    cache = model.new_cache(1)
    model(x[:, :5], cache=cache)
    for i in range(5, 9):
        last = model(x[:, i:i + 1], cache=cache).logits[:, -1]
    torch.testing.assert_close(last, whole, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- ReLU², zero-init

def test_relu_squared_is_max_zero_x_squared():
    cfg = ModelConfig.create("tiny", **TINY, activation="relu2")
    torch.manual_seed(0)
    ffn = FeedForward(cfg)
    x = torch.randn(2, 5, 32)
    by_hand = F.linear(F.relu(F.linear(x, ffn.up.weight, ffn.up.bias)) ** 2, ffn.down.weight, ffn.down.bias)
    torch.testing.assert_close(ffn(x), by_hand)


def test_zero_init_out_starts_every_block_as_the_identity():
    model = tiny_gpt(zero_init_out=True)
    for block in model.blocks:
        assert not block.attn.out.weight.any() and not block.ffn.down.weight.any()
        assert block.attn.qkv.weight.std() > 0.01  # the rest keeps GPT-2's initialisation
    x = torch.randint(0, 60, (2, 7))
    embedded = model.positions(model.embed(x))
    torch.testing.assert_close(model(x).logits, model.lm_head(model.final_norm(embedded)))
    # and it learns: the zero projections get gradients at once
    model(x, x).loss.backward()
    assert model.blocks[-1].ffn.down.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("change, refusal", [(dict(qk_norm=True), "qk_norm"), (dict(activation="relu2"), "relu2")])
def test_switches_no_hf_class_computes_are_refused_by_export(change, refusal):
    for positional, extra in (("learned", {}), ("rope", dict(norm="rmsnorm", activation="swiglu"))):
        cfg = ModelConfig.create("tiny", **TINY, positional=positional, **{**extra, **change})
        with pytest.raises(SokhanError, match=refusal):
            hf_architecture(cfg)


# --------------------------------------------------------------------------- the preset

def test_the_speedrun_preset_brings_its_optimizer_and_flags_typed_win(data, tmp_path):
    base = ["train", "--data", str(data), "--preset", "speedrun", "--n-layer", "1", "--max-steps", "2",
            "--eval-interval", "2", "--eval-iters", "1", "--device", "cpu", "--no-progress"]
    assert main([*base, "--out-dir", str(tmp_path / "preset")]) == 0
    saved = read_config(latest_checkpoint(tmp_path / "preset"))
    assert saved["model"]["preset"] == "speedrun"
    assert {k: saved["train"][k] for k in PRESET_TRAINING["speedrun"]} == PRESET_TRAINING["speedrun"]
    assert saved["train"]["optimizer"] == "muon"
    assert main([*base, "--out-dir", str(tmp_path / "typed"), "--optimizer", "adamw", "--lr", "5e-4"]) == 0
    typed = read_config(latest_checkpoint(tmp_path / "typed"))["train"]
    assert (typed["optimizer"], typed["lr"]) == ("adamw", 5e-4)
