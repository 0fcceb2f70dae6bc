"""`dsllm tokenizer from-gguf`: a Hugging Face tokenizer directory from a GGUF vocabulary.

The GGUF is read with llama.cpp's own Python reader (the `gguf` package: memory-mapped, it knows
every value type and version), so no GGUF parsing is hand-written here.

Mapping of llama.cpp token types (tokenizer.ggml.token_type):
  NORMAL        → BPE vocabulary (ids must be 0..n-1; merges give id = alphabet size + rank)
  CONTROL       → special added tokens (BOS, EOS)
  USER_DEFINED  → non-special added tokens. DeepSeek's 13 byte symbols that valid UTF-8 never
                  contains (0xC0, 0xC1, 0xF5-0xFF → ø ö ú ÿ õ ÷ û ý À ù Á þ ü) are of this type,
                  exactly as in deepseek-llm-7b-base's tokenizer.json. Since added tokens match raw
                  text, "München" encodes its "ü" as the *byte symbol* 0xFC and decodes to
                  "M\ufffdnchen": reproduced on purpose, because DeepSeek's checkpoints were trained
                  on these ids. (Tokenizers we train keep all 256 bytes in the base alphabet.)
                  `[PADnnnnn]` USER_DEFINED entries are llama.cpp's padding of the vocabulary to the
                  model's embedding size (102,400), not tokens: they are dropped.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile

from dsllm import storage
from dsllm.errors import UserError
from dsllm.tokenizer import deepseek

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
PAD_TOKEN = re.compile(r"\[PAD\d+\]")
KNOWN_PRE_TOKENIZERS = ("deepseek-llm",)


@dataclasses.dataclass
class GgufVocab:
    """What a GGUF says about its tokenizer."""

    model: str
    pre: str
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    add_bos: bool
    add_eos: bool
    context_length: int | None
    name: str


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def read_gguf_vocab(path: str) -> GgufVocab:
    """Read the tokenizer keys of a local GGUF file."""
    try:
        import gguf
    except ImportError:
        raise UserError("reading GGUF needs the gguf package: pip install 'dsllm[gguf]'") from None
    try:
        reader = gguf.GGUFReader(path, "r")
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: not a readable GGUF file: {exc}") from None
    if "tokenizer.ggml.tokens" not in reader.fields:
        raise UserError(f"{path}: GGUF holds no tokenizer (no tokenizer.ggml.tokens)")
    arch = _field(reader, "general.architecture", "")
    return GgufVocab(
        model=_field(reader, "tokenizer.ggml.model", ""),
        pre=_field(reader, "tokenizer.ggml.pre", ""),
        tokens=list(_field(reader, "tokenizer.ggml.tokens")),
        token_types=[int(t) for t in _field(reader, "tokenizer.ggml.token_type", [])],
        merges=list(_field(reader, "tokenizer.ggml.merges", [])),
        bos_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        add_bos=bool(_field(reader, "tokenizer.ggml.add_bos_token", True)),
        add_eos=bool(_field(reader, "tokenizer.ggml.add_eos_token", False)),
        context_length=_field(reader, f"{arch}.context_length"),
        name=_field(reader, "general.name", ""),
    )


def split_vocab(v: GgufVocab, source: str) -> tuple[dict[str, int], list[deepseek.AddedTokenSpec]]:
    """(BPE vocabulary, added tokens) from the GGUF token list and types."""
    if len(v.token_types) != len(v.tokens):
        raise UserError(f"{source}: {len(v.tokens)} tokens but {len(v.token_types)} token types")
    vocab, added = {}, []
    for i, (text, ttype) in enumerate(zip(v.tokens, v.token_types)):
        if ttype == NORMAL:
            if added:
                raise UserError(f"{source}: normal token {i} {text!r} after added tokens; unsupported layout")
            vocab[text] = i
        elif ttype == CONTROL:
            added.append(deepseek.AddedTokenSpec(i, text, special=True))
        elif ttype == USER_DEFINED and PAD_TOKEN.fullmatch(text):
            continue
        elif ttype == USER_DEFINED:
            added.append(deepseek.AddedTokenSpec(i, text, special=False))
        elif ttype in (UNUSED, UNKNOWN):
            continue
        else:
            raise UserError(f"{source}: token {i} {text!r} has type {ttype}, unsupported for byte-level BPE")
    expected = list(range(len(vocab)))
    if sorted(vocab.values()) != expected:
        raise UserError(f"{source}: duplicate normal tokens; not a byte-level BPE vocabulary")
    return vocab, added


def special_tokens(v: GgufVocab, added: list[deepseek.AddedTokenSpec], source: str) -> tuple[str, str]:
    """(BOS text, EOS text): the GGUF's ids must name CONTROL tokens."""
    control = {a.id: a.content for a in added if a.special}
    if v.bos_id not in control or v.eos_id not in control:
        raise UserError(f"{source}: BOS id {v.bos_id} / EOS id {v.eos_id} are not control tokens")
    return control[v.bos_id], control[v.eos_id]


