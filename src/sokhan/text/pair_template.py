"""How a classifier reads a text or a pair of texts: the tokens, the separator, and how a long input is cut.

A single text is ``<|bos|> text <|eos|>``, a pair ``<|bos|> text <|eos|> pair <|eos|>``, each text
normalized as the model's training text was and encoded as plain text (a literal ``<|eos|>``
typed in a record gets ordinary ids, as in `Tokenizer.encode_plain`). This is GPT-1's input
transformation for classification and entailment (Radford et al. 2018, §3.3: a start token, the
premise, a delimiter, the hypothesis, an extract token) and BERT's pair packing (Devlin et al.
2019, §3: ``[CLS] A [SEP] B [SEP]``), written with the special tokens sokhan already has:

* ``<|bos|>`` is the start (and BERT's [CLS]: what `pooling=first` reads);
* ``<|eos|>`` is the delimiter and the end. A pretrained sokhan model has seen it after every
  document of its corpus (`sokhan prepare` writes ``bos … eos`` per document), so its embedding
  already means "a text ends here". ``<|end|>`` closes a chat turn and only a chat fine-tune has
  seen it: in a pretrained model it is an untrained row of the embedding. GPT-1 learns fresh
  delimiter and extract tokens; reusing a trained one costs nothing and starts from meaning.
  The last ``<|eos|>`` is GPT-1's extract token: the one position of a left-to-right model that
  has read both texts (`pooling=last`).

A classifier that reads the texts of a pair separately (`--pair-encoding separate`) lays out
each one as a single text, ``<|bos|> text <|eos|>``, with the whole context to itself.

A Transformer reads at most `block_size` tokens. A longer input is cut from the left, as
`sokhan evaluate` cuts a context (the end of a text is nearest the separator and the last
token): the pair keeps at least half of the room, the text the rest, each losing its beginning
first; the special tokens always stay. A record is marked `cut` so that callers can count them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sokhan.errors import SokhanError
from sokhan.text.tokenizers import Tokenizer

TEMPLATE_NAME = "sokhan-pair-v1"  # recorded in a classifier's config.json (`ClassifierConfig.template`)
SEPARATOR = "<|eos|>"


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    cut: bool  # tokens were dropped to fit the context


class PairTemplate:
    """Lays out texts (and pairs) as the module docstring says, for a model of context `block_size`."""

    def __init__(self, tokenizer: Tokenizer, normalize: Callable[[str], str], block_size: int):
        if block_size < 5:  # bos, eos, eos and a token of each text
            raise SokhanError(f"a context of {block_size} tokens is too short to classify a text pair")
        self.tokenizer, self.normalize, self.block_size = tokenizer, normalize, block_size
        self.separator = tokenizer.token_id(SEPARATOR)

    def encode(self, text: str, pair: str | None = None) -> Encoded:
        """The ids of a text, or of a text pair, cut to the context from the left (module docstring)."""
        a = self.tokenizer.encode_plain(self.normalize(text))
        b = None if pair is None else self.tokenizer.encode_plain(self.normalize(pair))
        room = self.block_size - (2 if b is None else 3)
        a_kept, b_kept = fit(a, b or [], room)
        ids = [self.tokenizer.bos_id, *a_kept, self.separator]
        if b is not None:
            ids += [*b_kept, self.separator]
        return Encoded(ids, len(a_kept) < len(a) or (b is not None and len(b_kept) < len(b)))

    def encode_record(self, text: str, pair: str | None, separate: bool) -> list[Encoded]:
        """What a classifier reads for one record: the text (or pair) as one sequence, or with `separate` each text of
        the pair laid out alone."""
        return [self.encode(text), self.encode(pair)] if separate else [self.encode(text, pair)]


def fit(a: list[int], b: list[int], room: int) -> tuple[list[int], list[int]]:
    """`a` and `b` cut from the left to `room` tokens together: `b` keeps at least half of the room (all of it
    when `a` is shorter), `a` what is left."""
    if len(a) + len(b) <= room:
        return a, b
    keep_b = min(len(b), max(room - len(a), (room + 1) // 2))
    keep_a = room - keep_b
    return (a[len(a) - keep_a:] if keep_a else []), (b[len(b) - keep_b:] if keep_b else [])
