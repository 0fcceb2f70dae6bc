"""Import of a ~1 GB checkpoint, from disk and from a local S3 server, against a raw read.

Anchors (measured in the same run, same bytes):
- disk: `safetensors.torch.load_file(model.safetensors)` — the raw safetensors read into tensors;
- S3: boto3's `download_file` (s3transfer, 8 threads of 64 MiB ranged GETs, like ours) followed by
  that same raw read.

Ours:
- disk: `trainer.checkpoints.hf.resolve_checkpoint` + `build_model` (meta device, `readinto` straight into the
  parameters, header and shape checks);
- S3, cached: the same from an s3:// prefix into an empty cache (parallel verified ranged fetch
  first, `stream=False`);
- S3, streamed (the default for safetensors): header probe, then parallel ranged GETs written
  straight into the parameters' storage, verified against the multipart ETag; no local copy.

Every measurement runs in a fresh subprocess; peak RSS is `resource.getrusage(RUSAGE_SELF).ru_maxrss`
of that subprocess, reported against the checkpoint's size, with the RSS of the interpreter after
`import torch` (before any load) shown separately. Medians over `--runs` runs.

    python bench/bench_import.py [--gb 1.0] [--runs 3] [--disk-only | --s3-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _config(gb: float) -> dict:
    """A LlamaConfig of about `gb` GB in float32 (hidden 1024, SwiGLU 2816, vocab 32000)."""
    d, f, v = 1024, 2816, 32000
    per_layer = (4 * d * d + 3 * d * f + 2 * d) * 4
    layers = max(1, round((gb * 1e9 - 2 * v * d * 4) / per_layer))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": v,
        "hidden_size": d,
        "intermediate_size": f,
        "num_hidden_layers": layers,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "bos_token_id": 100000,
        "eos_token_id": 100001,
        "torch_dtype": "float32",
    }


def make_checkpoint(folder: Path, gb: float) -> int:
    import torch
    from safetensors.torch import save_file

    from dsllm.trainer.checkpoints.hf import expected_shapes
    from dsllm.trainer.config import ModelConfig

    cfg = _config(gb)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    g = torch.Generator().manual_seed(0)
    tensors = {n: torch.randn(s, generator=g) * 0.02 for n, s in expected_shapes(ModelConfig.from_hf_dict(cfg)).items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return (folder / "model.safetensors").stat().st_size


def _load_file_touched(path: str) -> int:
    """safetensors' own loader; its tensors are mmap-backed, so every one is reduced once to make
    the bytes actually come off the file (otherwise nothing would be read)."""
    import torch
    from safetensors.torch import load_file

    sd = load_file(path)
    for t in sd.values():
        torch.sum(t.view(-1)[:: max(1, 4096 // t.element_size())])  # one element per page
    return sum(t.numel() for t in sd.values())


def child(mode: str, src: str, cache: str) -> None:
    """One measurement in this (fresh) process; prints JSON."""
    import torch  # noqa: F401 - baseline RSS includes torch, as any real import does

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if mode == "raw-bytes":
        size = os.path.getsize(src)
        buf = bytearray(size)  # the floor: the file's bytes into one buffer
        with open(src, "rb", buffering=0) as f:
            view, got = memoryview(buf), 0
            while got < size:
                got += f.readinto(view[got:])
        n = size
    elif mode == "raw-disk":
        n = _load_file_touched(src)
    elif mode == "raw-s3":
        from dsllm import storage

        bucket, key = storage.split_s3(src + "/model.safetensors")
        local = Path(cache) / "model.safetensors"
        local.parent.mkdir(parents=True, exist_ok=True)
        from boto3.s3.transfer import TransferConfig

        # same request count and parallelism as ours (64 MiB ranges, 8 threads): moto's server
        # reads the whole object for every GET, so the number of requests dominates otherwise
        cfg = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=8)
        storage.s3_client().download_file(bucket, key, str(local), ExtraArgs={"RequestPayer": "requester"}, Config=cfg)
        n = _load_file_touched(str(local))
    else:
        from dsllm.trainer.checkpoints import hf

        ckpt = hf.resolve_checkpoint(src, cache=Path(cache), stream=mode == "import-s3-stream")
        assert ckpt.streamed == (mode == "import-s3-stream")
        model = hf.build_model(ckpt)
        n = sum(p.numel() for p in model.parameters())
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"wall": wall, "peak": peak, "base": base, "numel": n}))


def measure(mode: str, src: str, runs: int, tmp: Path) -> dict:
    out = []
    for i in range(runs):
        cache = tmp / f"cache-{mode}-{i}"
        shutil.rmtree(cache, ignore_errors=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--src", src, "--cache", str(cache)],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            check=False,
        )
        if proc.returncode:
            raise SystemExit(f"{mode} failed:\n{proc.stderr}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        shutil.rmtree(cache, ignore_errors=True)
    return {k: statistics.median(r[k] for r in out) for k in ("wall", "peak", "base")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--disk-only", action="store_true", help="skip the S3 rows")
    ap.add_argument("--s3-only", action="store_true", help="skip the disk rows")
    ap.add_argument("--child", default=None)
    ap.add_argument("--src", default=None)
    ap.add_argument("--cache", default=None)
    args = ap.parse_args()
    if args.child == "make":
        make_checkpoint(Path(args.src), float(args.cache))
        return None
    if args.child:
        return child(args.child, args.src, args.cache)

    # The checkpoint is written and the S3 server runs in processes of their own: a child's
    # ru_maxrss starts from its parent's RSS at fork, so this parent must stay small.
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    server = None
    try:
        folder = tmp / "ckpt"
        subprocess.run(
            [sys.executable, __file__, "--child", "make", "--src", str(folder), "--cache", str(args.gb)], check=True
        )
        size = (folder / "model.safetensors").stat().st_size
        st = str(folder / "model.safetensors")
        rows = (
            []
            if args.s3_only
            else [
                ("disk", "raw bytes (readinto one buffer)", measure("raw-bytes", st, args.runs, tmp)),
                (
                    "disk",
                    "raw safetensors read (load_file, every page touched)",
                    measure("raw-disk", st, args.runs, tmp),
                ),
                ("disk", "dsllm import (resolve + build_model)", measure("import-disk", str(folder), args.runs, tmp)),
            ]
        )
        if not args.disk_only:
            server, port = _start_moto()
            _s3_rows(folder, rows, args.runs, tmp, port)
        _print(rows, size, args)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def _start_moto() -> tuple[subprocess.Popen, int]:
    port = 45000 + os.getpid() % 1000
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from moto.server import main; main(sys.argv[1:])",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, port


def _s3_rows(folder: Path, rows: list, runs: int, tmp: Path, port: int) -> None:
    """Upload the checkpoint to moto's server (own process), then measure the S3 rows."""
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    from boto3.s3.transfer import TransferConfig

    from dsllm import storage

    client = storage.s3_client()
    for _ in range(100):
        try:
            client.create_bucket(Bucket="bench")
            break
        except Exception:  # noqa: BLE001 - the server is still starting
            time.sleep(0.3)
    for f in folder.iterdir():  # 64 MiB parts, as `aws s3 cp` would with a large chunk size
        client.upload_file(
            str(f),
            "bench",
            f"ckpt/step-1000/{f.name}",
            Config=TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20),
        )
    s3 = "s3://bench/ckpt"
    # the three S3 modes run interleaved (one run of each per round), so load changes on the
    # shared machine hit them alike
    modes = [
        ("boto3 download_file (64 MiB × 8) + load_file", "raw-s3", s3 + "/step-1000"),
        ("dsllm import, cached (fetch to cache + build_model)", "import-s3", s3),
        ("dsllm import, streamed (ranged GETs into the parameters)", "import-s3-stream", s3),
    ]
    got: dict[str, list[dict]] = {m: [] for _, m, _ in modes}
    for i in range(runs):
        for _, mode, src in modes:
            got[mode].append(measure(mode, src, 1, tmp / str(i)))
    rows += [
        ("S3", what, {k: statistics.median(r[k] for r in got[mode]) for k in ("wall", "peak", "base")})
        for what, mode, _ in modes
    ]


def _print(rows: list, size: int, args) -> None:
    print(
        f"checkpoint: {size / 1e9:.2f} GB float32 safetensors ({_config(args.gb)['num_hidden_layers']} layers), "
        f"median of {args.runs} runs, each in a fresh process"
    )
    print("| source | what | wall s | MB/s | peak RSS GB | peak RSS / size | RSS after `import torch` GB |")
    print("|---|---|---|---|---|---|---|")
    for where, what, r in rows:
        print(
            f"| {where} | {what} | {r['wall']:.2f} | {size / r['wall'] / 1e6:.0f} | {r['peak'] / 1e9:.2f} | "
            f"{r['peak'] / size:.2f}× | {r['base'] / 1e9:.2f} |"
        )


if __name__ == "__main__":
    main()
