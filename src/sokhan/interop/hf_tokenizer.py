"""Tokenizers across the border: sokhan's tokenizer.json for transformers, and a checkpoint's for sokhan.

Both sides use the `tokenizers` library's tokenizer.json, so the vocabulary, the merges and the
pre-tokenizer cross unchanged and give the same ids. What differs is around it:

* **Export.** transformers reads the special tokens' roles from tokenizer_config.json, and the
  chat template from there too (Jinja). The tokenizer gets a post-processor that puts
  `<|bos|>` first, as every sokhan document and prompt begins, so `tokenizer(text)` gives the
  ids `TrainedModel.encode_prompt` gives. sokhan's Persian normalizer runs *before* its
  tokenizer and is not part of tokenizer.json: a transformers user gets equal ids for text
  that is already normalized (the exported README says so).
* **Import.** sokhan needs its eight special tokens (`SPECIAL_TOKENS`). A checkpoint's own
  end-of-text token becomes `<|eos|>` (renamed in place, same id, so the model's trained row
  says "end" as before), and so do a distinct beginning token (`<|bos|>`) and padding token
  (`<|pad|>`). The rest are appended as new ids. GPT-2 has one token, `<|endoftext|>`, for
  both ends: it becomes `<|eos|>`, and the new `<|bos|>` gets a copy of its row, so a sokhan
  prompt (`<|bos|>` + text) reads as transformers' `<|endoftext|>` + text. Other new rows are the
  mean of the trained rows (see `hf_import.grow_rows`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, processors
from tokenizers import Tokenizer as HFTokenizer

from sokhan.errors import SokhanError
from sokhan.text.tokenizers import MASK_TOKEN, SPECIAL_TOKENS, Tokenizer

ROLES = {"eos": "<|eos|>", "bos": "<|bos|>", "pad": "<|pad|>"}  # the checkpoint's role → sokhan's token
CHAT_ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# `sokhan.text.chat_template.ChatTemplate.encode` as Jinja (transformers' `apply_chat_template`): the same
# roles and the same rendering, <|bos|> then each message as <|role|> content <|end|>, then <|assistant|> to
# ask for a reply. A test checks that both give the same ids.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('message ' ~ loop.index0 ~ ': unknown role ' ~ message['role'] ~ ' (use system, user, "
    "assistant)') }}"
    "{%- elif message['role'] == 'system' and not loop.first -%}"
    "{{ raise_exception('message ' ~ loop.index0 ~ ': a system message may only come first') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|' ~ message['role'] ~ '|>' ~ message['content'] ~ '<|end|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}{%- endif -%}"
)


def export_tokenizer_files(tokenizer: Tokenizer, block_size: int, chat: bool) -> dict[str, str]:
    """tokenizer.json (with `<|bos|>` put first by its post-processor), tokenizer_config.json and
    special_tokens_map.json for `transformers.AutoTokenizer`; the chat template when `chat`."""
    hf = HFTokenizer.from_str(tokenizer.hf.to_str())
    hf.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B:1", special_tokens=[("<|bos|>", tokenizer.bos_id)])
    special = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>", "mask_token": MASK_TOKEN,
               "additional_special_tokens": CHAT_ROLE_TOKENS}
    config: dict[str, Any] = {
        # The generic fast tokenizer reads tokenizer.json as it is; GPT2Tokenizer would rebuild the
        # pre-tokenizer with GPT-2's regex, which cuts Persian words where sokhan's does not.
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": block_size,
        "clean_up_tokenization_spaces": False,  # decode as sokhan decodes: no spaces removed before punctuation
    }
    if chat:
        config["chat_template"] = CHAT_TEMPLATE
    return {"tokenizer.json": hf.to_str(pretty=True),
            "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False),
            "special_tokens_map.json": json.dumps(special, indent=2, ensure_ascii=False)}


@dataclass
class ImportedTokenizer:
    """A checkpoint's tokenizer made a sokhan `Tokenizer`, and what that took."""

    tokenizer: Tokenizer
    renamed: dict[str, str] = field(default_factory=dict)   # the checkpoint's token → sokhan's (same id)
    added: dict[str, int] = field(default_factory=dict)     # sokhan's token → its new id
    copies: dict[int, int] = field(default_factory=dict)    # new id → the id whose rows it copies


