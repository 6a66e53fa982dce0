"""Tests for sokhan.text.normalize: a table of hazm-style cases, invariants and idempotence."""

from __future__ import annotations

import itertools
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sokhan.errors import SokhanError
from sokhan.text.normalize import NormalizerConfig, PersianNormalizer, normalize

ZWNJ = "\u200c"
LATIN = {"digits": "latin"}
KEEP = {"digits": "keep"}
BARE = {"remove_diacritics": True}
NOJOIN = {"join_affixes": False}

CASES = [
    # hazm's behaviours, required verbatim
    ("كتاب هاي  من", {}, "کتاب‌های من"),
    ("مي روم", {}, "می‌روم"),
    ("دل می رود ز دستم", {}, "دل می‌رود ز دستم"),
    ("به می سجاده رنگین کن", {}, "به می سجاده رنگین کن"),  # 'می' = wine after a preposition
    ("جام می است", {}, "جام می است"),                        # ... and before 'است'
    ("ـــسلام", {}, "سلام"),
    # Arabic letter variants -> Persian
    ("يك", {}, "یک"),
    ("على", {}, "علی"),
    ("مدرسة", {}, "مدرسه"),
    ("خانە", {}, "خانه"),
    ("ئ ؤ أ آ", {}, "ئ ؤ أ آ"),  # real Persian letters are left alone
    # presentation forms -> base letters; phrase ligatures (with spaces) are kept
    ("ﻛﺘﺎﺏ", {}, "کتاب"),
    ("ﻋﻠﻲ", {}, "علی"),
    ("ﷲ ﷺ", {}, "الله ﷺ"),
    # digits
    ("سال 1402", {}, "سال ۱۴۰۲"),
    ("٣٤ و ۵", {}, "۳۴ و ۵"),
    ("GPT-2", {}, "GPT-۲"),
    ("۱۴۰۲ و ٣", LATIN, "1402 و 3"),
    ("۱۲ 34 ٥", KEEP, "۱۲ 34 ٥"),
    # kashida
    ("بـــزرگ", {}, "بزرگ"),
    # diacritics: kept by default, removed on request (vowel signs only, not hamza/madda)
    ("کِتاب", {}, "کِتاب"),
    ("کِتابٌ", BARE, "کتاب"),
    ("مُحَمَّد", BARE, "محمد"),
    ("رحمٰن", BARE, "رحمن"),
    ("خانهٔ من", BARE, "خانهٔ من"),
    ("ا\u0653", {}, "آ"),             # NFC composes alef + madda
    ("اـ\u0653", {}, "آ"),            # ... also once the kashida between them is gone
    ("ي\u0654", {}, "ئ"),             # NFC first: a decomposed yeh + hamza is 'ئ', not 'ی' + hamza
    # ZWNJ
    (f"می{ZWNJ}{ZWNJ}{ZWNJ}روم", {}, "می‌روم"),
    (f"سلام{ZWNJ} دنیا", {}, "سلام دنیا"),
    (f"سلام {ZWNJ}دنیا", {}, "سلام دنیا"),
    (f"{ZWNJ}سلام{ZWNJ}", {}, "سلام"),
    (f"سلام{ZWNJ}\nدنیا", {}, "سلام\nدنیا"),
    (f"سلام{ZWNJ}!", {}, "سلام!"),
    (f"ب{ZWNJ}۲", {}, "ب۲"),
    (f"کتابِ{ZWNJ}ها", {}, f"کتابِ{ZWNJ}ها"),  # a diacritic belongs to the letter before it
    (f"کتابِ{ZWNJ}ها", BARE, "کتاب‌ها"),
    # other invisible characters
    ("سل\u200bام\u200f", {}, "سلام"),
    ("\ufeffسلام", {}, "سلام"),
    ("سل\u00adام", {}, "سلام"),
    ("\u202bسلام\u202c", {}, "سلام"),
    ("👨\u200d👩\u200d👧", {}, "👨\u200d👩\u200d👧"),  # ZWJ is kept (emoji sequences)
    # whitespace and lines
    ("سلام   \t دنیا", {}, "سلام دنیا"),
    ("a\u00a0\u2009b", {}, "a b"),
    ("  سلام  \n  دنیا  ", {}, "سلام\nدنیا"),
    ("بیت یک\nبیت دو", {}, "بیت یک\nبیت دو"),
    ("الف\n\nب", {}, "الف\n\nب"),
    ("الف\n\n\n\nب", {}, "الف\n\nب"),
    ("الف \n \n \n ب", {}, "الف\n\nب"),
    ("الف\r\nب\rج", {}, "الف\nب\nج"),
    ("\n\n  سلام \n\n", {}, "سلام"),
    ("الف\u2028ب", {}, "الف\nب"),
    # joining 'می' / 'نمی'
    ("نمي دانم", {}, "نمی‌دانم"),
    ("من می خواهم\nمی روم", {}, "من می‌خواهم\nمی‌روم"),
    ("جام می", {}, "جام می"),          # 'می' (wine) ending a phrase is not a prefix
    ("می ۲", {}, "می ۲"),
    ("کمی راه", {}, "کمی راه"),        # 'می' inside a word is not a prefix
    ("مي روم", NOJOIN, "می روم"),
    # joining the plural 'ها' and its forms
    ("کتاب هایی", {}, "کتاب‌هایی"),
    ("دوست هایشان", {}, "دوست‌هایشان"),
    ("کتاب ها، دفتر ها.", {}, "کتاب‌ها، دفتر‌ها."),
    ("کتاب هایِ من", {}, "کتاب‌هایِ من"),
    ("کتاب هاشمی", {}, "کتاب هاشمی"),  # 'ها' is only the start of a word here
    ("و ها", {}, "و ها"),              # one-letter word before: not joined
    # the joining rules read composed letters, so one pass does what two did at d058e49
    ("ﺍٔو ها", {}, "أو‌ها"),             # presentation alef + hamza is 'أ' before the plural rule looks
    ("ا\u200c\u0653ب ها", {}, "آب‌ها"),  # ... and alef + madda, once the stray ZWNJ between them is gone
    ("می است ها", {}, "می‌است‌ها"),       # the plural first: the 'می' rule reads 'است‌ها', not 'است'
    ("كتاب هاي  من", NOJOIN, "کتاب های من"),
]


