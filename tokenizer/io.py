"""Load a tokenizer directory (ours, DeepSeek's rebuilt one, or a Hugging Face checkpoint folder)
and find what downstream code needs: the `tokenizers.Tokenizer`, its sha256, size, BOS and EOS.

    tok, info = load_tokenizer("runs/tok")          # or s3://bucket/tok, or DIR/tokenizer.json
    info.eos_id, info.bos_id, info.vocab_size, info.sha256

BOS/EOS are resolved in this order: `tokenizer_config.json` (`bos_token`/`eos_token`, string or
`{"content": ...}`), then well-known special tokens present in the vocabulary (DeepSeek's, then
`<s>`/`</s>`, `<|endoftext|>`), then `config.json` ids — last, because DeepSeek's published base
`config.json` files say 1/2 while the real ids are 100000/100001.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from dsllm import storage
from dsllm.errors import UserError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

# Candidates in preference order: (bos, eos)
KNOWN_SPECIALS = [
    ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("<s>", "</s>"),
    ("<|begin_of_text|>", "<|end_of_text|>"),
    (None, "<|endoftext|>"),
]


@dataclasses.dataclass(frozen=True)
class TokenizerInfo:
    """Identity of a tokenizer as recorded in PACKED/manifest.json["tokenizer"].

    sha256: of the `tokenizer.json` bytes; vocab_size: tokens including added/special ones
    (the model's embedding may be larger, e.g. DeepSeek pads 100,015 to 102,400).
    """

    sha256: str
    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    path: str = ""
    bos_token: str | None = None
    eos_token: str | None = None

    def to_dict(self) -> dict:
        """The manifest form: {"sha256", "vocab_size", "eos_id", "bos_id", "path"}."""
        return {
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
            "bos_id": self.bos_id,
            "path": self.path,
        }


def tokenizer_file(dir_or_uri: str) -> tuple[str, str]:
    """(directory, tokenizer.json URI) for a directory or a direct path to a tokenizer.json."""
    uri = str(dir_or_uri).rstrip("/")
    if uri.endswith(".json"):
        parent = uri.rsplit("/", 1)[0] if "/" in uri else "."
        return parent, uri
    return uri, storage.join(uri, TOKENIZER_FILE)


def _read_json_if_exists(uri: str) -> dict | None:
    if not storage.exists(uri):
        return None
    try:
        data = storage.read_json(uri)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{uri}: malformed JSON: {exc}") from None
    return data if isinstance(data, dict) else None


def _token_text(value) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _resolve_specials(tok, tok_config: dict | None, model_config: dict | None):
    """(bos_token, bos_id, eos_token, eos_id) by the precedence in the module docstring."""
    bos_tok = eos_tok = None
    if tok_config:
        bos_tok, eos_tok = _token_text(tok_config.get("bos_token")), _token_text(tok_config.get("eos_token"))
    for cand_bos, cand_eos in KNOWN_SPECIALS:
        if eos_tok is None and cand_eos and tok.token_to_id(cand_eos) is not None:
            eos_tok = cand_eos
            if bos_tok is None and cand_bos and tok.token_to_id(cand_bos) is not None:
                bos_tok = cand_bos
    bos_id = tok.token_to_id(bos_tok) if bos_tok else None
    eos_id = tok.token_to_id(eos_tok) if eos_tok else None
    if model_config:
        if eos_id is None and isinstance(model_config.get("eos_token_id"), int):
            eos_id = model_config["eos_token_id"]
            eos_tok = tok.id_to_token(eos_id)
        if bos_id is None and isinstance(model_config.get("bos_token_id"), int):
            bos_id = model_config["bos_token_id"]
            bos_tok = tok.id_to_token(bos_id)
    return bos_tok, bos_id, eos_tok, eos_id


def load_tokenizer(dir_or_uri: str):
    """Load `DIR/tokenizer.json` (local, s3:// or https://) with its config files.

    Returns (tokenizers.Tokenizer, TokenizerInfo). Raises UserError when the file is missing or
    not a tokenizer.
    """
    from tokenizers import Tokenizer

    directory, file_uri = tokenizer_file(dir_or_uri)
    if not storage.exists(file_uri):
        raise UserError(f"{dir_or_uri}: no {TOKENIZER_FILE} there (expected a tokenizer directory)")
    raw = storage.read_bytes(file_uri)
    try:
        tok = Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises bare Exception subclasses
        raise UserError(f"{file_uri}: not a Hugging Face tokenizer.json: {exc}") from None
    tok_config = _read_json_if_exists(storage.join(directory, TOKENIZER_CONFIG_FILE))
    model_config = _read_json_if_exists(storage.join(directory, "config.json"))
    bos_tok, bos_id, eos_tok, eos_id = _resolve_specials(tok, tok_config, model_config)
    info = TokenizerInfo(
        sha256=hashlib.sha256(raw).hexdigest(),
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        bos_id=bos_id,
        eos_id=eos_id,
        path=str(directory),
        bos_token=bos_tok,
        eos_token=eos_tok,
    )
    return tok, info


def load_hf_tokenizer(dir_or_uri: str):
    """A `transformers.PreTrainedTokenizerFast` with bos/eos set (local directories)."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        raise UserError("a transformers tokenizer needs transformers: pip install 'dsllm[hf]'") from None

    directory, file_uri = tokenizer_file(dir_or_uri)
    _, info = load_tokenizer(dir_or_uri)
    if storage.is_remote(file_uri):
        raise UserError(f"{dir_or_uri}: transformers needs a local directory; download it first")
    return PreTrainedTokenizerFast(tokenizer_file=file_uri, bos_token=info.bos_token, eos_token=info.eos_token)


def tokenizer_summary(info: TokenizerInfo) -> str:
    """One line for logs."""
    return json.dumps(info.to_dict(), ensure_ascii=False)
