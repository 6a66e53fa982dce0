"""A small Persian text normalizer (hazm's main rules, without depending on hazm).

Persian text on the web is typed on Arabic keyboards, pasted from PDFs and decorated with
invisible characters, so one word appears in many spellings: 'كتاب' (Arabic kaf) and
'کتاب', 'مي روم' and 'می‌روم', '۱۲' and '12'. A tokenizer and a model would learn each as a
different string and split the statistics of one word over several. Normalizing first makes
the corpus, the prompts and the evaluation text agree. The steps, in order:

1. Unicode NFC, and line breaks (\\r\\n, \\r, U+2028, …) become '\\n'.
2. One translation table: Arabic letter variants to Persian (ي ى → ی, ك → ک, ە → ه, and
   ة → ه, which is hazm's choice: Persian writes most Arabic tā' marbūṭa words with ه);
   Arabic presentation forms (U+FB50–U+FDFF, U+FE70–U+FEFF) to their base letters, except
   the few whose compatibility form contains a space (phrase ligatures such as ﷺ, isolated
   harakat); digits to the configured script; kashida (tatweel) and invisible format
   characters (ZWSP, bidi marks and embeddings, BOM, soft hyphen, word joiner) removed;
   every other Unicode space to ' '; optionally the diacritics removed. Only vowel signs
   are diacritics here (fatha…sukun, shadda, tanwin, superscript alef, U+0656–U+065E);
   madda and hamza (U+0653–U+0655) spell letters (آ, ؤ, the ezafe 'هٔ') and are kept.
   NFKC is *not* applied to the whole text: it would rewrite ligatures, superscripts,
   full-width forms and more that have nothing to do with Persian.
3. ZWNJ (U+200C, nim-fasele) is part of Persian spelling and is kept, but only where it can
   mean something: one ZWNJ between a letter (or a letter's diacritic) and a letter. Runs
   collapse to one; a ZWNJ next to a space, a line end, a digit or punctuation is removed.
   ZWJ (U+200D) is left alone: running Persian text does not use it, while emoji sequences
   (👨‍👩‍👧) need it.
4. NFC again, since removals (step 2's, a stray ZWNJ's) can bring a letter next to a mark it
   composes with: step 2 turns 'ﺍٔ' (a presentation-form alef, then hamza) into 'ا' + hamza,
   which composes to 'أ' only here. It is done before the joining rules read letters, or a
   second pass would see 'أ' where the first saw a hamza, and join what the first left apart
   ('ﺍٔو ها' → 'أو ها' → 'أو‌ها' at d058e49). Step 6 only turns spaces into ZWNJs, and neither
   takes part in any canonical composition (both are starters, UAX #15), so the result stays NFC.
5. Spaces collapse to one, lines are stripped, newlines are kept (poems are line-based) but
   three or more collapse to a blank line, and the text is stripped.
6. Optionally (`join_affixes`), the two commonest spacing errors are fixed, conservatively:
   a standalone plural 'ها'/'های'/'هایی'/'هایم'… after a word is joined to that word with
   ZWNJ, and a standalone 'می'/'نمی' before a word is joined to it ('مي روم' → 'می‌روم')
   unless the context says 'می' is the noun "wine" (after 'به', 'جام'…, before 'است', 'و'…).
   The plural goes first because it changes the words the 'می' rule reads: it turns 'می است ها'
   into 'می است‌ها', and the 'می' rule then reads the word 'است‌ها', not 'است' ('می‌است‌ها').
   In the other order one pass kept 'می' apart and the next joined it.

Every step is a fixed number of passes over the text (the translation, two NFCs, five regex
substitutions, a split into words), so the time is linear in its length: a million characters
of 'می رود ' take 0.25 s (benchmarks/normalize_speed.py, 2-core Xeon), where looking at the
text around each 'می' by slicing the whole string (d058e49) took 37 s.

The result is idempotent: normalizing normalized text changes nothing (tested).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from sokhan.config import NormalizerConfig

ZWNJ = "\u200c"
DIGITS = {"persian": "۰۱۲۳۴۵۶۷۸۹", "arabic": "٠١٢٣٤٥٦٧٨٩", "latin": "0123456789"}
LETTER_VARIANTS = {"ي": "ی", "ى": "ی", "ك": "ک", "ە": "ه", "ة": "ه"}
KASHIDA = "\u0640"
INVISIBLE = "\u00ad\u061c\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"
DIACRITICS = "".join(chr(c) for c in [*range(0x064B, 0x0653), *range(0x0656, 0x065F), 0x0670])
LINE_BREAKS = "\v\f\r\x1c\x1d\x1e\x85\u2028\u2029"  # and '\n': what str.splitlines splits on
# The rest of str.isspace: tab, unit separator, no-break, ogham, en quad…hair, narrow, math, ideographic.
SPACES = "\t\x1f\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u202f\u205f\u3000"
PRESENTATION_FORMS = [*range(0xFB50, 0xFE00), *range(0xFE70, 0xFF00)]
PERSIAN_LETTERS = "ءآأؤإئابپتثجچحخدذرزژسشصضطظعغفقکگلمنوهیۀ"
ARABIC_MARKS = "\u064b-\u065f\u0670"
# The plural suffix and its possessive/indefinite forms, e.g. 'های', 'هایی', 'هایشان'.
PLURAL = "ها(?:ی(?:ی|م|ت|ش|مان|تان|شان)?)?"


class PersianNormalizer:
    """`PersianNormalizer(config)(text)`: the table and regexes are built once, here."""

    def __init__(self, config: NormalizerConfig | None = None):
        self.config = config or NormalizerConfig()
        table: dict[int, str] = {ord(k): v for k, v in LETTER_VARIANTS.items()}
        if self.config.digits != "keep":
            target = DIGITS[self.config.digits]
            for script in DIGITS.values():
                table.update({ord(d): t for d, t in zip(script, target) if d != t})
        removed = KASHIDA + INVISIBLE + (DIACRITICS if self.config.remove_diacritics else "")
        table.update({ord(c): "" for c in removed})
        table.update({ord(c): "\n" for c in LINE_BREAKS})
        table.update({ord(c): " " for c in SPACES})
        for cp in PRESENTATION_FORMS:
            base = unicodedata.normalize("NFKC", chr(cp))
            if base != chr(cp) and not any(ch.isspace() for ch in base):
                table[cp] = base.translate(table)
        self.table = table

        self.zwnj_runs = re.compile(f"{ZWNJ}+")
        self.spaces = re.compile(" +")
        self.line_edges = re.compile(" *\n *")
        self.blank_lines = re.compile(r"\n{3,}")
        letter = f"[{PERSIAN_LETTERS}]"
        self.plural = re.compile(rf"(?<={letter}[{PERSIAN_LETTERS}{ARABIC_MARKS}]) ({PLURAL})"
                                 rf"(?=[{ARABIC_MARKS}]*(?![\w{ZWNJ}]))")

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFC", text).replace("\r\n", "\n")
        text = text.translate(self.table)
        text = self.zwnj_runs.sub(_keep_zwnj_between_letters, text)
        text = unicodedata.normalize("NFC", text)
        text = self.spaces.sub(" ", text)
        text = self.line_edges.sub("\n", text)
        text = self.blank_lines.sub("\n\n", text).strip(" \n")
        if self.config.join_affixes:
            text = self.plural.sub(rf"{ZWNJ}\1", text)
            text = _join_verb_prefixes(text)
        return text


# 'می' is also a noun, "wine" — everywhere in Hafez. After a preposition or a wine vessel,
# or before a word that cannot be a verb stem, it stays a separate word ('به می سجاده').
WINE_BEFORE = frozenset(["به", "از", "با", "بی", "ز", "جام", "ساغر", "ساقی", "باده"])
WINE_AFTER = frozenset(["است", "و", "ناب", "لعل", "باقی", "کهن"])
VERB_PREFIXES = frozenset(["می", "نمی"])
LETTER_SET = frozenset(PERSIAN_LETTERS)  # a set, not the string: '' is in every string
WHITESPACE = re.compile(r"(\s+)")


def _join_verb_prefixes(text: str) -> str:
    """Join each standalone 'می'/'نمی' to the word after it (one space, then a Persian letter).

    The rule reads the word before and the word after, so the text is split into words once
    and each candidate looks at its neighbours in the list: linear in the text. (Slicing the
    text around every match to find them copied the whole string per 'می': quadratic.)
    Only separators are replaced, so every decision reads the words as they were given.
    """
    parts = WHITESPACE.split(text)  # words at even indexes, the whitespace between them at odd ones
    for i in [i for i, part in enumerate(parts) if part in VERB_PREFIXES]:
        if i + 2 >= len(parts) or parts[i + 1] != " " or parts[i + 2][:1] not in LETTER_SET:
            continue
        before, after = parts[i - 2] if i >= 2 else "", parts[i + 2]
        if parts[i] == "می" and (before in WINE_BEFORE or after.rstrip(".،؛!؟") in WINE_AFTER):
            continue
        parts[i + 1] = ZWNJ
    return "".join(parts)


def _keep_zwnj_between_letters(m: re.Match[str]) -> str:
    s, i, j = m.string, m.start(), m.end()
    before = unicodedata.category(s[i - 1])[0] if i > 0 else ""
    after = unicodedata.category(s[j])[0] if j < len(s) else ""
    return ZWNJ if before in ("L", "M") and after == "L" else ""


def normalize(text: str, **config_fields) -> str:
    """Normalize one text: `normalize(s, digits="latin")` (the normalizer is cached per config)."""
    return _normalizer(tuple(sorted(config_fields.items())))(text)


@lru_cache(maxsize=16)
def _normalizer(config_items: tuple) -> PersianNormalizer:
    return PersianNormalizer(NormalizerConfig(**dict(config_items)))


def normalize_source(text: str) -> str:
    """A translator's English source as its model sees it, in training and when translating: NFC, every run
    of whitespace (tabs, NBSP, line breaks) one space, stripped. (Persian goes through `PersianNormalizer`.)"""
    return " ".join(unicodedata.normalize("NFC", text).split())
