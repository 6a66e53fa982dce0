"""Text as pictures show it: visible whitespace, readable byte pieces, and Persian shaped right to left.

A browser shapes Arabic script and orders mixed-direction text itself, so the HTML views
get tokens as they are (only made visible). Matplotlib before 3.11 does neither: it draws
code points one by one, left to right; `shape` turns Persian into the presentation forms
(initial, medial, final, isolated letters) in visual order for it. Matplotlib 3.11 lays text
out with libraqm and must get the logical text. `display` knows which, and every PNG label
goes through it.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import arabic_reshaper
from bidi.algorithm import get_display
from matplotlib import font_manager, ft2font

from sokhan.models.checkpoint import run_folder
from sokhan.text.tokenizers import Tokenizer

# Fonts with Arabic-script glyphs, best first; DejaVu Sans ships with matplotlib and covers the
# presentation forms, so the list always ends with a font that is there.
PERSIAN_FONTS = ("Vazirmatn", "Vazir", "Noto Naskh Arabic", "Noto Sans Arabic")
FALLBACK_FONT = "DejaVu Sans"
# The same wish for the browser, which does its own shaping.
CSS_FONTS = "Vazirmatn, Vazir, 'Noto Naskh Arabic', 'Noto Sans Arabic', Tahoma, 'DejaVu Sans', sans-serif"

WHITESPACE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}
ZWNJ = "\u200c"
_RTL_CLASSES = {"R", "AL"}


def is_rtl(text: str) -> bool:
    """True when the text's first strong character reads right to left (Persian, Arabic, Hebrew)."""
    for ch in text:
        kind = unicodedata.bidirectional(ch)
        if kind in _RTL_CLASSES:
            return True
        if kind == "L":
            return False
    return False


def visible(token: str) -> str:
    """A token's text with nothing invisible: spaces and newlines as ␣ ⏎, a lone ZWNJ named, controls as U+…."""
    if token == "":
        return "∅"
    if token == ZWNJ:
        return "‹ZWNJ›"
    out = []
    for ch in token:
        if ch in WHITESPACE:
            out.append(WHITESPACE[ch])
        elif ch != ZWNJ and unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp"):
            out.append(f"‹U+{ord(ch):04X}›")
        else:
            out.append(ch)
    return "".join(out)


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte ↔ printable-character table, inverted: how a byte-level BPE piece spells its bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars)}


def token_texts(tokenizer: Tokenizer, ids: Iterable[int]) -> list[str]:
    """Each id's own text, made visible. A piece of a multi-byte character shows its bytes (‹d8 af›)."""
    out = []
    for i in ids:
        text = tokenizer.decode([int(i)])
        if "\ufffd" in text:
            piece = tokenizer.id_to_token(int(i)) or ""
            if not piece.startswith("<0x"):  # byte-level BPE: map its printable stand-ins back to bytes
                table = _byte_decoder()
                if all(c in table for c in piece):
                    piece = "‹" + " ".join(f"{table[c]:02x}" for c in piece) + "›"
            text = piece
        out.append(visible(text))
    return out


def shape(text: str) -> str:
    """Persian (any Arabic-script) text shaped and in visual order, for a renderer that does neither.

    `arabic_reshaper` picks each letter's contextual form (initial, medial, final, isolated
    presentation forms), then the Unicode bidi algorithm (python-bidi) lays the line out left
    to right as it must appear. Text without right-to-left characters comes back unchanged.
    """
    if not any(unicodedata.bidirectional(ch) in _RTL_CLASSES for ch in text):
        return text
    return get_display(arabic_reshaper.reshape(text))


@functools.lru_cache(maxsize=1)
def matplotlib_lays_out_text() -> bool:
    """True when matplotlib shapes and orders text itself (libraqm, matplotlib ≥ 3.11).

    Such a matplotlib must get the logical text: shaping it first would make it reverse the
    line a second time and join letters that are already joined.
    """
    return bool(getattr(ft2font, "__libraqm_version__", None))


def display(text: str) -> str:
    """A label as matplotlib must receive it to draw Persian right: shaped by `shape` unless it shapes itself."""
    return text if matplotlib_lays_out_text() else shape(text)


def font_family() -> list[str]:
    """Matplotlib's font list: an installed Persian font if any, then DejaVu Sans (glyph-by-glyph fallback)."""
    names = {f.name for f in font_manager.fontManager.ttflist}
    return [name for name in PERSIAN_FONTS if name in names][:1] + [FALLBACK_FONT]


def shorten(text: str, most: int = 90) -> str:
    """One line for a title: newlines made visible, long texts cut with an ellipsis."""
    line = text.replace("\n", " ⏎ ").strip()
    return line if len(line) <= most else line[: most - 1] + "…"


def model_name(path: str | Path) -> str:
    """The run's folder name for titles (a checkpoint folder names its run, not `step-…`)."""
    return run_folder(path).name
