"""Translation quality: BLEU (Papineni et al. 2002) and chrF++ (Popović 2017), computed by sacrebleu.

sacrebleu (Post 2018) is what papers and leaderboards report, so its figures compare with theirs;
its signature (tokenization, smoothing, version) is printed beside them. chrF++ counts character
n-grams (and word uni- and bigrams), which suits Persian better than BLEU's whole words: a
word's suffixes and the zero-width non-joiner split or join words in more than one correct way.
The FLORES-200 English→Persian scores quoted in the README (OPUS-MT 33.4, NLLB-200 1.3B 47.4) are
chrF++.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sacrebleu

from sokhan.errors import SokhanError
from sokhan.models.checkpoint import run_folder
from sokhan.text.normalize import normalize_source


@dataclass(frozen=True)
class TranslationScore:
    bleu: float
    chrf: float           # chrF++: character 6-grams and word 2-grams (sacrebleu's CHRF(word_order=2))
    sentences: int
    bleu_signature: str
    chrf_signature: str

    def __str__(self) -> str:
        return f"BLEU {self.bleu:.2f}  chrF++ {self.chrf:.2f}  ({self.sentences:,} sentences)"

    def to_dict(self) -> dict[str, float | int | str]:
        return {"bleu": round(self.bleu, 2), "chrf++": round(self.chrf, 2), "sentences": self.sentences,
                "bleu_signature": self.bleu_signature, "chrf_signature": self.chrf_signature}


def translation_scores(hypotheses: list[str], references: list[str]) -> TranslationScore:
    """Corpus BLEU and chrF++ of `hypotheses` against one reference each, line by line."""
    if len(hypotheses) != len(references):
        raise SokhanError(f"{len(hypotheses)} translations but {len(references)} references: they must pair up "
                          f"line by line")
    if not hypotheses:
        raise SokhanError("nothing to score: no sentences")
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF(word_order=2)
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return TranslationScore(b.score, c.score, len(hypotheses), str(bleu.get_signature()), str(chrf.get_signature()))


def seen_in_training(config: Mapping[str, Any], model_path: Path, sources: list[str]) -> tuple[int, Path] | None:
    """How many of `sources` are source sentences the model was trained on, and the file that says so;
    None when the run's prepared data is no longer where it was written.

    A score on sentences the model has seen measures memory, not translation: `sokhan eval` says
    how many there are. Sentences compare as training compared them (`normalize_source`); the
    prepared folder is looked for where training wrote it, then in the run folder beside the model.
    """
    lang = config.get("translation", {}).get("source_lang", "en")
    recorded = config.get("train", {}).get("data")
    for folder in ([Path(recorded)] if isinstance(recorded, str) and recorded else []) + [
            run_folder(model_path) / "data"]:
        train = folder / f"train.{lang}"
        if train.is_file():
            with open(train, encoding="utf-8") as f:
                trained = {line.rstrip("\n") for line in f}
            return sum(normalize_source(s) in trained for s in sources), train
    return None
