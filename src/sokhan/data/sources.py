"""Where documents come from: one source spec string -> a stream of raw documents.

`iter_documents(spec)` understands:

* ``hafez`` — the Divan of Hafez shipped by the pip package ``hafez`` (495 ghazals, each
  with a short interpretation); the default corpus.
* ``fatol-hafez`` — the diacritized Divan shipped by the pip package ``fatol-hafez``.
* a ``.txt`` / ``.md`` (or any other non-JSONL) file, split into documents by ``doc_split``;
* a ``.jsonl`` file: one JSON object per line, its ``text_field`` string is a document;
* a ``.parquet`` file: its ``text_field`` column, a document per row, read a batch of rows at a time;
* a folder: every ``*.txt``, ``*.md``, ``*.jsonl``, ``*.parquet`` under it, recursively, sorted by path;
* ``hf:NAME_OR_PATH[:SPLIT]`` — a Hugging Face dataset: a local ``save_to_disk`` folder
  (memory-mapped Arrow), or a hub name or a local folder of data files, loaded with
  ``streaming=True`` (rows arrive as they are read; nothing is downloaded or held whole first);
* several of the above joined with commas, concatenated in order (``hafez,fatol-hafez``).

The embedded names win over paths: a folder called ``hafez`` in the working directory is
reached as ``./hafez``.

Documents are *raw*: normalization is `sokhan.data.prepare`'s job (`normalized_documents`,
shared with `sokhan eval`). Whitespace-only documents are never yielded. User files are
streamed line by line or batch by batch (never read whole), and the returned iterator can be obtained again by
calling `iter_documents` again.
"""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path

from sokhan.config.data import DECODE_ERROR_MODES, DOC_SPLITS
from sokhan.errors import SokhanError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
RECORD_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES  # a document per record, not cut by doc_split
FOLDER_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")
HF_DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".txt")  # what `datasets` streams from a folder
PARQUET_BATCH = 1024  # rows read from a parquet file at a time
VALID_FORMS = ("hafez, fatol-hafez, a .txt/.md/.jsonl/.parquet file, a folder of them, hf:NAME_OR_PATH[:SPLIT], "
               "or several joined with commas")

# fatol-hafez: couplets are grouped into this many per document when they cannot be aligned
# with hafez.json's ghazals (about the median ghazal length).
FALLBACK_COUPLETS_PER_DOC = 8
# ...and alignment is trusted only if at least this fraction of couplets was found in hafez.json.
MIN_ALIGNED_FRACTION = 0.9


class CorpusWarning(UserWarning):
    """Something in the corpus was skipped (e.g. undecodable lines with on_decode_error='skip')."""


def iter_documents(source: str, *, text_field: str = "text", doc_split: str = "blank-line",
                   on_decode_error: str = "fail") -> Iterator[str]:
    """Yield the raw documents of `source` (see the module docstring for the spec forms).

    The spec and options are checked now (a missing path or an unknown name raises
    `SokhanError` at the call, not at the first `next()`); the documents are then read
    lazily. Call again to read the corpus again.
    """
    _check_options(doc_split, on_decode_error)
    parts = [p.strip() for p in str(source).split(",")]
    if not any(parts):
        raise SokhanError(f"empty source; valid forms: {VALID_FORMS}")
    readers = [_resolve(p, text_field, doc_split, on_decode_error) for p in parts if p]
    return _chain(readers)


def file_documents(path: str | Path, *, doc_split: str, on_decode_error: str, text_field: str = "text",
                   ) -> Iterator[str]:
    """The documents of one file, read exactly as `iter_documents` reads it within a source.

    `sokhan eval` reads its file by this rule, so a file holding a dataset's validation
    documents scores what the dataset's val split scores. A path is only a path here: one
    named `hafez` or holding a comma is still that file.
    """
    _check_options(doc_split, on_decode_error)
    p = Path(path)
    if not p.is_file():
        raise SokhanError(f"no such file: {path}")
    return _chain([lambda: _iter_file(p, text_field, doc_split, on_decode_error)])


