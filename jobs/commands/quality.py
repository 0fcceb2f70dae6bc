"""Train a fastText quality classifier: `dsllm quality train --positive P --negative N --output MODEL`.

P and N are Parquet files/directories (column `text`), JSONL files (field `text`), a `.txt` file
(one document per line) or a directory of `.txt` files (one document per file); local, s3:// or
https://. Use the model in curate with `--set quality_model.model=MODEL` (and optionally
`--set quality_model.threshold=0.5` to drop documents scored below it).
"""

from __future__ import annotations

from dsllm import console
from dsllm.jobs.commands.common import add_config_flags


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    t = sub.add_parser("train", help="train a fastText classifier from positive and negative text")
    t.add_argument("--positive", required=True, action="append", metavar="P", help="high-quality text (repeatable)")
    t.add_argument("--negative", required=True, action="append", metavar="N", help="low-quality text (repeatable)")
    t.add_argument(
        "--output", "-o", required=True, metavar="MODEL", help="where to write the model (.bin; local or s3://)"
    )
    add_config_flags(t)


def run(args) -> int:
    import json

    from dsllm.config import apply_overrides, from_dict, load_toml
    from dsllm.curation.quality import QualityTrainConfig, read_texts, train_quality_model
    from dsllm.errors import UserError

    if args.action != "train":
        raise UserError("usage: dsllm quality train --positive P --negative N --output MODEL")
    data = load_toml(args.config) if args.config else {}
    cfg = from_dict(QualityTrainConfig, apply_overrides(data, args.overrides))
    positive = [t for p in args.positive for t in read_texts(p)]
    negative = [t for n in args.negative for t in read_texts(n)]
    metrics = train_quality_model(positive, negative, args.output, cfg)
    console.out(json.dumps({"model": args.output, **metrics}))
    return 0
