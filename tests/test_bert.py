"""BERT: the shared stack attending both ways, dynamic masking, the masked-LM task, filling in <mask>s."""

import dataclasses
import random
from pathlib import Path

import pytest
import torch
from rich.console import Console

from sokhan.api import LanguageModel
from sokhan.config import TrainConfig
from sokhan.constants import IGNORE_INDEX
from sokhan.data.prepare import PrepareConfig, prepare
from sokhan.data.shards import load_meta
from sokhan.errors import SokhanError
from sokhan.infer.fill import context_window, encode_with_masks, fill_masks
from sokhan.inspect.curves import draw_loss_curve
from sokhan.models import GPT, ModelConfig
from sokhan.models.bert import BERT
from sokhan.train.engine import Trainer
from sokhan.train.masking import MaskedLMTask, mask_tokens

VARIANTS = {
    "bert": {},
    "paper": {"positional": "sinusoidal", "prenorm": False, "activation": "relu", "scale_embeddings": True},
    "rope": {"positional": "rope", "norm": "rmsnorm", "activation": "swiglu", "bias": False, "tie_weights": False},
}
WORDS = ["دل", "ساقی", "باده", "جام", "گل", "بلبل", "شب", "ماه", "یار", "عشق", "باغ", "نسیم"]
TINY_BERT = {"family": "bert", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64, "positional": "rope"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: a second thread costs more in synchronisation than it gives."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(variant: str, **kw) -> BERT:
    torch.manual_seed(0)
    cfg = ModelConfig(family="bert", vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32,
                      **{**VARIANTS[variant], **kw})
    return BERT(cfg).eval()


# --- masking ------------------------------------------------------------------------------------


def test_mask_tokens_follows_bert_statistics():
    vocab, mask_id, specials = 100, 7, list(range(8))
    ids = torch.randint(0, vocab, (64, 512), generator=torch.Generator().manual_seed(1))
    ids[:, 0], ids[:, -1] = 1, 2  # bos/eos at the edges, as in the shards
    inputs, targets = mask_tokens(ids, mask_id, vocab, specials, torch.Generator().manual_seed(2))
    is_special = ids < 8
    chosen = targets != IGNORE_INDEX
    assert not (chosen & is_special).any()                       # specials are never chosen
    assert torch.equal(targets[chosen], ids[chosen])             # targets: the originals …
    assert (targets[~chosen] == IGNORE_INDEX).all()              # … and IGNORE_INDEX elsewhere
    assert torch.equal(inputs[~chosen], ids[~chosen])            # unchosen inputs are untouched
    assert chosen.sum() / (~is_special).sum() == pytest.approx(0.15, abs=0.01)
    n = chosen.sum().item()
    masked = (inputs == mask_id) & chosen
    replaced = (inputs != mask_id) & (inputs != ids) & chosen
    kept = (inputs == ids) & chosen
    assert masked.sum().item() / n == pytest.approx(0.8, abs=0.02)
    assert replaced.sum().item() / n == pytest.approx(0.1, abs=0.015)
    assert kept.sum().item() / n == pytest.approx(0.1, abs=0.015)
    assert (inputs[replaced] >= 8).all() and (inputs[replaced] < vocab).all()  # random tokens are ordinary
    # the generator alone decides: the same state gives the same masks, the next draw new ones (dynamic)
    g = torch.Generator().manual_seed(2)
    again = mask_tokens(ids, mask_id, vocab, torch.tensor(specials), g)
    assert torch.equal(again[0], inputs) and torch.equal(again[1], targets)
    assert not torch.equal(mask_tokens(ids, mask_id, vocab, specials, g)[1], targets)


def test_mask_tokens_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError):
        mask_tokens(torch.tensor([[1, 120]]), 7, 100, [0, 7], torch.Generator())


# --- the model ----------------------------------------------------------------------------------


def stack_output(model: BERT | GPT, x: torch.Tensor) -> torch.Tensor:
    h = x if model.positions is None else model.positions(x)
    rope = model.rope(0, x.size(1)) if model.rope is not None else None
    for block in model.blocks:
        h, _ = block(h, rope=rope)
    return h