def eval_doc_split(source: str, doc_split: str) -> str:
    """How `sokhan eval` should cut a text file for a model trained on `source`: the rule that cut it.

    `doc_split` cut the source's plain-text files; the embedded corpora, .jsonl files and hub
    datasets come in records, one document each, and a ghazal of `hafez` keeps blank lines
    between its couplets. So where no part of the source is plain text, a text file is read as
    one such document ("file"); where some part is, by `doc_split`.
    """
    def plain_text(spec: str) -> bool:
        if spec in ("hafez", "fatol-hafez") or spec.startswith("hf:"):
            return False
        p = Path(spec).expanduser()
        files = [f for f in p.rglob("*") if f.suffix.lower() in FOLDER_SUFFIXES] if p.is_dir() else [p]
        return any(f.suffix.lower() not in RECORD_SUFFIXES for f in files)

    return doc_split if any(plain_text(part.strip()) for part in str(source).split(",") if part.strip()) else "file"


def normalized_documents(raw_docs: Iterable[str], normalize: Callable[[str], str]) -> Iterator[str]:
    """Each raw document normalized and stripped; the ones left empty are no documents.

    The one rule `sokhan prepare` builds a split by and `sokhan eval` scores a text by: a text
    scores what the same documents score in a dataset's split.
    """
    for raw in raw_docs:
        if doc := normalize(raw).strip():
            yield doc


def _check_options(doc_split: str, on_decode_error: str) -> None:
    if doc_split not in DOC_SPLITS:
        raise SokhanError(f"unknown doc_split '{doc_split}' (choose {', '.join(DOC_SPLITS)})")
    if on_decode_error not in DECODE_ERROR_MODES:
        raise SokhanError(f"unknown on_decode_error '{on_decode_error}' (choose {', '.join(DECODE_ERROR_MODES)})")


def _chain(readers) -> Iterator[str]:
    for make in readers:
        for doc in make():
            if doc.strip():
                yield doc


def _resolve(spec: str, text_field: str, doc_split: str, on_decode_error: str):
    """Check one spec and return a zero-argument function that yields its documents."""
    if spec == "hafez":
        path = package_file("hafez", "data/hafez.json")
        return lambda: _iter_hafez_json(path)
    if spec == "fatol-hafez":
        path = package_file("fatol_hafez", "ghazals.txt")
        return lambda: _iter_fatol_hafez(path)
    if spec.startswith("hf:"):
        return resolve_hf(spec[3:], text_field)
    p = Path(spec).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES)
        if not files:
            raise SokhanError(f"folder {spec} has no .txt, .md, .jsonl or .parquet files")
        return lambda: (d for f in files for d in _iter_file(f, text_field, doc_split, on_decode_error))
    if p.is_file():
        return lambda: _iter_file(p, text_field, doc_split, on_decode_error)
    if p.exists():
        raise SokhanError(f"not a regular file or folder: {spec}")
    if "/" in spec or "\\" in spec or p.suffix:
        raise SokhanError(f"no such file or folder: {spec}")
    raise SokhanError(f"no such file or folder, and not a known source: '{spec}'; valid forms: {VALID_FORMS}")


# --------------------------------------------------------------------------- files

def _iter_file(path: Path, text_field: str, doc_split: str, on_decode_error: str) -> Iterator[str]:
    if path.suffix.lower() in PARQUET_SUFFIXES:
        yield from _iter_parquet(path, text_field)
        return
    lines = iter_lines(path, on_decode_error)
    if path.suffix.lower() in JSONL_SUFFIXES:
        yield from _iter_jsonl(path, lines, text_field)
        return
    yield from split_lines((line for _, line in lines), doc_split)


def split_text(text: str, doc_split: str) -> Iterator[str]:
    """The documents of `text` cut exactly as a .txt file holding it is cut by `iter_documents`.

    The Python API scores a string by this rule (`LanguageModel.bits_per_char`), so a string
    and a file with the same characters score alike.
    """
    _check_options(doc_split, "fail")
    lines = text.removeprefix("\ufeff").split("\n")  # as `iter_lines`: a BOM dropped, lines cut at \n only
    return split_lines((line.rstrip("\r") for line in lines), doc_split)


def split_lines(lines: Iterable[str], doc_split: str) -> Iterator[str]:
    """Lines (without their line endings) -> documents: at blank lines, at every line, or all as one."""
    if doc_split == "line":
        yield from (line for line in lines if line.strip())
    elif doc_split == "file":
        doc = "\n".join(lines)
        if doc.strip():
            yield doc
    else:  # blank-line: one or more whitespace-only lines end a document
        buf: list[str] = []
        for line in lines:
            if line.strip():
                buf.append(line)
            elif buf:
                yield "\n".join(buf)
                buf = []
        if buf:
            yield "\n".join(buf)


