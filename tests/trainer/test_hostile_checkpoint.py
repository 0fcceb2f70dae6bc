"""Hostile checkpoint shards: a safetensors header that claims 100 GB, a shard cut in half and a
bit flipped inside the header are each refused with one clear error (exit 2, no traceback), and
the command's peak RSS stays far below what the header claims."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# VmHWM is this process image's own peak RSS (ru_maxrss would include the forking pytest process)
WRAPPER = (
    "import runpy, sys\n"
    "try:\n"
    "    runpy.run_module('dsllm.jobs.cli', run_name='__main__')\n"
    "finally:\n"
    "    hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
    "    print('peak_rss_mb', int(hwm.split()[1]) / 1024, file=sys.stderr)\n"
)

MUTATIONS = {
    "header_claims_100GB": lambda b: struct.pack("<Q", 100 << 30) + b[8:],
    "truncated": lambda b: b[: len(b) // 2],
    "bit_flip_in_header": lambda b: b[:200] + bytes([b[200] ^ 0xFF]) + b[201:],
}


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_corrupt_shard_is_refused_with_bounded_memory(tiny_llama, tmp_path, kind):
    folder, _ = tiny_llama()
    shard = folder / "model.safetensors"
    shard.write_bytes(MUTATIONS[kind](shard.read_bytes()))
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, "checkpoint", "export", str(folder), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("dsllm checkpoint: error:")]
    assert len(lines) == 1 and "model.safetensors" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    peak = float(proc.stderr.rsplit("peak_rss_mb", 1)[1])
    assert peak < 1024, peak  # nothing near the claimed size was allocated
    assert not (tmp_path / "out" / "model.safetensors").exists()
