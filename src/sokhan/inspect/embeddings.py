"""Token embeddings in two dimensions: the model's embedding matrix projected on its two main axes (PCA).

Tokens the model uses alike end up near each other. The projection is plain PCA (numpy's
SVD of the centred matrix), so the axes are the directions of largest variance and their
share of the variance says how much of the picture two dimensions can tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sokhan.data.parallel import ParallelData
from sokhan.data.shards import TokenData
from sokhan.errors import SokhanError
from sokhan.inspect.picture import XY, Picture, Series
from sokhan.inspect.render import model_name, token_texts
from sokhan.inspect.save import save_picture
from sokhan.models.trained import TrainedModel


@dataclass
class EmbeddingMap:
    coords: np.ndarray            # (vocab, 2): every token on the first two principal components
    explained: np.ndarray         # (2,): share of the variance on each
    tokens: list[str]             # every token's text, made visible
    labelled: list[int]           # the ids written on the picture
    counts: np.ndarray | None     # training-set frequency of each id, when the data was found
    data: Path | None             # the prepared data folder whose train split the counts come from


def embedding_matrix(lm: TrainedModel) -> np.ndarray:
    weight = lm.model.input_embeddings()
    if weight is None:
        raise SokhanError(f"{lm.path} is a '{lm.family}' model: it has no token embeddings (an n-gram counts "
                          f"token sequences)")
    return weight.detach().double().cpu().numpy()


def pca_2d(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates on the first two principal components and their share of the variance."""
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    variance = s ** 2
    return centred @ vt[:2].T, variance[:2] / max(variance.sum(), 1e-30)


def has_train_split(lm: TrainedModel, folder: Path) -> bool:
    """The prepared folder holds a train split: a translator's train.safetensors, a language model's shards."""
    if lm.capabilities.needs_source:
        return (folder / "train.safetensors").is_file()
    return (folder / "train.bin").is_file() or any(folder.glob("train-*.bin"))  # format 1, or shards


def find_data(lm: TrainedModel) -> Path | None:
    """The run's prepared data folder (config train.data), tried as given, then next to the run's ancestors."""
    data = (lm.config.get("train") or {}).get("data")
    if not isinstance(data, str) or not data:
        return None
    given = Path(data)
    candidates = [given] if given.is_absolute() else [given, *(parent / given for parent in lm.path.parents)]
    return next((c for c in candidates if (c / "meta.json").is_file() and has_train_split(lm, c)), None)


def _train_tokens(lm: TrainedModel, folder: Path) -> tuple[np.ndarray, int | None]:
    """Every token id of the train split, and the vocabulary size its meta.json names (both sides of a translator's
    pairs: they share one vocabulary)."""
    if lm.capabilities.needs_source:
        data = ParallelData(folder)
        sources, targets = data.pairs("train")
        return np.concatenate([*sources, *targets, np.zeros(0, dtype=np.int64)]), data.meta["vocab_size"]
    shards = TokenData(folder, "train")
    return np.asarray(shards.tokens), shards.meta.get("vocab_size")


def token_counts(lm: TrainedModel) -> tuple[np.ndarray | None, Path | None]:
    """How often each id occurs in the run's train split; (None, None) if it is not there or not this tokenizer's."""
    folder = find_data(lm)
    if folder is None:
        return None, None
    try:
        tokens, vocab_size = _train_tokens(lm, folder)
    except SokhanError:
        return None, None
    vocab = lm.model.config.vocab_size
    if vocab_size not in (None, lm.tokenizer.vocab_size) or (tokens.size and int(tokens.max()) >= vocab):
        return None, None
    return np.bincount(tokens, minlength=vocab)[:vocab], folder


def embedding_map(lm: TrainedModel, top: int = 40) -> EmbeddingMap:
    if top < 1:
        raise SokhanError("--top must be ≥ 1")
    matrix = embedding_matrix(lm)
    coords, explained = pca_2d(matrix)
    counts, folder = token_counts(lm)
    if counts is not None:
        order = np.argsort(-counts, kind="stable")
        labelled = [int(i) for i in order[:top] if counts[i] > 0]
    else:
        labelled = list(range(min(top, len(matrix))))
    return EmbeddingMap(coords, explained, token_texts(lm.tokenizer, range(len(matrix))), labelled, counts, folder)


def embeddings_picture(emb: EmbeddingMap, title: str) -> Picture:
    def hover(i: int) -> str:
        return f"{emb.tokens[i]} (id {i}" + (f", {int(emb.counts[i]):,}× in train)" if emb.counts is not None else ")")

    every = Series("every token", emb.coords[:, 0], emb.coords[:, 1], "markers",
                   labels=[hover(i) for i in range(len(emb.tokens))], color="#b0b0b0")
    chosen = np.array(emb.labelled, dtype=int)
    which = "most frequent" if emb.counts is not None else "first ids"
    named = Series(f"the {len(chosen)} {which}", emb.coords[chosen, 0], emb.coords[chosen, 1], "markers",
                   labels=[emb.tokens[i] for i in chosen], annotate=True, color="tab:red")
    axis = "projection on PC{} ({:.1%} of the variance; embedding units)"
    panel = XY([every, named], "token embeddings, PCA to two dimensions", axis.format(1, emb.explained[0]),
               axis.format(2, emb.explained[1]))
    return Picture("embeddings", title, [panel], columns=1, panel_size=(10.0, 8.0))


def plot_embeddings(lm: TrainedModel, out_dir: str | Path, top: int = 40) -> Picture:
    """PCA of `lm`'s token embedding matrix, the `top` most frequent tokens named; embeddings.png/.html."""
    emb = embedding_map(lm, top)
    vocab, dims = len(emb.tokens), embedding_matrix(lm).shape[1]
    picture = embeddings_picture(emb, f"Token embeddings of {model_name(lm.path)} ({lm.family}, {vocab:,} tokens × "
                                      f"{dims} dimensions)")
    named = len(emb.labelled)
    picture.subtitle = (f"named: the {named} most frequent tokens of the train split of {emb.data}" if emb.data
                        else f"named: the first {named} token ids (the run's data was not found)")
    picture.extra["embeddings"] = emb
    return save_picture(picture, out_dir)