@pytest.mark.parametrize("variant", VARIANTS)
def test_bert_sees_both_sides_where_gpt_sees_the_past(variant):
    """Position t's output depends on the inputs after t for BERT; for a GPT with the same weights it does not."""
    bert = make(variant)
    gpt = GPT(bert.config).eval()
    assert gpt.load_state_dict(bert.state_dict()) is not None  # one layout for both families
    t, ids = 7, torch.randint(0, 97, (1, 16))
    # a random direction, not .sum(): post-norm ends in a LayerNorm, whose outputs always sum to the same
    direction = torch.randn(bert.config.n_embd)
    grads = []
    for model in (bert, gpt):
        x = model.embed(ids).detach().requires_grad_(True)
        (stack_output(model, x)[0, t] @ direction).backward()
        grads.append(x.grad[0].abs().sum(-1))
    assert (grads[0] > 0).all()
    assert (grads[1][t + 1:] == 0).all() and (grads[1][: t + 1] > 0).all()


def test_bert_loss_counts_only_masked_positions():
    model = make("bert")
    x = torch.randint(8, 97, (2, 12))
    y = torch.full_like(x, IGNORE_INDEX)
    y[0, 3], y[1, 5], y[1, 9] = 11, 12, 13
    out = model(x, y)
    logits, loss = out.logits, out.loss
    picked = y != IGNORE_INDEX
    manual = torch.nn.functional.cross_entropy(logits[picked], y[picked])
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    noisy = logits.clone()
    noisy[~picked] = torch.randn_like(noisy[~picked]) * 10  # anything at unmasked positions …
    assert model.loss(noisy, y).item() == pytest.approx(loss.item(), rel=1e-6)  # … changes nothing
    nothing = model(x, torch.full_like(x, IGNORE_INDEX)).loss
    assert nothing.item() == 0.0  # a batch with no masks gives 0, not NaN


@pytest.mark.parametrize("variant", VARIANTS)
def test_bert_fast_attention_equals_explicit_with_padding(variant):
    model = make(variant)
    twin = BERT(ModelConfig(**{**model.config.to_dict(), "attention": "explicit"})).eval()
    twin.load_state_dict(model.state_dict())
    x = torch.randint(0, 97, (3, 20))
    padding = torch.ones(3, 20, dtype=torch.long)
    padding[1, 15:] = 0  # right padding
    padding[2, :4] = 0   # left padding
    assert torch.allclose(model(x).logits, twin(x).logits, atol=1e-5)
    fast = model(x, padding=padding).logits
    out = twin(x, padding=padding, need_weights=True)
    explicit, weights = out.logits, out.attentions
    assert torch.allclose(fast, explicit, atol=1e-5)
    w = weights[0]
    assert (w[1, :, :15, 15:] == 0).all() and (w[2, :, 4:, :4] == 0).all()  # no real token looks at padding
    upper = torch.triu(torch.ones(20, 20, dtype=torch.bool), diagonal=1)
    assert (w[0][:, upper] > 0).all()  # and every token looks ahead


def test_bert_refuses_a_kv_cache():
    model = make("bert")
    cache = GPT(model.config).new_cache(1)
    with pytest.raises(ValueError, match="both directions"):
        model(torch.randint(0, 97, (1, 4)), cache=cache)


# --- training with the shared engine, then filling in the blanks ---------------------------------


