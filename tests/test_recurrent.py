"""RNN, LSTM and GRU language models: hidden state carried exactly, BPTT batches, training, resume, sampling."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sokhan.api import LanguageModel
from sokhan.config import TrainConfig
from sokhan.data.prepare import PrepareConfig, prepare
from sokhan.errors import SokhanError
from sokhan.eval.bpc import sequence_nll
from sokhan.models import ModelConfig, build_model
from sokhan.recipes.pretrain import pretrain
from sokhan.train.tasks import StreamBatch, StreamLMTask

CELLS = ("rnn", "lstm", "gru")


def tiny(family: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(family=family, vocab_size=50, n_layer=2, n_embd=16, block_size=16, **kw)).eval()


@pytest.fixture(scope="module")
def hafez_chars(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "hafez-char"
    return prepare(PrepareConfig(source="hafez", out_dir=str(out), tokenizer="char"), progress=False)


@pytest.mark.parametrize("family", CELLS)
def test_carried_hidden_state_equals_one_unbroken_sequence(family):
    model = tiny(family)
    ids = torch.randint(50, (3, 40), generator=torch.Generator().manual_seed(1))
    whole = model(ids).logits
    cache = model.new_cache(3)
    pieces = [model(chunk, cache=cache).logits for chunk in ids.split([7, 16, 1, 16], dim=1)]
    assert cache.length == 40
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=0, atol=1e-5)
    # and the loss of the pieces, weighted by their length, is the loss of the whole
    targets = torch.randint(50, (3, 40), generator=torch.Generator().manual_seed(2))
    cache = model.new_cache(3)
    losses = [model(x, y, cache=cache).loss * x.size(1) for x, y in zip(ids.split(10, 1), targets.split(10, 1))]
    torch.testing.assert_close(sum(losses) / 40, model(ids, targets).loss)


def test_weight_tying_and_dropout_switches():
    tied, untied = tiny("lstm"), tiny("lstm", tie_weights=False)
    assert tied.lm_head.weight is tied.embed.weight
    assert untied.lm_head.weight is not untied.embed.weight
    assert untied.num_parameters() == tied.num_parameters() + 50 * 16
    model = tiny("gru", dropout=0.5).train()
    ids = torch.randint(50, (2, 10))
    assert not torch.equal(model(ids).logits, model(ids).logits)  # dropout is on in training
    model.eval()
    assert torch.equal(model(ids).logits, model(ids).logits)


def test_stream_batches_continue_each_row_and_wrap(hafez_chars):
    task = StreamLMTask(str(hafez_chars), batch_size=4, block_size=32, device=torch.device("cpu"))
    rng = torch.Generator()
    first, second = task.sample("train", rng), task.sample("train", rng)
    assert isinstance(first, StreamBatch) and first.fresh and not second.fresh
    assert torch.equal(second.x[:, 0], first.y[:, -1])  # row b goes on where it stopped
    assert torch.equal(first.x[:, 1:], first.y[:, :-1])
    tokens = np.asarray(task.splits["train"].tokens)
    for b in range(4):  # rows are disjoint stripes of the split, in order
        assert first.x[b].tolist() == tokens[b * task.stripe: b * task.stripe + 32].tolist()
    batches_per_epoch = (task.stripe - 32) // 32 + 1
    for _ in range(batches_per_epoch - 2):
        assert not task.sample("train", rng).fresh
    assert task.sample("train", rng).fresh  # an epoch ended: the streams start over
    assert isinstance(task.sample("val", rng), tuple)  # evaluation: random windows


def test_bptt_longer_than_the_data_is_one_clear_error(hafez_chars):
    with pytest.raises(SokhanError, match=r"BPTT length .* larger than the data"):
        StreamLMTask(str(hafez_chars), batch_size=10_000, block_size=64, device=torch.device("cpu"))


def run(data: Path, out: Path, family: str, **kw):
    kw = {"max_steps": 12, "lr": 3e-3, **kw}
    cfg = TrainConfig(data=str(data), out_dir=str(out), batch_size=8, eval_interval=1000, eval_iters=4,
                      warmup_steps=2, progress=False, device="cpu", **kw)
    return pretrain(cfg, dict(family=family, n_layer=2, n_embd=32, block_size=32, dropout=0.1))


def test_lstm_learns_and_resumes_exactly_with_its_carried_state(hafez_chars, tmp_path):
    straight = run(hafez_chars, tmp_path / "a", "lstm", max_steps=12, lr_decay_steps=12)
    run(hafez_chars, tmp_path / "b", "lstm", max_steps=6, lr_decay_steps=12)
    resumed = run(hafez_chars, tmp_path / "b", "lstm", max_steps=12, lr_decay_steps=12, resume=True)
    assert straight.step == resumed.step == 12
    a = LanguageModel.load(tmp_path / "a").model.state_dict()
    b = LanguageModel.load(tmp_path / "b").model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_lstm_training_lowers_validation_loss(hafez_chars, tmp_path):
    result = run(hafez_chars, tmp_path / "learn", "lstm", max_steps=80, lr=1e-2)
    first_train = next(r for r in result.history if r["split"] == "train")["loss"]
    assert result.val_loss < first_train - 1.0


@pytest.mark.parametrize("family", CELLS)
def test_each_cell_trains_saves_samples_and_scores(hafez_chars, tmp_path, family):
    result = run(hafez_chars, tmp_path / family, family, max_steps=4)
    lm = LanguageModel.load(result.run_dir)
    assert lm.config["model"]["family"] == family
    text = lm.generate("دل", max_new_tokens=20, seed=0)
    assert text and text == lm.generate("دل", max_new_tokens=20, seed=0)
    ids = np.asarray(LanguageModel.load(result.run_dir).tokenizer.encode("الا یا ایها الساقی ادر کاسا و ناولها"))
    nll, n = sequence_nll(lm.model, ids, block_size=8)  # carried across chunks of 8: the whole past counts
    whole = lm.model(torch.as_tensor(ids[None, :-1]), torch.as_tensor(ids[None, 1:])).loss.item() * (len(ids) - 1)
    assert n == len(ids) - 1 and nll == pytest.approx(whole, rel=1e-5)
    assert lm.bits_per_char("دل") > 0
