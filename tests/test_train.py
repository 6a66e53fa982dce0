"""The shared training engine: it learns, it resumes exactly, it checkpoints safely."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from sokhan.api import LanguageModel
from sokhan.config import SampleConfig, TrainConfig
from sokhan.constants import IGNORE_INDEX
from sokhan.data.prepare import PrepareConfig, prepare
from sokhan.infer.sampling import generate_ids
from sokhan.models import GPT, ModelConfig, build_model
from sokhan.models.checkpoint import (
    load_trainer_state,
    load_weights,
    resolve_model_dir,
    save_checkpoint,
)
from sokhan.recipes.pretrain import pretrain

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32)


@pytest.fixture(scope="module")
def hafez_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "hafez"
    return prepare(PrepareConfig(source="hafez", out_dir=str(out), tokenizer="bpe", vocab_size=400), progress=False)


def run(data: Path, out: Path, **kw) -> object:
    cfg = TrainConfig(data=str(data), out_dir=str(out), batch_size=8, max_steps=kw.pop("max_steps", 20),
                      eval_interval=kw.pop("eval_interval", 1000), eval_iters=4, warmup_steps=2, progress=False,
                      device="cpu", **kw)
    return pretrain(cfg, dict(TINY, preset="tiny", dropout=0.1))


def test_training_lowers_validation_loss(hafez_data, tmp_path):
    result = run(hafez_data, tmp_path / "run", max_steps=60, eval_interval=30, lr=3e-3)
    vals = [r for r in result.history if r["split"] == "val"]
    assert len(vals) == 2
    first_train = next(r for r in result.history if r["split"] == "train")["loss"]
    assert vals[-1]["loss"] < first_train - 0.5  # well below the untrained loss (≈ ln 400 ≈ 6.0)
    val_split = json.loads((hafez_data / "meta.json").read_text())["splits"]["val"]
    assert vals[-1]["bpc_estimate"] == pytest.approx(vals[-1]["loss"] / 0.6931471805599453
                                            * val_split["tokens"] / val_split["chars"])
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "val"}


def test_resume_is_exact(hafez_data, tmp_path):
    """N steps straight == N/2 steps, stop, resume, N/2 more: identical weights (dropout on, CPU)."""
    straight = run(hafez_data, tmp_path / "a", max_steps=12, lr_decay_steps=12)
    run(hafez_data, tmp_path / "b", max_steps=6, lr_decay_steps=12)
    resumed = run(hafez_data, tmp_path / "b", max_steps=12, lr_decay_steps=12, resume=True)
    assert straight.step == resumed.step == 12
    a = LanguageModel.load(tmp_path / "a").model.state_dict()
    b = LanguageModel.load(tmp_path / "b").model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the split run really did change weights after the resume
    half = GPT(ModelConfig.create(preset="tiny", vocab_size=400, **TINY))
    state = load_trainer_state(resolve_model_dir(tmp_path / "b"))
    assert state["step"] == 12
    load_weights(half, resolve_model_dir(tmp_path / "b"))
    assert torch.equal(half.state_dict()["embed.weight"], b["embed.weight"])


def test_refuses_to_overwrite_a_run_without_resume(hafez_data, tmp_path):
    from sokhan.errors import SokhanError

    run(hafez_data, tmp_path / "r", max_steps=2)
    with pytest.raises(SokhanError, match="--resume"):
        run(hafez_data, tmp_path / "r", max_steps=2)


def test_checkpoint_is_atomic_and_latest_always_complete(tmp_path, monkeypatch):
    """A crash while writing step 2 leaves `latest` at step 1, complete and loadable."""
    model = GPT(ModelConfig.create(preset="tiny", vocab_size=50, **TINY))
    cfg = {"model": model.config.to_dict()}
    save_checkpoint(tmp_path, 1, model, cfg, "{}", {"step": 1}, keep=5)
    import sokhan.models.checkpoint as ck

    real_replace = ck.os.replace

    def crash(src, dst):
        if str(dst).endswith("step-0000002"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", crash)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 2, model, cfg, "{}", {"step": 2}, keep=5)
    monkeypatch.setattr(ck.os, "replace", real_replace)
    folder = resolve_model_dir(tmp_path)
    assert folder.name == "step-0000001"
    assert load_trainer_state(folder)["step"] == 1
    fresh = GPT(ModelConfig.create(preset="tiny", vocab_size=50, **TINY))
    load_weights(fresh, folder)
    assert torch.equal(fresh.embed.weight, model.embed.weight)


def test_trainer_state_never_unpickles_objects(tmp_path):
    """A trainer_state.pt carrying an arbitrary Python object is refused (weights_only=True)."""
    from sokhan.errors import SokhanError

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"step": 1, "x": Evil()}, tmp_path / "trainer_state.pt")
    with pytest.raises(SokhanError, match="cannot read trainer state"):
        load_trainer_state(tmp_path)


def test_api_generates_streams_and_scores(hafez_data, tmp_path):
    run(hafez_data, tmp_path / "m", max_steps=30, lr=3e-3)
    lm = LanguageModel.load(tmp_path / "m")
    text = lm.generate("دل", max_new_tokens=20, seed=3)
    assert text == lm.generate("دل", max_new_tokens=20, seed=3)  # seeded sampling is reproducible
    assert "".join(lm.stream("دل", max_new_tokens=20, seed=3)) == text
    ids = list(generate_ids(lm.model, lm.encode_prompt("دل"), SampleConfig(max_new_tokens=20, seed=3)))
    assert len(ids) <= 20 and lm.tokenizer.decode(ids).startswith(text)
    greedy = lm.generate("دل", max_new_tokens=8, temperature=0)
    assert greedy == lm.generate("دل", max_new_tokens=8, temperature=0, seed=99)
    bpc = lm.bits_per_char("دل می‌رود ز دستم صاحب‌دلان خدا را")
    assert 0 < bpc < 20
    probs = lm.next_token_probs("دل", k=5)
    assert len(probs) == 5 and all(probs[i][1] >= probs[i + 1][1] for i in range(4))


NO_CXX = shutil.which("g++") is None and shutil.which("c++") is None


@pytest.mark.parametrize("options", [
    pytest.param(dict(dtype="bfloat16"), id="bf16-autocast"),
    pytest.param(dict(compile=True), id="compile", marks=pytest.mark.skipif(
        NO_CXX, reason="torch.compile on a CPU builds C++ kernels: no g++/c++ on this machine")),
])
def test_cuda_features_also_train_on_the_cpu(hafez_data, tmp_path, options):
    """bf16 autocast and torch.compile (meant for GPUs) train on a CPU too: the loss falls, and the
    checkpoint holds plain float32 weights under the model's own names (no `_orig_mod.` prefix)."""
    result = run(hafez_data, tmp_path / "run", max_steps=30, eval_interval=30, lr=3e-3, **options)
    first_train = next(r for r in result.history if r["split"] == "train")["loss"]
    assert result.history[-1]["split"] == "val" and result.history[-1]["loss"] < first_train - 0.3
    lm = LanguageModel.load(tmp_path / "run")
    state = lm.model.state_dict()
    assert set(state) == set(GPT(ModelConfig.create(preset="tiny", vocab_size=400, **TINY)).state_dict())
    assert all(t.dtype == torch.float32 for t in state.values())
    assert lm.generate("دل", max_new_tokens=5, seed=0)


