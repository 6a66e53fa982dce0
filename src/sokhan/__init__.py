"""sokhan (سخن): a Persian-first workbench for language models.

The public Python API, what the guided tour (docs/tour/) is written with:

    >>> import sokhan
    >>> docs = list(sokhan.documents("hafez"))          # a corpus, as `sokhan prepare --source` reads it
    >>> text = sokhan.normalize(docs[0])                  # Persian normalization, as every command does it
    >>> tok = sokhan.train_tokenizer("bpe", iter(docs), vocab_size=2048)   # or "char"
    >>> plt.title(sokhan.label("بیت بر نویسه"))            # a Persian label as matplotlib must get it
    >>> data = sokhan.prepare(source="hafez", out_dir="runs/data", tokenizer="char")    # `sokhan prepare`
    >>> verses = sokhan.held_out(data)                   # its val documents: the text no model trained on
    >>> run = sokhan.pretrain(data=data, out_dir="runs/5gram", model="ngram", order=5)  # `sokhan train`
    >>> sokhan.summarize(run).val_bpc                     # the leaderboard's figure: bits/char of the val split
    >>> lm = sokhan.LanguageModel.load(run)
    >>> chat = sokhan.finetune(base=run, out_dir="runs/chat", lora=True)          # `sokhan finetune`
    >>> mt = sokhan.translate_train(data="pairs.tsv", out_dir="runs/mt")          # `sokhan translate-train`
    >>> sweep = sokhan.sweep(sizes=["2x32", "2x64"], budgets=[1e11, 3e11])       # `sokhan sweep`: sweep.json
    >>> maps = sokhan.attention_maps(lm, "دل می‌رود ز دستم")  # weights (layers, heads, T, T) of its forward pass
    >>> sokhan.translation_attention(mt, "I see the sea.").cross                 # target tokens over source
    >>> sokhan.positional_encoding(lm).matrix                # its sinusoidal / learned table, or RoPE's cosines

Each name is imported when first used, so `import sokhan` stays light (no torch).
"""

from importlib import import_module

__version__ = "0.1.0"

# name -> (module, attribute): the public API, each documented where it lives
_PUBLIC = {
    "LanguageModel": ("sokhan.api", "LanguageModel"),
    "documents": ("sokhan.data.sources", "iter_documents"),
    "normalize": ("sokhan.text.normalize", "normalize"),
    "train_tokenizer": ("sokhan.text.tokenizers", "train_tokenizer"),
    "prepare": ("sokhan.recipes.steps", "prepare"),
    "pretrain": ("sokhan.recipes.steps", "pretrain"),  # not `train`: that is the package sokhan.train
    "held_out": ("sokhan.data.shards", "split_documents"),  # a data folder's val documents, as prepare wrote them
    "summarize": ("sokhan.eval.leaderboard", "summarize"),  # a run's leaderboard row: bits/char of its val split
    "finetune": ("sokhan.recipes.steps", "finetune"),
    "translate_train": ("sokhan.recipes.steps", "translate_train"),
    "sweep": ("sokhan.recipes.steps", "sweep"),
    "label": ("sokhan.inspect.render", "display"),
    "attention_maps": ("sokhan.inspect.attention", "attention_maps"),  # a Transformer's weights per layer and head
    "translation_attention": ("sokhan.inspect.attention", "translation_attention"),  # encoder, decoder, cross
    "positional_encoding": ("sokhan.inspect.positions", "positional_encoding"),
}


def __getattr__(name: str):  # keep `import sokhan` light: torch loads only when the API is used
    if name in _PUBLIC:
        module, attribute = _PUBLIC[name]
        return getattr(import_module(module), attribute)
    raise AttributeError(name)


__all__ = [*_PUBLIC, "__version__"]
