"""DeepSeek-faithful byte-level BPE tokenizer: `train` on curated shards, `from-gguf` to convert a
GGUF vocabulary (e.g. DeepSeek's), `eval` for bytes per token side by side. Knobs live in
configs/tokenizer.toml ([train], [eval]); --set KEY=VALUE overrides them."""

from __future__ import annotations

import argparse
import json

from dsllm import console
from dsllm.jobs.commands.common import add_config_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND")
    t = sub.add_parser(
        "train",
        help="train the byte-level BPE tokenizer on curated shards",
        description="Train DeepSeek's byte-level BPE on a language-balanced sample of "
        "curated Parquet shards (local or s3://).",
    )
    t.add_argument(
        "shards", nargs="+", metavar="SHARDS", help="curated output dir, shard dir, Parquet file, glob or s3:// prefix"
    )
    t.add_argument("--output", required=True, metavar="DIR", help="tokenizer directory to write")
    t.add_argument("--vocab-size", type=int, default=None, help="ordinary tokens (default 100000)")
    t.add_argument(
        "--sample-bytes",
        type=float,
        default=None,
        help="UTF-8 bytes of text to sample (e.g. 2e9); default from the config",
    )
    t.add_argument("--max-token-length", type=int, default=None, help="longest token in byte symbols")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_flags(t)

    g = sub.add_parser(
        "from-gguf",
        help="a tokenizer.json from a GGUF vocabulary (e.g. DeepSeek's)",
        description="Convert a GGUF vocabulary (llama.cpp format) into tokenizer.json + "
        "tokenizer_config.json with DeepSeek's pre-tokenizer.",
    )
    g.add_argument("file", metavar="FILE", help="GGUF file (local, s3:// or https://)")
    g.add_argument("--output", required=True, metavar="DIR")
    g.add_argument(
        "--pre-tokenizer",
        default=None,
        choices=["deepseek-llm"],
        help="use these pre-tokenization rules whatever the GGUF says",
    )

    e = sub.add_parser(
        "eval",
        help="bytes per token by language, side by side",
        description="Bytes per token of one or two tokenizers, by source and language.",
    )
    e.add_argument("dirs", nargs="+", metavar="DIR", help="one or two tokenizer directories")
    e.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="PATH",
        help="curated shards (dir, file, glob, s3://) or a UTF-8 text file; repeatable",
    )
    e.add_argument(
        "--max-bytes", type=float, default=None, help="text per (source, language) to encode; default from the config"
    )
    e.add_argument(
        "--text-lang", default=None, metavar="LANG", help="language label of plain-text sources (default: unknown)"
    )
    e.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_config_flags(e)


def run(args) -> int:
    from dsllm.errors import UserError

    command = getattr(args, "tokenizer_command", None)
    if command == "train":
        return _train(args)
    if command == "from-gguf":
        return _from_gguf(args)
    if command == "eval":
        return _eval(args)
    raise UserError("expected a subcommand: train, from-gguf or eval (see dsllm tokenizer --help)")


def _section_overrides(args, section: str, extra: dict) -> list[str]:
    """--set overrides restricted to one TOML section, plus flag values (flags win)."""
    out = []
    for item in args.overrides:
        key, _, value = item.partition("=")
        out.append(f"{key.removeprefix(section + '.')}={value}")
    out += [f"{k}={v}" for k, v in extra.items() if v is not None]
    return out


SECTIONS = ("train", "eval")


def _load(cls, args, section: str, extra: dict):
    """The `section` config of tokenizer.toml (or --config FILE), strictly: a top-level key or section
    other than [train] / [eval], or an unknown key in either, is an error, as in every config."""
    from dsllm.config import CONFIG_DIR, apply_overrides, from_dict, load_toml
    from dsllm.errors import UserError
    from dsllm.tokenizer.evaluate import EvalConfig
    from dsllm.tokenizer.train import TokenizerTrainConfig

    path = args.config or (CONFIG_DIR / "tokenizer.toml")
    data = load_toml(path) if (args.config or path.exists()) else {}
    for key, value in data.items():
        if key not in SECTIONS or not isinstance(value, dict):
            what = f"section [{key}]" if isinstance(value, dict) else f"top-level key {key!r}"
            raise UserError(
                f"config {path}: unknown {what}; a tokenizer config has the sections [train] and [eval] only"
            )
    for name, other in (("train", TokenizerTrainConfig), ("eval", EvalConfig)):
        if name != section and name in data:
            from_dict(other, data[name], name)  # a typo in the other section is an error too
    return from_dict(cls, apply_overrides(data.get(section, {}), _section_overrides(args, section, extra)), section)


def _train(args) -> int:
    from dsllm.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    sample = int(args.sample_bytes) if args.sample_bytes is not None else None
    cfg = _load(
        TokenizerTrainConfig,
        args,
        "train",
        {"vocab_size": args.vocab_size, "sample_bytes": sample, "max_token_length": args.max_token_length},
    )
    record = train_tokenizer(args.shards, args.output, cfg, progress=not args.quiet)
    s = record["sample"]
    verb = "already trained" if record.get("resumed") else f"trained in {record['train_seconds']:.1f} s"
    langs = ", ".join(f"{k} {v['bytes'] / 1e6:.1f} MB" for k, v in s["by_lang"].items())
    console.out(
        f"tokenizer {args.output}: {verb}; vocab {record['vocab_size']} (bos {record['bos_id']}, "
        f"eos {record['eos_id']}); sample {s['documents']} documents, {s['bytes'] / 1e6:.1f} MB ({langs})"
    )
    if record.get("warning"):
        console.warn(record["warning"])
    return 0


def _from_gguf(args) -> int:
    from dsllm.tokenizer.gguf import from_gguf

    s = from_gguf(args.file, args.output, args.pre_tokenizer)
    console.out(
        f"tokenizer {args.output}: {s['vocab_size']} tokens from {args.file} ({s['merges']} merges, "
        f"bos {s['bos_id']}, eos {s['eos_id']}, {s['added_non_special']} non-special added tokens)"
    )
    return 0


def _eval(args) -> int:
    from dsllm.errors import UserError
    from dsllm.tokenizer.evaluate import EvalConfig, evaluate, format_table

    if len(args.dirs) > 2:
        raise UserError(f"at most two tokenizer directories, got {len(args.dirs)}")
    max_bytes = int(args.max_bytes) if args.max_bytes is not None else None
    cfg = _load(EvalConfig, args, "eval", {"max_bytes": max_bytes, "text_lang": args.text_lang})
    rows = evaluate(args.dirs, args.data, cfg)
    if args.json:
        console.out(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        console.out(format_table(rows, args.dirs))
    return 0
