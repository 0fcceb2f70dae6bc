"""The training loop: exact resume, checkpoints loadable by transformers, metrics, weights-only resume."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dsllm.trainer.checkpoints.native import list_checkpoints
from dsllm.trainer.config import ModelConfig
from dsllm.trainer.train import TrainConfig, train

MODEL = ModelConfig(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=0,
)
FIELDS = {"step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu"}


def write_packed(
    root: Path,
    rows: int = 64,
    seq_len: int = 32,
    vocab: int = 90,
    eos: int = 0,
    row_group_rows: int = 8,
    one_document: bool = False,
) -> str:
    """PACKED (the layout of INTERFACES.md) of learnable documents: counting runs `a, a+k, a+2k...`
    (mod vocab) joined with EOS, so a model can lower its loss in a few steps. `one_document`:
    the same tokens, but every row declared one document (doc_offsets [0])."""
    rng = np.random.default_rng(0)
    ids = np.empty((rows, seq_len), dtype=np.int32)
    offsets = []
    for r in range(rows):
        row, offs = [], []
        while len(row) < seq_len:
            offs.append(len(row))
            a, k, n = rng.integers(1, vocab), rng.integers(1, 4), rng.integers(6, 20)
            row += [int(1 + (a + i * k) % (vocab - 1)) for i in range(n)] + [eos]
        ids[r] = row[:seq_len]
        offsets.append([0] if one_document else offs)
    root.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(ids.reshape(-1)), seq_len),
            "doc_offsets": pa.array(offsets, pa.list_(pa.int32())),
            "n_tokens": pa.array([seq_len] * rows, pa.int32()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_rows, compression="zstd")
    (root / "part-00000.parquet").write_bytes(buf.getvalue())
    manifest = {
        "kind": "packed",
        "seq_len": seq_len,
        "rows": rows,
        "tokens": rows * seq_len,
        "pad_tokens": 0,
        "documents": sum(len(o) for o in offsets),
        "row_group_rows": row_group_rows,
        "tokenizer": {"sha256": "", "vocab_size": vocab, "eos_id": eos, "bos_id": None, "path": ""},
        "bos_policy": "none",
        "shards": [
            {
                "path": "part-00000.parquet",
                "rows": rows,
                "bytes": len(buf.getvalue()),
                "sha256": "",
                "tokens": rows * seq_len,
            }
        ],
        "source_shards": [],
        "config": {},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return str(root)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("packed") / "data")


def cfg(**kw) -> TrainConfig:
    base = dict(
        batch_size=8,
        micro_batch_size=4,
        max_steps=6,
        precision="fp32",
        eval_every=3,
        eval_rows=4,
        checkpoint_every_steps=3,
        checkpoint_every_minutes=0,
        keep_last=2,
        optim={"lr": 3e-3},
        schedule={"warmup_steps": 2},
    )
    base.update(kw)
    from dsllm.config import from_dict

    return from_dict(TrainConfig, base)


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stop_and_resume_gives_the_same_losses_bitwise(packed, tmp_path, precision):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    # the token budget is fixed so that stopping at step 3 does not move the LR milestones
    sched = {"warmup_steps": 2, "total_tokens": 6 * 8 * 32}
    train(MODEL, cfg(precision=precision, schedule=sched), packed, str(whole), quiet=True)
    train(MODEL, cfg(precision=precision, max_steps=3, schedule=sched), packed, str(parts), quiet=True)
    assert [s for s, _ in losses(parts)] == [1, 2, 3]
    train(MODEL, cfg(precision=precision, schedule=sched), packed, str(parts), quiet=True)  # resumes at 3
    assert losses(parts) == losses(whole)  # exact float equality, every step
    a = (whole / "checkpoints/step-00000006/model.safetensors").read_bytes()
    b = (parts / "checkpoints/step-00000006/model.safetensors").read_bytes()
    assert a == b
    first, last = losses(whole)[0][1], losses(whole)[-1][1]
    assert last < first - 0.3  # it learns


def test_checkpoint_layout_metrics_and_transformers_interop(packed, tmp_path):
    from transformers import LlamaForCausalLM

    run = tmp_path / "run"
    summary = train(MODEL, cfg(max_steps=7, checkpoint_every_steps=2), packed, str(run), quiet=True)
    steps = [p.name for p in list_checkpoints(run)]
    assert steps == ["step-00000006", "step-00000007"]  # keep_last=2 pruned 2 and 4
    assert not list((run / "checkpoints").glob(".tmp-*"))
    ck = run / "checkpoints" / "step-00000007"
    assert sorted(p.name for p in ck.iterdir()) == [
        "SHA256SUMS",
        "config.json",
        "model.safetensors",
        "optimizer.pt",
        "trainer_state.json",
    ]
    state = json.loads((ck / "trainer_state.json").read_text())
    assert state["step"] == 7 and state["tokens"] == 7 * 8 * 32 and state["data"]["sequences_consumed"] == 56
    assert {"torch", "numpy", "python"} <= set(state["rng"])
    assert summary["checkpoint"] == str(ck)
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 8))
    assert all(FIELDS <= set(r) for r in records)
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 for r in records)
    assert [r["step"] for r in records if "val_loss" in r] == [3, 6, 7]
    assert records[0]["lr"] == pytest.approx(3e-3 / 2)  # warmup: step 1 of 2
    assert records[-1]["lr"] == pytest.approx(3e-3 * 0.1)  # last 10% of the token budget
    # transformers loads the folder as it is and computes the same logits
    from safetensors.torch import load_file

    from dsllm.trainer.model import Transformer

    ref = LlamaForCausalLM.from_pretrained(str(ck), torch_dtype=torch.float32).eval()
    ours = Transformer(MODEL).eval()
    ours.load_state_dict(load_file(str(ck / "model.safetensors")))
    ids = torch.randint(0, 90, (2, 20))
    with torch.no_grad():
        assert (ref(input_ids=ids).logits - ours(ids)).abs().max().item() <= 1e-5


def test_weights_only_resume_from_a_hugging_face_folder(packed, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_dir = tmp_path / "hf"
    torch.manual_seed(3)
    # a wide init makes the imported weights' loss far from a fresh init's ln(96) ≈ 4.56
    model = LlamaForCausalLM(LlamaConfig(**MODEL.replace(initializer_range=0.5).to_hf_dict("float32")))
    model.save_pretrained(hf_dir)
    (hf_dir / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    run = tmp_path / "run"
    train(
        MODEL,
        cfg(max_steps=8, schedule={"warmup_steps": 2, "rewarmup_steps": 2}),
        packed,
        str(run),
        resume_from=str(hf_dir),
        quiet=True,
    )
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 6, 7, 8]  # positioned at the imported step
    assert records[0]["tokens"] == 5 * 8 * 32
    assert records[0]["lr"] == pytest.approx(3e-3 / 2)  # re-warmup from fresh AdamW moments
    assert records[1]["lr"] == pytest.approx(3e-3)
    assert records[0]["loss"] > 6.0  # the imported model's loss, not a fresh init's ≈ 4.56


def test_on_checkpoint_sees_every_published_step_in_order(packed, tmp_path):
    import threading

    seen = []

    def on_checkpoint(step: int, path: str) -> None:
        p = Path(path)
        seen.append(
            (
                step,
                path,
                p.is_absolute() and (p / "trainer_state.json").is_file(),
                threading.current_thread() is threading.main_thread(),
            )
        )

    run = tmp_path / "run"
    # every step and keep_last=1: each checkpoint must be announced before the next one prunes it
    train(
        MODEL,
        cfg(max_steps=4, checkpoint_every_steps=1, keep_last=1, eval_every=0),
        packed,
        str(run),
        quiet=True,
        on_checkpoint=on_checkpoint,
    )
    assert [s for s, *_ in seen] == [1, 2, 3, 4]
    assert all(ok and main for _, _, ok, main in seen)
    assert seen[-1][1] == str((run / "checkpoints" / "step-00000004").resolve())


def test_document_mask_only_masks(tmp_path):
    many = write_packed(tmp_path / "many", rows=24)
    one = write_packed(tmp_path / "one", rows=24, one_document=True)  # same tokens, no boundaries
    runs = {}
    for data, name in ((many, "many"), (one, "one")):
        for mask in (False, True):
            run = tmp_path / f"{name}-{mask}"
            train(MODEL, cfg(max_steps=2, document_mask=mask, checkpoint_every_steps=0), data, str(run), quiet=True)
            records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            runs[name, mask] = [(r["loss"], r.get("val_loss")) for r in records]
    # without document boundaries the masked run computes the same thing (up to float rounding)
    for (a, va), (b, vb) in zip(runs["one", False], runs["one", True]):
        assert a == pytest.approx(b, rel=1e-5) and (va is None) == (vb is None)
        assert va is None or va == pytest.approx(vb, rel=1e-5)
    assert runs["one", False][0][0] == pytest.approx(runs["many", False][0][0], rel=1e-6)  # same tokens
    # with boundaries, masking changes what tokens see, from the first step
    assert abs(runs["many", True][0][0] - runs["many", False][0][0]) > 1e-4
    assert runs["many", True][-1][1] is not None  # validation is masked the same way and runs


def _rank_main(rank: int, port: int, packed: str, run: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    seen = []
    try:
        train(
            MODEL,
            cfg(max_steps=3, checkpoint_every_steps=1, keep_last=1, eval_every=0),
            packed,
            run,
            quiet=True,
            on_checkpoint=lambda s, p: seen.append([s, p, (Path(p) / "trainer_state.json").is_file()]),
        )
    finally:
        dist.destroy_process_group()
    Path(out).write_text(json.dumps(seen))


def test_on_checkpoint_is_called_on_every_rank_alike(packed, tmp_path):
    # Ray Train's report() is a barrier: every worker must see the same announcements
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = str(tmp_path / "run")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank_main, args=(r, port, packed, run, str(tmp_path / f"seen{r}"))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    seen = [json.loads((tmp_path / f"seen{r}").read_text()) for r in range(2)]
    assert seen[0] == seen[1]
    assert [s for s, _, _ in seen[0]] == [1, 2, 3] and all(ok for _, _, ok in seen[0])