def import_tokenizer(hf_dir: Path, config: dict[str, Any]) -> ImportedTokenizer:
    """Read `hf_dir/tokenizer.json` and give it sokhan's special tokens (module docstring)."""
    path = hf_dir / "tokenizer.json"
    if not path.is_file():
        raise SokhanError(f"{hf_dir} has no tokenizer.json; sokhan reads a tokenizer in that format only "
                          f"(transformers writes one for a fast tokenizer: AutoTokenizer…save_pretrained)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        original = HFTokenizer.from_str(json.dumps(data))  # also refuses JSON that is not a tokenizer
    except Exception as e:  # JSON's errors, or the library's plain Exception on a malformed file
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise SokhanError(f"cannot read tokenizer {path}: {reason}") from None
    roles = role_ids(hf_dir, config, original)
    renamed: dict[str, str] = {}
    for role, ours in ROLES.items():
        idx = roles.get(role)
        if original.token_to_id(ours) is not None or idx is None:  # sokhan's own token is there already
            continue
        old = original.id_to_token(idx)
        if old is not None and old not in renamed and _renamable(data, old, idx):  # one id, one role: eos first
            _rename(data, old, ours, idx)
            renamed[old] = ours
    hf = HFTokenizer.from_str(json.dumps(data))
    missing = [t for t in SPECIAL_TOKENS if hf.token_to_id(t) is None]
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    added = {t: hf.token_to_id(t) for t in missing}
    copies = {}
    if "<|bos|>" in added and roles.get("bos") is not None and roles.get("bos") == roles.get("eos"):
        copies[added["<|bos|>"]] = roles["bos"]  # GPT-2's <|endoftext|> opened documents too
    return ImportedTokenizer(Tokenizer(hf), renamed, added, copies)


def role_ids(hf_dir: Path, config: dict[str, Any], tokenizer: HFTokenizer) -> dict[str, int]:
    """The ids of the checkpoint's bos, eos and pad tokens: as its tokenizer_config.json (or
    special_tokens_map.json) names them, else its config.json's `*_token_id`; absent roles left out."""
    named: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the second wins, as transformers reads them
        try:
            found = json.loads((hf_dir / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(found, dict):
            named.update({k: v for k, v in found.items() if v is not None})
    roles: dict[str, int] = {}
    for role in ROLES:
        token = named.get(f"{role}_token")
        if isinstance(token, dict):
            token = token.get("content")
        idx = tokenizer.token_to_id(token) if isinstance(token, str) else None
        if idx is None:
            idx = config.get(f"{role}_token_id")
            if isinstance(idx, list):  # several end tokens: the first is the end of text
                idx = idx[0] if idx else None
        if isinstance(idx, int) and not isinstance(idx, bool) and tokenizer.id_to_token(idx) is not None:
            roles[role] = idx
    return roles


def _renamable(data: dict[str, Any], token: str, idx: int) -> bool:
    """Rename only a token that is one of the tokenizer's added (special) tokens and that no BPE merge
    builds: renaming an ordinary piece of text would change how text is encoded."""
    added = [t for t in data.get("added_tokens") or [] if isinstance(t, dict) and t.get("id") == idx]
    if not added or added[0].get("content") != token:
        return False
    merges = (data.get("model") or {}).get("merges") or []
    for merge in merges:
        pair = merge.split(" ", 1) if isinstance(merge, str) else merge
        if token in pair or "".join(pair) == token:
            return False
    return True


def _rename(data: dict[str, Any], old: str, new: str, idx: int) -> None:
    """Give id `idx` the text `new` instead of `old` everywhere tokenizer.json names it."""
    vocab = (data.get("model") or {}).get("vocab")
    if isinstance(vocab, dict) and vocab.get(old) == idx:
        vocab[new] = vocab.pop(old)
    elif isinstance(vocab, list) and idx < len(vocab) and isinstance(vocab[idx], list) and vocab[idx][0] == old:
        vocab[idx][0] = new  # Unigram: [piece, score] at its id
    for token in data["added_tokens"]:
        if token.get("id") == idx:
            token.update(content=new, special=True)
    if data.get("post_processor"):
        data["post_processor"] = _replace_strings(data["post_processor"], old, new)


def _replace_strings(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {_replace_strings(k, old, new): _replace_strings(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_strings(v, old, new) for v in node]
    return new if node == old else node
