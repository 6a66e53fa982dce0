"""The Python API: `LanguageModel`, a trained model with the verbs of the command line, for notebooks.

    >>> from sokhan import LanguageModel
    >>> lm = LanguageModel.load("runs/demo/pretrain")
    >>> print(lm.generate("الا یا ایها الساقی", max_new_tokens=50, seed=0))
    >>> for piece in lm.stream("دل"): print(piece, end="")
    >>> lm.bits_per_char("متنی برای سنجش")
    >>> lm.chat([{"role": "user", "content": "سلام"}], max_new_tokens=40)
    >>> lm.predictions("دل می‌رود").surprisal()       # bits each token of a text cost the model, token by token

    >>> bert = LanguageModel.load("runs/bert")             # a masked LM (family bert)
    >>> bert.fill("دل <mask> ز دستم")                       # the likeliest fills of each <mask>

    >>> mt = LanguageModel.load("runs/translate")          # a translation model (seq2seq)
    >>> mt.translate("Transformers learn from data.", beam=4)

    >>> nli = LanguageModel.load("runs/entailment")        # a classifier (`sokhan finetune --task classify`)
    >>> nli.classify("هوا سرد است.", "هوا گرم نیست.")        # [(label, probability), …], the likeliest first

Sampling options are `SampleConfig`'s fields as keywords (`temperature`, `top_k`, `top_p`,
`seed`, `max_new_tokens`, `stop`), decoding options `TranslateConfig`'s (`beam`,
`length_penalty`, …), checked as the command line checks them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sokhan.config import SampleConfig, TranslateConfig
from sokhan.data.sources import split_text
from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.eval.bpc import Score, model_doc_split, score_documents
from sokhan.infer.chat import chat_prompt, stream_reply
from sokhan.infer.classify import classify
from sokhan.infer.fill import fill_masks
from sokhan.infer.sampling import compile_decode_step, stream_text
from sokhan.infer.translate import translate_lines
from sokhan.models.trained import TrainedModel
from sokhan.text.chat_template import ChatTemplate, Message
from sokhan.text.tokenizers import Tokenizer

Messages = Iterable[Message | Mapping[str, str]]
REPLACEMENT = "\ufffd"  # what a byte that does not complete a character decodes to


@dataclass
class Predictions:
    """What a left-to-right model expected at each token of a text: row i of `log_probs` is its distribution
    (natural log) over the vocabulary for token i, having read <|bos|> and tokens 0 … i−1. The last token is
    <|eos|>: a model is scored on knowing where a document ends, too."""

    tokens: list[str]          # the text each token adds (<|eos|> last); "" for a byte that ends no character yet
    ids: list[int]             # its id
    log_probs: torch.Tensor    # (tokens, vocabulary) float32 on the CPU
    chars: int                 # characters of the normalized text, plus one for its end (as bits/char counts)

    def surprisal(self) -> list[float]:
        """Bits each token cost: −log₂ p(token | what came before)."""
        rows = torch.arange(len(self.ids))
        return (-self.log_probs[rows, torch.tensor(self.ids)] / math.log(2)).tolist()

    @property
    def bits_per_char(self) -> float:
        """The surprisals' sum over the characters: `LanguageModel.bits_per_char` of the same text when it is one
        document (`score` cuts a text at blank lines; `predictions` reads it whole)."""
        return sum(self.surprisal()) / self.chars


def token_texts(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """The text each of ids[1:] adds. A byte-level token can hold part of a character (decoded alone it is
    U+FFFD): its text is "" and the character goes to the token that completes it. Both of sokhan's decoders
    concatenate, so only the tokens of an unfinished character are decoded together: linear in the text."""
    texts: list[str] = []
    pending: list[int] = []
    for n, i in enumerate(ids[1:], start=2):
        pending.append(i)
        text = tokenizer.decode(pending)
        if n < len(ids) and text.endswith(REPLACEMENT):
            texts.append("")  # an unfinished character waits for the token that completes it
            continue
        texts.append(text)
        pending = []
    return texts


class LanguageModel(TrainedModel):
    """A trained model with its tokenizer and normalizer, ready to sample from, chat with and score text.

    `LanguageModel.load(path, device="auto")` reads a run or checkpoint folder.
    """

    def compile(self) -> float:
        """Compile the model's one-token step (`torch.compile`; see `compile_decode_step`) so that sampling and
        chat run faster from now on; returns the seconds the one-off compile took."""
        return compile_decode_step(self.model)

    def stream(self, prompt: str = "", **sample: Any) -> Iterator[str]:
        """The continuation of `prompt`, in printable pieces as they are sampled."""
        self.require_causal("sampling")
        return stream_text(self.model, self.tokenizer, self.encode_prompt(prompt), SampleConfig(**sample))

    def generate(self, prompt: str = "", **sample: Any) -> str:
        return "".join(self.stream(prompt, **sample))

    @property
    def chat_template(self) -> ChatTemplate:
        """The template fine-tuning rendered conversations with (roles as special tokens, `<|end|>` closes a turn)."""
        return ChatTemplate(self.tokenizer, self.normalize)

    def chat_prompt(self, messages: Messages, max_new_tokens: int) -> list[int]:
        """Prompt ids for the next reply, the history trimmed so the reply fits the context."""
        return chat_prompt(self, messages, max_new_tokens)

    def stream_chat(self, messages: Messages, **sample: Any) -> Iterator[str]:
        """Stream the assistant's reply to `messages` (dicts with role/content, or `Message`s)."""
        return stream_reply(self, messages, SampleConfig(**sample))

    def chat(self, messages: Messages, **sample: Any) -> str:
        return "".join(self.stream_chat(messages, **sample))

    def bits_per_char(self, text: str, stride: int | None = None, doc_split: str | None = None) -> float:
        """Bits per character of `text`, scored as `sokhan eval` scores a file holding it (see `score`)."""
        return self.score(text, stride, doc_split).bits_per_char

    def score(self, text: str, stride: int | None = None, doc_split: str | None = None) -> Score:
        """`text` scored by the one rule of `sokhan.eval.bpc`: cut into documents as the model's data was cut
        (`doc_split`, default the model's: blank lines end a document unless it was prepared otherwise),
        each normalized and scored as in training. The `Score` has the figure, the characters it divides
        by and the text's fingerprint (equal to `model_val_fingerprint(lm.config)` on the model's val text)."""
        self.require_causal("bits per character")
        documents = split_text(text, doc_split or model_doc_split(self.config))
        return score_documents(self.model, self.tokenizer, self.normalize, documents, self.block_size, stride)

    def translate(self, text: str, **decode: Any) -> str:
        """The translation of one sentence (a translation model only); an empty line gives an empty line."""
        return self.translate_all([text], **decode)[0]

    def translate_all(self, texts: Iterable[str], **decode: Any) -> list[str]:
        """One translation per sentence, in order, decoded in batches."""
        self.require_translator("translating")
        return list(translate_lines(self, texts, TranslateConfig(**decode)))

    def classify(self, text: str, pair: str | None = None) -> list[tuple[str, float]]:
        """A classifier's labels for `text` (and its `pair`, for a classifier of pairs), each with its probability,
        the likeliest first."""
        return classify(self, text, pair)

    def fill(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """A masked LM's guesses for each `<mask>` in `text`, left to right: `top_k` (token, probability) each,
        the likeliest first (as `sokhan fill` prints them)."""
        return fill_masks(self, text, top_k)

    @torch.inference_mode()
    def predictions(self, text: str) -> Predictions:
        """The model's next-token distribution at every token of `text` (normalized, after <|bos|>, as in
        training, read as one document), from one forward pass: what `score` sums, token by token. A
        Transformer's text must fit its context; a recurrent or n-gram model reads any length."""
        self.require_causal("next-token predictions")
        normalized = self.normalize(text).strip()
        if not normalized:
            raise SokhanError("give a text to predict")
        ids = [self.tokenizer.bos_id, *self.tokenizer.encode_plain(normalized), self.tokenizer.eos_id]
        if self.capabilities.attention and len(ids) - 1 > self.block_size:
            raise SokhanError(f"the text is {len(ids) - 2} tokens, more than the model's context of "
                              f"{self.block_size} (with <|bos|> and <|eos|>); give a shorter text")
        logits = self.model(torch.tensor([ids[:-1]], device=model_device(self.model))).logits[0]
        log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
        return Predictions(token_texts(self.tokenizer, ids), ids[1:], log_probs, len(normalized) + 1)

    @torch.inference_mode()
    def next_token_probs(self, prompt: str, k: int = 10) -> list[tuple[str, float]]:
        """The `k` likeliest next tokens after `prompt`, with their probabilities."""
        self.require_causal("next-token probabilities")
        ids = self.encode_prompt(prompt)[-self.block_size:]
        logits = self.model(torch.tensor([ids], device=model_device(self.model)), last_only=True).logits[0, -1]
        probs, top = torch.softmax(logits.float(), -1).topk(k)
        return [(self.tokenizer.decode([int(i)]), float(p)) for p, i in zip(probs, top)]