@pytest.mark.parametrize(("text", "config", "expected"), CASES,
                         ids=[f"{i}-{'-'.join(f'{k}={v}' for k, v in c.items()) or 'default'}"
                              for i, (_, c, _) in enumerate(CASES)])
def test_table(text, config, expected):
    assert normalize(text, **config) == expected
    assert PersianNormalizer(NormalizerConfig(**config))(text) == expected


def test_table_is_large_enough():
    assert len(CASES) >= 30


def test_bad_digits_option():
    with pytest.raises(SokhanError):
        NormalizerConfig(digits="roman")


def test_every_unicode_space_becomes_a_space_or_newline():
    for cp in range(0x110000):
        c = chr(cp)
        if c.isspace():
            assert normalize(f"a{c}b") in ("a b", "a\nb"), hex(cp)


CONFIGS = [NormalizerConfig(digits=d, remove_diacritics=r, join_affixes=j)
           for d, r, j in itertools.product(("persian", "latin", "keep"), (False, True), (False, True))]
CONFIG_IDS = [f"{c.digits}-diac{int(c.remove_diacritics)}-join{int(c.join_affixes)}" for c in CONFIGS]

# Pieces of text that exercise every rule, glued together in random order.
PIECES = ["می", "مي", "نمی", "نمي", "ها", "های", "هاي", "هایی", "هایشان", "کتاب", "كتاب", "دوست", "ی", "ي",
          "ى", "ك", "ە", "ة", "ا", "ه", "و", "آ", " ", "  ", "\n", "\n\n\n", "\r\n", "\r", "\t", "\u00a0",
          "\u2009", "\u2028", ZWNJ, ZWNJ * 2, "\u200d", "\u200b", "\u200e", "\u200f", "\u202b", "\ufeff",
          "\u00ad", "ـ", "\u064b", "\u064e", "\u064f", "\u0650", "\u0651", "\u0652", "\u0653", "\u0654",
          "\u0670", "0", "7", "۱", "۹", "٣", ".", "،", "!", "«", "»", "ﻛ", "ﻲ", "ﷲ", "ﷺ", "\ufe70", "\u0301",
          "a", "Z", "😀"]