@pytest.fixture(scope="module")
def char_data(tmp_path_factory) -> Path:
    """300 four-line documents of random words: inside a word, each letter follows from its neighbours."""
    rng = random.Random(0)
    docs = ["\n".join(" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(4)) for _ in range(300)]
    folder = tmp_path_factory.mktemp("bert-data")
    (folder / "corpus.txt").write_text("\n\n".join(docs), encoding="utf-8")
    cfg = PrepareConfig(source=str(folder / "corpus.txt"), out_dir=str(folder / "data"), tokenizer="char",
                        val_fraction=0.1)
    return prepare(cfg, progress=False)


@pytest.fixture(scope="module")
def trained(char_data, tmp_path_factory) -> tuple[dict, dict, Path]:
    """(val metrics before, val metrics after, run folder) of 300 steps: a few seconds on a CPU."""
    meta = load_meta(char_data)
    cfg = TrainConfig(data=str(char_data), out_dir=str(tmp_path_factory.mktemp("bert-run") / "run"), max_steps=300,
                      batch_size=16, lr=3e-3, warmup_steps=5, eval_interval=1000, eval_iters=4, progress=False,
                      device="cpu")
    model_cfg = ModelConfig(vocab_size=meta["vocab_size"], **TINY_BERT)
    torch.manual_seed(0)
    model = BERT(model_cfg)
    task = MaskedLMTask(char_data, cfg.batch_size, model_cfg.block_size, "cpu")
    run_config = {"format": 1, "model": model_cfg.to_dict(), "train": dataclasses.asdict(cfg),
                  "normalizer": meta["normalizer"],
                  "data": {"source": meta.get("source"), "tokenizer": meta["tokenizer"], "splits": meta["splits"]}}
    trainer = Trainer(model, task, cfg, run_config, (char_data / "tokenizer.json").read_text(encoding="utf-8"),
                      Console(quiet=True), on_save=draw_loss_curve)
    before = trainer.evaluate()["val"]
    result = trainer.fit()
    return before, result.val_metrics, Path(result.run_dir)


@pytest.fixture(scope="module")
def bert_lm(trained) -> LanguageModel:
    return LanguageModel.load(trained[2], device="cpu")


def test_masked_lm_task_samples_reproducibly(char_data):
    task = MaskedLMTask(char_data, 4, 32, "cpu")
    a = task.sample("train", torch.Generator().manual_seed(5))
    b = task.sample("train", torch.Generator().manual_seed(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert a[0].shape == a[1].shape == (4, 32) and task.tokens_in(a) == 128
    assert (a[1] != IGNORE_INDEX).any() and task.bits_per_char("val", 1.0) is None


def test_masked_lm_task_needs_a_mask_token(char_data, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("meta.json", "train-00000.bin", "val-00000.bin"):
        (folder / name).write_bytes((char_data / name).read_bytes())
    tokenizer = (char_data / "tokenizer.json").read_text(encoding="utf-8")
    (folder / "tokenizer.json").write_text(tokenizer.replace("<|mask|>", "<|masq|>"), encoding="utf-8")
    with pytest.raises(SokhanError, match="mask"):
        MaskedLMTask(folder, 4, 32, "cpu")


def test_training_lowers_masked_loss_and_raises_accuracy(trained):
    before, after, run = trained
    assert after["loss"] < before["loss"] - 2.0     # untrained ≈ ln(vocab) ≈ 5.6
    assert after["accuracy"] > before["accuracy"] + 0.3
    assert after["accuracy"] > 0.4  # above guessing the commonest character (≈ 0.2): it reads the context
    assert after["bpc_estimate"] is None
    assert (run / "loss.png").is_file()


def test_fill_masks_ranks_candidates(bert_lm):
    fills = fill_masks(bert_lm, "ساقی <mask>اده جام و بلب<mask> گل", top_k=5)
    assert len(fills) == 2
    special = {bert_lm.tokenizer.decode([i]) for i in bert_lm.tokenizer.special_ids()}
    for candidates in fills:
        assert len(candidates) == 5
        probs = [p for _, p in candidates]
        assert all(0 < p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
        assert probs == sorted(probs, reverse=True)
        assert not special & {text for text, _ in candidates}
    assert "ب" in [text for text, _ in fills[0][:3]]  # باده
    assert "ل" in [text for text, _ in fills[1][:3]]  # بلبل
    # the tokenizer's own mask token is a marker too
    assert fill_masks(bert_lm, "ساقی <|mask|>اده جام و بلب<mask> گل", top_k=5) == fills


def test_fill_masks_keeps_the_space_next_to_a_mask(bert_lm):
    space = bert_lm.tokenizer.encode(" ")
    with_space, _ = encode_with_masks(bert_lm, "دل <mask>")
    without, _ = encode_with_masks(bert_lm, "دل<mask>")
    assert with_space == without[:-2] + space + without[-2:]


def test_fill_masks_fits_a_long_text_into_the_context(bert_lm):
    long = " ".join(WORDS * 10)  # far more than 64 characters
    fills = fill_masks(bert_lm, long + " بلب<mask> " + long, top_k=3)
    assert len(fills) == 1 and len(fills[0]) == 3
    assert context_window(200, [100, 110], 64) == 100 - (64 - 11) // 2
    assert context_window(200, [5], 64) == 0 and context_window(200, [198], 64) == 200 - 64
    with pytest.raises(SokhanError, match="span"):
        context_window(200, [10, 150], 64)


def test_fill_masks_explains_its_mistakes(bert_lm):
    with pytest.raises(SokhanError, match="write <mask> where a word is missing"):
        fill_masks(bert_lm, "دل ما")
    gpt_lm = dataclasses.replace(bert_lm, model=GPT(ModelConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16)))
    with pytest.raises(SokhanError, match="'gpt'"):
        fill_masks(gpt_lm, "دل <mask>")