def iter_lines(path: Path, on_decode_error: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its line ending), decoding UTF-8 one line at a time.

    An undecodable line raises `SokhanError` naming file:line in 'fail' mode; in 'skip'
    mode it is dropped and one warning per file (first bad line + count) is issued at the end.
    """
    bad_first, bad_count = 0, 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte order mark
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if on_decode_error == "fail":
                    raise SokhanError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                                      f"fix the file or use --on-decode-error skip") from None
                bad_count += 1
                bad_first = bad_first or lineno
                continue
            yield lineno, line.rstrip("\r\n")
    if bad_count:
        # The default warnings filter shows an identical message once, so reading the same
        # corpus twice in one process does not repeat it.
        warnings.warn(f"{path}:{bad_first}: skipped {bad_count} line(s) that are not valid UTF-8 "
                      f"(first at line {bad_first})", CorpusWarning, stacklevel=1)


def iter_jsonl_objects(path: Path, lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line is a SokhanError naming file:line."""
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise SokhanError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise SokhanError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def _iter_jsonl(path: Path, lines: Iterator[tuple[int, str]], text_field: str) -> Iterator[str]:
    for lineno, obj in iter_jsonl_objects(path, lines):
        if text_field not in obj:
            keys = ", ".join(sorted(map(str, obj))) or "none"
            raise SokhanError(f"{path}:{lineno}: no field '{text_field}' (fields: {keys}); "
                              f"choose one with --text-field")
        value = obj[text_field]
        if not isinstance(value, str):
            raise SokhanError(f"{path}:{lineno}: field '{text_field}' is {type(value).__name__}, not a string")
        yield value