# -- gradient accumulation: a bigger batch, whatever each micro-batch holds -----------------------------


class FixedBatches:
    """A task mixin that serves the rows of one fixed batch in order, `batch_size` at a time."""

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor], batch_size: int):
        self.batch, self.batch_size, self.next = batch, batch_size, 0

    def sample(self, split, generator):
        rows = slice(self.next, self.next + self.batch_size)
        self.next = (self.next + self.batch_size) % len(self.batch[0])
        return self.batch[0][rows], self.batch[1][rows]


def one_step_gradients(model_cfg: ModelConfig, task, batch_size: int, grad_accum: int, tmp: Path) -> dict:
    """The gradients of the engine's first optimizer step (dropout off)."""
    from sokhan.train.engine import Trainer

    torch.manual_seed(0)
    model = build_model(model_cfg)
    cfg = TrainConfig(out_dir=str(tmp), batch_size=batch_size, grad_accum=grad_accum, max_steps=1, eval_iters=1,
                      grad_clip=0, progress=False, device="cpu")
    trainer = Trainer(model, task, cfg, {"model": model_cfg.to_dict()}, "{}")
    grads = {}
    step = trainer.optimizer.step

    def capture(*args, **kwargs):
        grads.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        return step(*args, **kwargs)

    trainer.optimizer.step = capture
    trainer.fit()
    return grads


def rows_with_targets(counts: list[int], vocab: int, length: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rows whose targets are IGNORE_INDEX except `counts[i]` positions of row i (unequal on purpose)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(vocab, (len(counts), length), generator=g)
    y = torch.full_like(x, IGNORE_INDEX)
    for row, count in enumerate(counts):
        y[row, length - count:] = torch.randint(vocab, (count,), generator=g)
    return x, y


@pytest.mark.parametrize("family", ["gpt-pretraining", "sft", "masked-lm"])
def test_grad_accumulation_equals_one_bigger_batch(hafez_data, tmp_path, family):
    """batch 2 × accum 1 == batch 1 × accum 2 (to 1e-6), also when the micro-batches hold 1 and 11 targets."""
    from sokhan.train.masking import MaskedLMTask
    from sokhan.train.sft import SFTTask
    from sokhan.train.tasks import CausalLMTask

    values = dict(TINY, preset="tiny", vocab_size=400, dropout=0.0)
    if family == "gpt-pretraining":
        def task(batch_size):
            return CausalLMTask(hafez_data, batch_size, TINY["block_size"], torch.device("cpu"))
        cfg = ModelConfig.create(**values)
    else:
        base = SFTTask if family == "sft" else MaskedLMTask
        fixed = type("Fixed", (FixedBatches, base), {})
        batch = rows_with_targets([1, 11], 400)

        def task(batch_size):
            return fixed(batch, batch_size)
        cfg = ModelConfig.create(**values, family="gpt" if family == "sft" else "bert")
    big = one_step_gradients(cfg, task(2), 2, 1, tmp_path / "big")
    accumulated = one_step_gradients(cfg, task(1), 1, 2, tmp_path / "accumulated")
    assert big.keys() == accumulated.keys() and big
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=1e-5, atol=1e-6, msg=name)
