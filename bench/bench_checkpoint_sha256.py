"""What SHA256SUMS costs a native checkpoint: writing it and checking it on load.

A native step folder of a float32 model of about `--mb` MB is written by `Checkpointer` (blocking);
then loaded with `hf.resolve_checkpoint` + `build_model` twice per run, side by side in one process:
- anchor: the same folder without `SHA256SUMS` (nothing to check, the load as before);
- ours: with `SHA256SUMS` (every file re-hashed, streamed, before loading).
Writing: `Checkpointer._write` total against the hashing part alone (`integrity.sha256_file` of the
files just written). Medians over `--runs`.

    python bench/bench_checkpoint_sha256.py [--mb 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=512)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from dsllm.trainer.checkpoints import hf, integrity
    from dsllm.trainer.checkpoints.native import Checkpointer
    from dsllm.trainer.config import ModelConfig

    hidden, inter, vocab = 1024, 2816, 32000
    per_layer = 4 * (4 * hidden * hidden + 3 * hidden * inter)  # bytes, fp32, q/k/v/o + MLP (approx.)
    layers = max(1, int((args.mb * 1e6 - 2 * 4 * vocab * hidden) // per_layer))
    cfg = ModelConfig.from_hf_dict(
        {
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": hidden,
            "intermediate_size": inter,
            "num_hidden_layers": layers,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "vocab_size": vocab,
            "max_position_embeddings": 512,
        }
    )
    from dsllm.trainer.model import Transformer

    model = Transformer(cfg)
    state = model.state_dict()
    size = sum(t.numel() * t.element_size() for t in state.values())
    tmp = Path(tempfile.mkdtemp(prefix="bench-sha-"))
    write, hash_part, plain, checked = [], [], [], []
    try:
        for _ in range(args.runs):
            run = tmp / "run"
            shutil.rmtree(run, ignore_errors=True)
            ck = Checkpointer(run, every_steps=1, every_minutes=0, keep_last=0)
            t0 = time.perf_counter()
            ck.save(1, state, {}, {"step": 1}, cfg.to_hf_dict(), block=True)
            write.append(time.perf_counter() - t0)
            step = run / "checkpoints" / "step-00000001"
            t0 = time.perf_counter()
            for name in ("config.json", "model.safetensors", "optimizer.pt", "trainer_state.json"):
                integrity.sha256_file(step / name)
            hash_part.append(time.perf_counter() - t0)
            bare = tmp / "bare"
            shutil.rmtree(bare, ignore_errors=True)
            shutil.copytree(step, bare)
            (bare / integrity.SUMS).unlink()
            if not plain:  # warm-up: imports, page cache
                hf.build_model(hf.resolve_checkpoint(str(bare)))
            for folder, out in ((bare, plain), (step, checked)):
                t0 = time.perf_counter()
                m = hf.build_model(hf.resolve_checkpoint(str(folder)))
                out.append(time.perf_counter() - t0)
                del m
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    gb = size / 1e9
    print(f"model {gb:.2f} GB float32 ({layers} layers), medians of {args.runs}")
    print("| what | s | GB/s |")
    print("|---|---|---|")
    print(f"| save (Checkpointer, SHA256SUMS included) | {med(write):.2f} | {gb / med(write):.2f} |")
    print(
        f"| sha256 of the 4 files alone (the hashing part of both) | {med(hash_part):.2f} | {gb / med(hash_part):.2f} |"
    )
    print(f"| load without SHA256SUMS (anchor) | {med(plain):.2f} | {gb / med(plain):.2f} |")
    print(f"| load with SHA256SUMS (verified first) | {med(checked):.2f} | {gb / med(checked):.2f} |")


if __name__ == "__main__":
    main()