def _iter_parquet(path: Path, text_field: str) -> Iterator[str]:
    """The `text_field` column of a parquet file, `PARQUET_BATCH` rows at a time (a file larger than RAM reads in
    the memory of one batch); empty values are no documents. pyarrow comes with `datasets`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        columns = table.schema_arrow.names
        if text_field not in columns:
            raise SokhanError(f"{path}: no column '{text_field}' (columns: {', '.join(columns) or 'none'}); "
                              f"choose one with --text-field")
        kind = table.schema_arrow.field(text_field).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise SokhanError(f"{path}: column '{text_field}' holds {kind}, not text")
        for batch in table.iter_batches(batch_size=PARQUET_BATCH, columns=[text_field]):
            yield from (value for value in batch.column(0).to_pylist() if value)
    except (OSError, pa.ArrowException) as e:
        raise SokhanError(f"{path}: not a readable parquet file ({_first_line(e)})") from None


# --------------------------------------------------------------------------- Hugging Face

def parse_hf(rest: str) -> tuple[str, str]:
    """'NAME_OR_PATH[:SPLIT]' -> (name, split), checking a local folder is a saved dataset."""
    if not rest:
        raise SokhanError("hf: needs a dataset name or a save_to_disk folder: hf:NAME_OR_PATH[:SPLIT]")
    if Path(rest).expanduser().exists():
        name, split = rest, "train"
    else:
        name, _, split = rest.partition(":")
        split = split or "train"
    local = Path(name).expanduser()
    if local.exists() and not local.is_dir():
        raise SokhanError(f"hf:{name}: not a folder (made by save_to_disk, or of data files)")
    if local.is_dir() and not saved_dataset(local) and not any(
            f.suffix.lower() in HF_DATA_SUFFIXES for f in local.rglob("*") if f.is_file()):
        raise SokhanError(f"hf:{name}: the folder holds neither a dataset made by save_to_disk nor data files "
                          f"({', '.join(HF_DATA_SUFFIXES)})")
    return name, split


def saved_dataset(folder: Path) -> bool:
    """A folder `save_to_disk` wrote (memory-mapped Arrow, opened whole); any other is read as data files, streamed."""
    return any((folder / f).is_file() for f in ("dataset_dict.json", "dataset_info.json", "state.json"))


def resolve_hf(rest: str, text_field: str):
    name, split = parse_hf(rest)
    return lambda: _iter_hf(name, split, text_field)


def iter_hf_rows(name: str, split: str, columns: list[str] | None = None) -> Iterator[dict]:
    """Rows (dicts of `columns`, or of all columns) of a saved-to-disk folder or a hub dataset (streamed)."""
    import datasets  # slow to import: only when a hf: source is actually read

    label = f"hf:{name}"
    local = Path(name).expanduser()
    if local.is_dir() and saved_dataset(local):
        try:
            ds = datasets.load_from_disk(str(local))
        except Exception as e:
            raise SokhanError(f"{label}: cannot load dataset ({_first_line(e)})") from None
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise SokhanError(f"{label}: no split '{split}' (splits: {', '.join(ds)})")
            ds = ds[split]
    else:  # a hub dataset, or a local folder of data files: streamed, row by row, never held whole
        try:
            ds = datasets.load_dataset(name, split=split, streaming=True)
        except Exception as e:
            raise SokhanError(f"{label}:{split}: cannot load dataset ({_first_line(e)})") from None
    present = getattr(ds, "column_names", None)
    columns = columns or present
    missing = [c for c in columns or [] if present is not None and c not in present]
    if missing:
        raise SokhanError(f"{label}: no column '{missing[0]}' (columns: {', '.join(present)}); "
                          f"choose one with --text-field")
    if isinstance(ds, datasets.Dataset):  # in memory / memory-mapped: read the columns in batches
        for batch in ds.select_columns(columns).iter(batch_size=1000):
            yield from (dict(zip(columns, values)) for values in zip(*(batch[c] for c in columns)))
    else:
        yield from ({c: row.get(c) for c in columns} if columns else row for row in ds)


def _iter_hf(name: str, split: str, text_field: str) -> Iterator[str]:
    for i, row in enumerate(iter_hf_rows(name, split, [text_field])):
        value = row[text_field]
        if value is None:
            continue
        if not isinstance(value, str):
            raise SokhanError(f"hf:{name}: row {i}: column '{text_field}' is {type(value).__name__}, not a string")
        yield value


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --------------------------------------------------------------------------- embedded Hafez

def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package.

    (`hafez/__init__` imports requests and pandas; we only want its JSON.)
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise SokhanError(f"the embedded corpus needs the '{pip_name}' package: pip install {pip_name}")
    for location in spec.submodule_search_locations:
        path = Path(location) / relative
        if path.is_file():
            return path
    raise SokhanError(f"package '{package}' is installed but lacks {relative}; reinstall it")


def _load_hafez_json(path: Path) -> list[dict]:
    # 2.4 MB, shipped with the package: loading it whole is fine (user corpora are streamed).
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SokhanError(f"{path}: cannot read the embedded Hafez corpus ({_first_line(e)})") from None
    if not isinstance(data, list):
        raise SokhanError(f"{path}: unexpected format (expected a list of ghazals)")
    return [g for g in data if isinstance(g, dict) and isinstance(g.get("poem"), list)]


def _iter_hafez_json(path: Path) -> Iterator[str]:
    """One document per ghazal.

    Layout: one hemistich per line, a blank line between couplets, then a blank line and the
    interpretation (and the alternative interpretation, if different) as paragraphs. This is
    exactly the layout of ``fatol-hafez``'s text, so the two embedded corpora (and a combined
    ``hafez,fatol-hafez``) look alike to a model and to a reader, and samples come out laid
    out like a printed Divan. (It also means that such a document written to a .txt file
    must be read back with doc_split='file', not 'blank-line'.)
    """
    for ghazal in _load_hafez_json(path):
        hemistichs = [h.strip() for h in ghazal["poem"] if isinstance(h, str) and h.strip()]
        couplets = ["\n".join(hemistichs[i:i + 2]) for i in range(0, len(hemistichs), 2)]
        paragraphs = list(couplets)
        seen = set()
        for key in ("interpretation", "alt_interpretation"):
            text = ghazal.get(key)
            if isinstance(text, str) and text.strip() and text.strip() not in seen:
                seen.add(text.strip())
                paragraphs.append(text.strip())
        if couplets:
            yield "\n\n".join(paragraphs)


_ARABIC_VARIANTS = str.maketrans({"ي": "ی", "ى": "ی", "ئ": "ی", "ك": "ک", "ة": "ه", "ۀ": "ه", "أ": "ا",
                                  "إ": "ا", "آ": "ا", "ٱ": "ا", "ؤ": "و", "ـ": None})


def letters_key(text: str) -> str:
    """Letters only, without diacritics, Arabic letter variants folded to Persian ones.

    Robust to the differences between the two editions: diacritics (fatol-hafez has them),
    ZWNJ vs space ('دل‌ها' vs 'دل ها'), punctuation, alef-madda, hamza forms.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).translate(_ARABIC_VARIANTS)
    return "".join(c for c in text if unicodedata.category(c).startswith("L"))


