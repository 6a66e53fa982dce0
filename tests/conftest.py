"""Shared fixtures: one tiny GPT trained on the embedded Hafez corpus, reused by every test that needs a model."""

from pathlib import Path

import pytest

from sokhan.serve.testing import train_tiny_model


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder (BPE 400, 2 layers × 32 dims, context 64) after 20 steps: seconds on a CPU."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny-model"), max_steps=20)
