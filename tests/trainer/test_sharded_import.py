"""Importing a Hugging Face checkpoint (safetensors or `.bin`) into an FSDP2-sharded model: each of
two gloo ranks reads only its own shards' rows, and the gathered weights equal the ones
`transformers` saved. Bytes read are counted by the kernel (/proc/self/io `rchar`), not by us."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import free_port


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _import_worker(rank: int, world: int, port: int, folders: dict, out: dict) -> None:
    import torch.distributed as dist

    from dsllm.trainer.checkpoints import hf
    from dsllm.trainer.parallelize import apply_fsdp, build_model, materialize

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        got = {}
        for fmt, folder in folders.items():
            ckpt = hf.resolve_checkpoint(folder)
            model = build_model(ckpt.config, seed=0, meta=True)
            apply_fsdp(model)
            materialize(model, "cpu")
            before = _rchar()
            hf.load_into(model, ckpt)
            read = _rchar() - before
            local = {n: p.to_local().detach().clone() for n, p in model.named_parameters()}
            full = {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}
            got[fmt] = (read, local, full)
        out[rank] = got
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io to count bytes read")
def test_hf_import_into_two_fsdp_ranks_reads_each_ranks_shard_only(tiny_llama):
    import torch.multiprocessing as mp

    # big enough that the weights dwarf any other file the process reads meanwhile (~11 MB)
    st_folder, ref = tiny_llama(fmt="safetensors", vocab=4099, hidden=256, layers=2, name="st")
    bin_folder, ref_bin = tiny_llama(fmt="bin", vocab=4099, hidden=256, layers=2, name="bin", shards=2, seed=1)
    size = os.path.getsize(st_folder / "model.safetensors")
    manager = mp.Manager()
    out = manager.dict()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    folders = {"safetensors": str(st_folder), "bin": str(bin_folder)}
    mp.start_processes(_import_worker, args=(2, free_port(), folders, out), nprocs=2, start_method="spawn")

    for fmt, model in (("safetensors", ref), ("bin", ref_bin)):
        want = {n: t for n, t in model.state_dict().items() if "rotary" not in n}
        read0, local0, full0 = out[0][fmt]
        read1, local1, full1 = out[1][fmt]
        assert set(full0) == set(want)
        for name, w in want.items():
            assert torch.equal(full0[name], w) and torch.equal(full1[name], w), (fmt, name)
            # rank 0 holds the first ⌈n/2⌉ rows (vocab 4099: uneven), rank 1 the rest
            assert local0[name].shape[0] == -(-w.shape[0] // 2), name
            assert torch.equal(torch.cat([local0[name], local1[name]]), w), name
        if fmt == "safetensors":
            # each rank read about half the file (its rows + the header), together all of it
            for read in (read0, read1):
                assert read < 0.55 * size, (read, size)
            assert read0 + read1 >= size - 64 * 1024, (read0, read1, size)
