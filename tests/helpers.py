"""Helpers shared by the tests and the server's load benchmark: a tiny model, a server in a thread, and the
check every user-error test makes (one `error:` line, exit status 2).

The server's checks need a real model and a real uvicorn listening on 127.0.0.1, not a test
client, because what they check (streaming, concurrent clients, hang-ups) lives in the HTTP layer.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import torch
import uvicorn
from rich.console import Console

from sokhan.config import ModelConfig, PrepareConfig, TrainConfig
from sokhan.data.prepare import prepare
from sokhan.models import build_model, checkpoint
from sokhan.recipes.pretrain import pretrain

TINY_MODEL = dict(n_layer=2, n_head=2, n_embd=32, block_size=64)


def one_line_error(capsys: Any, code: int, *fragments: str) -> str:
    """A command run in this process (`main(argv)` returned `code`) made a user's mistake: see `error_line`."""
    captured = capsys.readouterr()
    assert not captured.out, captured.out  # the error alone, no half-printed result
    return error_line(code, captured.err, *fragments)


def error_line(code: int, err: str, *fragments: str) -> str:
    """Exit status 2 and exactly one `error:` line on stderr holding every fragment, no traceback; the line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def train_tiny_model(folder: str | Path, max_steps: int = 30, model: dict[str, Any] | None = None) -> Path:
    """Prepare the embedded Hafez corpus (BPE, 400 tokens) and pretrain a tiny GPT on it; a few seconds on CPU.

    Returns the run folder, which `LanguageModel.load` accepts.
    """
    folder = Path(folder)
    data = prepare(PrepareConfig(source="hafez", out_dir=str(folder / "data"), tokenizer="bpe", vocab_size=400),
                   progress=False)
    cfg = TrainConfig(data=str(data), out_dir=str(folder / "run"), max_steps=max_steps, batch_size=8,
                      eval_interval=1000, eval_iters=2, warmup_steps=2, progress=False, device="cpu")
    result = pretrain(cfg, dict(TINY_MODEL, preset="tiny", **(model or {})), Console(stderr=True, quiet=True))
    return Path(result.run_dir)


def kill_at_checkpoint_operation(k: int) -> None:
    """Make this process SIGKILL itself at its k-th rename, fsync or delete in `sokhan.models.checkpoint`:
    a crash at a moment inside a checkpoint write that the test chooses (nothing runs after it, as after
    a power cut). For a child process only: the patches are never undone."""
    count = 0

    def hook(fn):
        def hooked(*args, **kwargs):
            nonlocal count
            count += 1
            if count == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return hooked

    checkpoint.os.replace, checkpoint.os.fsync = hook(os.replace), hook(os.fsync)
    checkpoint.shutil.rmtree = hook(checkpoint.shutil.rmtree)


class ServerThread:
    """A uvicorn server for `app` on 127.0.0.1, on a port the OS picks, in a background thread.

        with ServerThread(app) as server:
            httpx.get(server.url + "/health")

    The socket is bound before the thread starts, so the port is known and free, and there is
    no race with another process picking it.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", start_timeout: float = 30.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name=f"uvicorn-{self.port}")
        self.start_timeout = start_timeout

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


TINY_PAIRS = [("Hello world.", "سلام دنیا."), ("The cat sat on the mat.", "گربه روی فرش نشست."),
              ("Transformers learn from data.", "ترنسفورمرها از داده یاد می‌گیرند."),
              ("I love books.", "من کتاب‌ها را دوست دارم.")]


def tiny_translator(folder: str | Path, steps: int = 60, seed: int = 0) -> Path:
    """A tiny English→Persian encoder–decoder (preset seq2seq-tiny) that has learnt `TINY_PAIRS` by heart: a few
    seconds of teacher-forced steps on the four pairs at once, saved as a model folder (a run folder with
    checkpoints/latest) that `LanguageModel.load` reads. Enough for its greedy translation of a pair's English
    to be that pair's Persian, which is what the server and page tests need to see; `steps=0` leaves it untrained."""
    # imported here, not at the top: this helper came after the others, whose imports stay as they were
    import torch

    from sokhan.config import ModelConfig, NormalizerConfig
    from sokhan.constants import IGNORE_INDEX
    from sokhan.models.seq2seq import EncoderDecoder
    from sokhan.text.normalize import PersianNormalizer, normalize_source
    from sokhan.text.tokenizers import train_bpe

    normalize = PersianNormalizer(NormalizerConfig())
    english = [normalize_source(en) for en, _ in TINY_PAIRS]
    persian = [normalize(fa) for _, fa in TINY_PAIRS]
    tok = train_bpe((english + persian) * 5, vocab_size=400)
    torch.manual_seed(seed)
    cfg = ModelConfig.create(preset="seq2seq-tiny", vocab_size=tok.vocab_size)
    model = EncoderDecoder(cfg)
    sources = [tok.encode_plain(en) + [tok.eos_id] for en in english]
    targets = [[tok.bos_id] + tok.encode_plain(fa) + [tok.eos_id] for fa in persian]
    n, width, length = len(TINY_PAIRS), max(map(len, sources)), max(map(len, targets)) - 1
    src = torch.full((n, width), tok.pad_id)
    src_mask = torch.zeros((n, width), dtype=torch.bool)
    idx = torch.full((n, length), tok.pad_id)
    out = torch.full((n, length), IGNORE_INDEX)
    for i, (s, t) in enumerate(zip(sources, targets)):
        src[i, : len(s)], src_mask[i, : len(s)] = torch.tensor(s), True
        idx[i, : len(t) - 1], out[i, : len(t) - 1] = torch.tensor(t[:-1]), torch.tensor(t[1:])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        loss = model(idx, out, source=src, source_padding=src_mask).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    config = {"format": 1, "model": cfg.to_dict(), "normalizer": NormalizerConfig().to_dict(),
              "translation": {"source_lang": "en", "target_lang": "fa"}}
    checkpoint.save_checkpoint(folder, steps, model, config, tok.hf.to_str(), None, keep=1)
    return Path(folder)


class InterruptAt:
    """Send this process a SIGINT at the k-th call of any of the hooked functions: a moment inside a step
    (drawing a micro-batch, the forward pass, clipping before the update) or inside an evaluation."""

    def __init__(self, monkeypatch, k: int, targets: list[tuple[object, str]]):
        self.calls, self.k = 0, k
        for owner, name in targets:
            monkeypatch.setattr(owner, name, self.wrap(getattr(owner, name)))

    def wrap(self, fn):
        def hooked(*args, **kwargs):
            self.calls += 1
            if self.calls == self.k:
                signal.raise_signal(signal.SIGINT)
            return fn(*args, **kwargs)
        return hooked


def write(path: Path, text: str | bytes) -> Path:
    """Write a test file (text as UTF-8, or bytes as they are), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def weights(run: Path) -> dict[str, torch.Tensor]:
    """The weights of a run's latest checkpoint, loaded into the model its config describes."""
    folder = checkpoint.latest_checkpoint(run)
    model = build_model(ModelConfig.from_dict(checkpoint.read_config(folder)["model"]))
    checkpoint.load_weights(model, folder)
    return model.state_dict()


def assert_same_weights(a: Path, b: Path) -> None:
    """Two runs ended with bit-identical weights (every tensor, by name)."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