# Single characters from a small alphabet, so that rare neighbours (alef, kashida, madda) meet often.
DENSE = "اآیيكکمنهەةـ \n\u200c\u200d\u200b\u064e\u0650\u0651\u0653\u0654\u06701۱٣.!"
persian_text = (st.lists(st.sampled_from(PIECES) | st.characters(), max_size=30).map("".join)
                | st.text(alphabet=DENSE, max_size=20))
any_text = st.text()


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=120, deadline=None)
@given(text=persian_text | any_text)
def test_idempotent(config, text):
    norm = PersianNormalizer(config)
    once = norm(text)
    assert norm(once) == once


@settings(max_examples=200, deadline=None)
@given(text=any_text)
def test_idempotent_default_any_text(text):
    assert normalize(normalize(text)) == normalize(text)


DIGIT_SETS = {"persian": "۰۱۲۳۴۵۶۷۸۹", "latin": "0123456789", "arabic": "٠١٢٣٤٥٦٧٨٩"}


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=120, deadline=None)
@given(text=persian_text)
def test_output_invariants(config, text):
    out = PersianNormalizer(config)(text)
    assert unicodedata.is_normalized("NFC", out)
    assert not set(out) & set("يىكەةـ\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\ufeff\u00ad\r\t\u00a0\u2009")
    assert out == out.strip(" \n")
    assert "  " not in out and " \n" not in out and "\n " not in out and "\n\n\n" not in out
    for i, c in enumerate(out):
        if c == ZWNJ:  # only ever between a letter (or its diacritic) and a letter
            assert 0 < i < len(out) - 1
            assert unicodedata.category(out[i - 1])[0] in "LM" and unicodedata.category(out[i + 1])[0] == "L"
    if config.remove_diacritics:
        assert not set(out) & set("\u064b\u064c\u064d\u064e\u064f\u0650\u0651\u0652\u0670")
    if config.digits != "keep":
        others = "".join(d for k, d in DIGIT_SETS.items() if k != config.digits)
        assert not set(out) & set(others)


@settings(max_examples=200, deadline=None)
@given(text=persian_text)
def test_join_affixes_only_replaces_spaces_with_zwnj(text):
    joined = normalize(text)
    plain = normalize(text, join_affixes=False)
    assert len(joined) == len(plain)
    for a, b in zip(joined, plain):
        assert a == b or (a == ZWNJ and b == " ")


# Normalizes a few megabytes of the worst case for the 'می' rule (every other word a candidate) and
# checks the result. At d058e49 the rule sliced the whole text around each match: quadratic, ~40 s
# for a million characters, ~6 min for these three million; now about a second.
LONG_PROMPT = """
from sokhan.text.normalize import normalize
n = 3_000_000 // len("می رود ")
assert normalize("می رود " * n) == " ".join(["می\u200cرود"] * n)
"""


def test_long_prompt_is_normalized_in_linear_time():
    """A hang guard, not a timing: the limit is tens of times what linear work needs on a slow machine."""
    try:
        subprocess.run([sys.executable, "-c", LONG_PROMPT], check=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("normalizing 3 million characters of 'می رود ' did not finish in a minute: quadratic again?")