def gguf_to_tokenizer(v: GgufVocab, source: str, pre_tokenizer: str | None = None):
    """A `tokenizers.Tokenizer` with DeepSeek's parts around the GGUF's vocabulary and merges."""
    if v.model != "gpt2":
        raise UserError(f"{source}: tokenizer model {v.model!r} is not byte-level BPE ('gpt2')")
    pre = pre_tokenizer or v.pre
    if pre not in KNOWN_PRE_TOKENIZERS:
        raise UserError(
            f"{source}: pre-tokenizer {v.pre!r} is not supported (known: "
            f"{', '.join(KNOWN_PRE_TOKENIZERS)}); pass --pre-tokenizer deepseek-llm to use DeepSeek's rules"
        )
    vocab, added = split_vocab(v, source)
    bos, eos = special_tokens(v, added, source)
    merges = [tuple(m.split(" ")) for m in v.merges]
    if any(len(m) != 2 for m in merges):
        raise UserError(f"{source}: malformed merge (expected 'left right')")
    try:
        return deepseek.build_tokenizer(vocab, merges, added, v.add_bos, v.add_eos, bos, eos)
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exceptions for bad vocabularies
        raise UserError(f"{source}: vocabulary/merges rejected by tokenizers: {exc}") from None


def from_gguf(src: str, out_dir: str, pre_tokenizer: str | None = None) -> dict:
    """Convert a GGUF (local, s3:// or https://) into OUT/tokenizer.json + tokenizer_config.json.

    Returns a summary dict (vocab size, BOS/EOS ids, added tokens).
    """
    with tempfile.TemporaryDirectory(prefix="dsllm-gguf-") as tmp:
        local = src
        if storage.is_remote(src):
            local = storage.download(src, os.path.join(tmp, "vocab.gguf"))
        elif not os.path.isfile(src):
            raise UserError(f"{src}: no such file")
        vocab = read_gguf_vocab(local)
    tok = gguf_to_tokenizer(vocab, src, pre_tokenizer)
    max_len = int(vocab.context_length or deepseek.MODEL_MAX_LENGTH)
    bos, eos = tok.id_to_token(vocab.bos_id), tok.id_to_token(vocab.eos_id)
    cfg = deepseek.tokenizer_config(vocab.add_bos, vocab.add_eos, max_len, bos=bos, eos=eos)
    deepseek.save_tokenizer_dir(tok, out_dir, cfg)
    return {
        "source": src,
        "name": vocab.name,
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "bos_id": vocab.bos_id,
        "eos_id": vocab.eos_id,
        "merges": len(vocab.merges),
        "added_non_special": sum(
            t == USER_DEFINED and not PAD_TOKEN.fullmatch(s) for s, t in zip(vocab.tokens, vocab.token_types)
        ),
    }