def _read_couplets(path: Path) -> list[list[str]]:
    # 0.5 MB, shipped with the package: read whole.
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    blocks = re.split(r"\n[ \t]*\n", text)
    return [lines for b in blocks if (lines := [ln.strip() for ln in b.splitlines() if ln.strip()])]


@lru_cache(maxsize=2)
def _fatol_groups(path: Path, hafez_path: Path | None) -> tuple[tuple[int, ...], ...]:
    """Couplet indices of fatol-hafez grouped into ghazals (see `_iter_fatol_hafez`)."""
    couplets = _read_couplets(path)
    if hafez_path is not None:
        groups = _align_with_hafez(couplets, _load_hafez_json(hafez_path))
        if groups is not None:
            return groups
    return tuple(tuple(range(i, min(i + FALLBACK_COUPLETS_PER_DOC, len(couplets))))
                 for i in range(0, len(couplets), FALLBACK_COUPLETS_PER_DOC))


def _align_with_hafez(couplets: list[list[str]], ghazals: list[dict]) -> tuple[tuple[int, ...], ...] | None:
    # Every hemistich of hafez.json -> the (ghazal, couplet) positions where it occurs.
    where: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for g, ghazal in enumerate(ghazals):
        poem = [h for h in ghazal["poem"] if isinstance(h, str)]
        for i, hemistich in enumerate(poem):
            if key := letters_key(hemistich):
                where[key].add((g, i // 2))
    groups: list[list[int]] = []
    current, last = None, -1
    matched = 0
    for j, lines in enumerate(couplets):
        cands: set[tuple[int, int]] = set()
        for line in lines[:2]:
            cands |= where.get(letters_key(line), set())
        matched += bool(cands)
        starts = sorted(g for g, c in cands if c == 0 and g != current)
        if current is not None and (current, last + 1) in cands:
            last += 1  # the next couplet of the current ghazal
        elif starts:
            current, last = starts[0], 0  # the first couplet of another ghazal
            groups.append([])
        elif cands and current not in {g for g, _ in cands}:
            current, last = min(cands)  # another ghazal whose first couplet is missing here
            groups.append([])
        elif not groups:
            groups.append([])  # unmatched text before any ghazal start
        # else: an unmatched or reordered couplet stays in the current ghazal
        groups[-1].append(j)
    if not couplets or matched < MIN_ALIGNED_FRACTION * len(couplets):
        return None
    return tuple(tuple(g) for g in groups if g)


def _iter_fatol_hafez(path: Path) -> Iterator[str]:
    """One document per ghazal, in the layout of the file (a hemistich per line, blank line
    between couplets).

    ``ghazals.txt`` is a flat run of couplets with no ghazal boundaries. We recover them by
    aligning with ``hafez.json`` (a different edition, without diacritics): every hemistich
    there is reduced to a letters-only key (diacritics, ZWNJ/space, punctuation and Arabic
    letter variants removed), and walking the couplets in order, a couplet starts a new
    document when it is the first couplet of a ghazal (or belongs to a different ghazal than
    the one being read); couplets that match nothing stay in the current ghazal. With
    hafez 0.4 / fatol-hafez 0.1.2 this recovers all 495 ghazals (one of them a couplet
    shorter than in hafez.json; the file orders ghazals 352-418 differently, which is
    harmless since each document is found by its own first couplet). If ``hafez`` is not
    installed, or fewer than 90 % of couplets can be found in it (a future edition), the
    couplets are grouped in fixed runs of 8 (about the median ghazal) instead.
    """
    try:
        hafez_path: Path | None = package_file("hafez", "data/hafez.json")
    except SokhanError:
        hafez_path = None
    couplets = _read_couplets(path)
    for group in _fatol_groups(path, hafez_path):
        yield "\n\n".join("\n".join(couplets[i]) for i in group)
