"""DeepSeek LLM's tokenizer definition, assembled from explicit `tokenizers` parts.

    normalizer      none (DeepSeek's is an empty Sequence)
    pre-tokenizer   five Split(Isolated) regexes — single CR/LF; optional space + a run of cased
                    letters; optional space + a run of ASCII/fullwidth punctuation and quotes;
                    trailing whitespace; runs of CJK/kana/Hangul — then Digits(individual_digits),
                    then ByteLevel(add_prefix_space=False, use_regex=False)
    model           byte-level BPE (GPT-2's bytes_to_unicode alphabet)
    decoder         ByteLevel
    post-processor  BOS prepended (DeepSeek's tokenizer_config: add_bos_token true, add_eos_token false)
    specials        BOS <｜begin▁of▁sentence｜>, EOS <｜end▁of▁sentence｜> (bars U+FF5C, ▁ U+2581)

The regexes are transcribed from deepseek-llm-7b-base's tokenizer.json (see
shared/data/deepseek-tokenizer/pre_tokenizer.json; a test checks they serialize identically).
`new_tokenizer()` is the untrained tokenizer that `train.py` trains; `build_tokenizer()` assembles
one from a known vocabulary and merges (`gguf.py`).
"""

from __future__ import annotations

import dataclasses
import json

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
MODEL_MAX_LENGTH = 4096

# The five Split patterns, in order (Python escapes; \s is the regex class).
NEWLINE = "[\r\n]"
LETTERS = (
    "\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1"
    "\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5"
    "\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a"
    "\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d"
    "\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3"
    "\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115"
    "\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf"
    "\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
    "\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)
PUNCTUATION = "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"
TRAILING_SPACE = "\\s+$"
CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
SPLIT_PATTERNS = (NEWLINE, LETTERS, PUNCTUATION, TRAILING_SPACE, CJK)


def pre_tokenizer():
    """DeepSeek's exact pre-tokenizer sequence."""
    from tokenizers import Regex, pre_tokenizers

    splits = [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in SPLIT_PATTERNS]
    return pre_tokenizers.Sequence(
        [
            *splits,
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )


def byte_alphabet() -> list[str]:
    """The 256 byte-level symbols (GPT-2's bytes_to_unicode), in byte order 0x00..0xFF."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def bos_post_processor(
    bos_id: int, add_bos: bool = True, eos_id: int | None = None, add_eos: bool = False, bos: str = BOS, eos: str = EOS
):
    """BOS (and optionally EOS) around every sequence, as LlamaTokenizerFast does with add_bos_token."""
    from tokenizers import processors

    pre = f"{bos}:0 " if add_bos else ""
    post = f" {eos}:0" if add_eos else ""
    specials = [(bos, bos_id)] if add_bos else []
    if add_eos:
        specials.append((eos, eos_id))
    return processors.TemplateProcessing(
        single=f"{pre}$A:0{post}", pair=f"{pre}$A:0{post} {pre}$B:1{post}", special_tokens=specials
    )


@dataclasses.dataclass(frozen=True)
class AddedTokenSpec:
    """An added token at a fixed id (`special` tokens are skipped by decode(skip_special_tokens))."""

    id: int
    content: str
    special: bool


def assemble(model):
    """Put DeepSeek's normalizer, pre-tokenizer, decoder and post-processor around a BPE model."""
    from tokenizers import Tokenizer, decoders, normalizers

    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizer()
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    return tok


def new_tokenizer():
    """The untrained tokenizer `train.py` trains: DeepSeek's parts around an empty byte-level BPE."""
    from tokenizers import models

    return assemble(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))


def add_specials(
    tok,
    added: list[AddedTokenSpec] | None = None,
    add_bos: bool = True,
    add_eos: bool = False,
    bos: str = BOS,
    eos: str = EOS,
):
    """Add BOS/EOS (and any other added tokens) at the ids given, then the BOS post-processor.

    Without `added`, BOS and EOS take the next two ids after the model's vocabulary, which is
    DeepSeek's layout (100000 and 100001 after 100,000 ordinary tokens).
    """
    from tokenizers import AddedToken

    n = tok.get_vocab_size(with_added_tokens=True)
    added = added or [AddedTokenSpec(n, bos, True), AddedTokenSpec(n + 1, eos, True)]
    for spec in sorted(added, key=lambda s: s.id):
        at = AddedToken(
            spec.content,
            single_word=False,
            lstrip=False,
            rstrip=False,
            normalized=not spec.special,
            special=spec.special,
        )
        if spec.special:
            tok.add_special_tokens([at])
        else:
            tok.add_tokens([at])
        got = tok.token_to_id(spec.content)
        if got != spec.id:
            raise ValueError(f"added token {spec.content!r} got id {got}, expected {spec.id}")
    tok.post_processor = bos_post_processor(tok.token_to_id(bos), add_bos, tok.token_to_id(eos), add_eos, bos, eos)
    return tok


def build_tokenizer(
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    added: list[AddedTokenSpec] | None = None,
    add_bos: bool = True,
    add_eos: bool = False,
    bos: str = BOS,
    eos: str = EOS,
):
    """A DeepSeek-style tokenizer from a known vocabulary and merges (e.g. read from a GGUF)."""
    from tokenizers import models

    bpe = models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False)
    return add_specials(assemble(bpe), added, add_bos, add_eos, bos, eos)


def tokenizer_config(
    add_bos: bool = True,
    add_eos: bool = False,
    model_max_length: int = MODEL_MAX_LENGTH,
    extra: dict | None = None,
    bos: str = BOS,
    eos: str = EOS,
) -> dict:
    """tokenizer_config.json as in deepseek-llm-7b-base (class: the generic fast tokenizer, so that
    transformers uses tokenizer.json as it is rather than rebuilding a Llama tokenizer)."""

    def token(content):
        return {
            "__type": "AddedToken",
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }

    cfg = {
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "bos_token": token(bos),
        "eos_token": token(eos),
        "pad_token": token(eos),
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    cfg.update(extra or {})
    return cfg


def save_tokenizer_dir(tok, out_dir: str, config: dict) -> None:
    """Write DIR/tokenizer.json and DIR/tokenizer_config.json atomically (local or s3://)."""
    from dsllm import storage

    storage.write_text(storage.join(out_dir, "tokenizer.json"), tok.to_str(pretty=True) + "\n")
    storage.write_text(
        storage.join(out_dir, "tokenizer_config.json"), json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    )
