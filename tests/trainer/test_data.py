"""The packed-data loader: order is a pure function of (seed, epoch); any worker count sees the
same global batches; resume mid-epoch at another world size; S3 reads only the row groups needed."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsllm import storage
from dsllm.errors import UserError
from dsllm.trainer.data import DataLoader, FeistelPermutation, GlobalBatchOrder, PackedDataset


def write_packed(
    root: str, shard_rows: list[int], seq_len: int = 8, row_group_rows: int = 4, noise: bool = False
) -> str:
    """PACKED whose global row r starts with token r (so a row names itself); the other tokens are
    r too, or random (incompressible) with `noise`."""
    shards, start = [], 0
    rng = np.random.default_rng(0)
    for i, n in enumerate(shard_rows):
        ids = np.repeat(np.arange(start, start + n, dtype=np.int32), seq_len)
        if noise:
            ids = ids.reshape(n, seq_len)
            ids[:, 1:] = rng.integers(0, 1 << 30, size=(n, seq_len - 1), dtype=np.int32)
            ids = ids.reshape(-1)
        col = pa.FixedSizeListArray.from_arrays(pa.array(ids, pa.int32()), seq_len)
        table = pa.table(
            {
                "input_ids": col,
                "doc_offsets": pa.array([[0, 1 + r % 5] for r in range(start, start + n)], pa.list_(pa.int32())),
                "n_tokens": pa.array([seq_len - r % 3 for r in range(start, start + n)], pa.int32()),
            }
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=row_group_rows, compression="zstd")
        path = f"part-{i:05d}.parquet"
        storage.write_bytes(storage.join(root, path), buf.getvalue())
        shards.append({"path": path, "rows": n, "bytes": len(buf.getvalue()), "sha256": "", "tokens": n * seq_len})
        start += n
    manifest = {
        "kind": "packed",
        "seq_len": seq_len,
        "rows": start,
        "tokens": start * seq_len,
        "pad_tokens": 0,
        "documents": start,
        "row_group_rows": row_group_rows,
        "shards": shards,
    }
    storage.write_json(storage.join(root, "manifest.json"), manifest)
    return root


def row_ids(batch_ids, noise: bool = False) -> list[int]:
    arr = np.asarray(batch_ids)
    assert noise or (arr == arr[:, :1]).all()
    return arr[:, 0].tolist()


def global_batches(ds, gbs, micro, world, steps, seed=7, start=0):
    """The global batches seen by `world` ranks, reassembled in rank order."""
    per_rank = []
    for rank in range(world):
        loader = DataLoader(ds, gbs, micro, seed, rank=rank, world_size=world, start_sequences=start)
        seen, it = [], iter(loader)
        for _ in range(steps * (gbs // world // micro)):
            seen.append(next(it))
        loader.close()
        per_rank.append(seen)
    n_micro = gbs // world // micro
    out = []
    for step in range(steps):
        rows = []
        for rank in range(world):
            for b in per_rank[rank][step * n_micro : (step + 1) * n_micro]:
                rows += row_ids(b.input_ids)
                assert b.step_sequences_after == start + (step + 1) * gbs
            assert per_rank[rank][(step + 1) * n_micro - 1].is_last_micro
        out.append(rows)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 100, 1023, 4097])
def test_feistel_is_a_permutation(n):
    perm = FeistelPermutation(n, key=12345)(np.arange(n))
    assert sorted(perm.tolist()) == list(range(n))


def test_order_is_a_pure_function_of_seed_and_epoch():
    a = GlobalBatchOrder(rows=103, seed=1, chunk_rows=4)
    b = GlobalBatchOrder(rows=103, seed=1, chunk_rows=4)
    assert (a.indices(0, 1000) == b.indices(0, 1000)).all()
    # any position is computable on its own, in any order of queries
    assert (a.global_batch(517, 9) == b.indices(0, 1000)[517:526]).all()
    # each epoch is a permutation of all rows; epochs differ; seeds differ
    e0, e1 = a.indices(0, 103), a.indices(103, 206)
    assert sorted(e0.tolist()) == list(range(103)) == sorted(e1.tolist())
    assert (e0 != e1).any()
    assert (GlobalBatchOrder(103, seed=2, chunk_rows=4).indices(0, 103) != e0).any()
    # chunks of 4 rows stay together (the unit read from Parquet); the 3-row tail closes the epoch
    for k in range(0, 100, 4):
        assert e0[k] % 4 == 0 and (e0[k : k + 4] == e0[k] + np.arange(4)).all()
    assert e0[100:].tolist() == [100, 101, 102]


def test_read_rows_any_order_across_shards(tmp_path):
    ds = PackedDataset(write_packed(str(tmp_path), [10, 7, 13], seq_len=6, row_group_rows=4))
    assert (ds.rows, ds.seq_len, ds.chunk_rows) == (30, 6, 4)
    idx = np.array([29, 0, 12, 12, 9, 10, 3])
    got = ds.read_rows(idx)
    assert got.dtype == np.int32 and got.shape == (7, 6)
    assert row_ids(got) == idx.tolist()
    with pytest.raises(IndexError):
        ds.read_rows(np.array([30]))


@pytest.mark.parametrize("world", [2, 3])
def test_any_world_size_sees_the_same_global_batches(tmp_path, world):
    ds = PackedDataset(write_packed(str(tmp_path), [20, 15, 25], row_group_rows=4))
    one = global_batches(ds, gbs=12, micro=2, world=1, steps=8)
    many = global_batches(ds, gbs=12, micro=2, world=world, steps=8)
    assert one == many
    # 8 steps × 12 = 96 sequences = one full epoch (60) and part of the next
    flat = [r for b in one for r in b]
    assert sorted(flat[:60]) == list(range(60))
    assert flat[:60] != list(range(60))


def test_resume_mid_epoch_at_a_different_world_size(tmp_path):
    ds = PackedDataset(write_packed(str(tmp_path), [24, 24], row_group_rows=4))
    straight = global_batches(ds, gbs=6, micro=1, world=1, steps=10)
    # a 3-worker run stops after 4 steps; its state resumes a 2-worker run
    loader = DataLoader(ds, 6, 1, seed=7, rank=0, world_size=3)
    it = iter(loader)
    for _ in range(4 * 2):
        next(it)
    state = loader.state()
    loader.close()
    assert state == {"seed": 7, "sequences_consumed": 24}
    resumed = global_batches(ds, gbs=6, micro=3, world=2, steps=6, start=state["sequences_consumed"])
    assert resumed == straight[4:]


def test_segments_come_with_their_rows(tmp_path):
    ds = PackedDataset(write_packed(str(tmp_path), [12, 9], row_group_rows=4))
    rows = ds.read(np.array([20, 3, 11, 12]), segments=True)
    assert rows.doc_offsets == [[0, 1 + r % 5] for r in (20, 3, 11, 12)]
    assert rows.n_tokens.tolist() == [8 - r % 3 for r in (20, 3, 11, 12)]
    loader = DataLoader(ds, 6, 3, seed=5, world_size=2, rank=1, segments=True)
    for _, b in zip(range(6), loader):
        ids = row_ids(b.input_ids)
        assert b.doc_offsets == [[0, 1 + r % 5] for r in ids]
        assert b.n_tokens.tolist() == [8 - r % 3 for r in ids]
    loader.close()


def test_state_counts_only_full_global_batches(tmp_path):
    ds = PackedDataset(write_packed(str(tmp_path), [32], row_group_rows=4))
    loader = DataLoader(ds, 8, 2, seed=0)
    it = iter(loader)
    next(it)
    assert loader.state()["sequences_consumed"] == 0  # mid global batch
    for _ in range(3):
        b = next(it)
    assert b.is_last_micro and loader.state()["sequences_consumed"] == 8
    loader.close()


def test_bad_loader_arguments(tmp_path):
    ds = PackedDataset(write_packed(str(tmp_path), [8]))
    with pytest.raises(UserError, match="not divisible by 3 workers"):
        DataLoader(ds, 8, 1, seed=0, world_size=3)
    with pytest.raises(UserError, match="micro batch"):
        DataLoader(ds, 8, 3, seed=0, world_size=2)
    with pytest.raises(UserError, match="no manifest.json"):
        PackedDataset(str(tmp_path / "nowhere"))


def test_s3_reads_only_needed_row_groups(tmp_path, s3_bucket):
    # 2 shards of 96 rows × 1 KiB random tokens in row groups of 8 rows (~32 KiB each)
    root = write_packed(f"s3://{s3_bucket}/packed", [96, 96], seq_len=1024, row_group_rows=8, noise=True)
    ds = PackedDataset(root)
    assert row_ids(ds.read_rows(np.array([191, 1, 96])), noise=True) == [191, 1, 96]
    fetched = []
    orig = storage._RangeReader._get

    def spy(self, range_header):
        body, total = orig(self, range_header)
        fetched.append(len(body))
        return body, total

    storage._RangeReader._get = spy
    try:
        loader = DataLoader(PackedDataset(root), 16, 4, seed=3, rank=1, world_size=2)
        batches = [b for _, b in zip(range(4), loader)]  # 2 global batches
        loader.close()
    finally:
        storage._RangeReader._get = orig
    assert all(b.input_ids.shape == (4, 1024) for b in batches)
    expected = np.concatenate([loader.local_rows(0), loader.local_rows(16)])
    assert [r for b in batches for r in row_ids(b.input_ids, noise=True)] == expected.tolist()
    # rank 1 needs 1 row group (8 rows) per global batch: 2, plus 1 prefetched ahead, plus at most
    # one 64 KiB footer read per file; far less than the files
    total = sum(s["bytes"] for s in json.loads(storage.read_text(f"{root}/manifest.json"))["shards"])
    footers = [n for n in fetched if n == 64 << 10]
    assert len(footers) <= 2 and len(fetched) - len(footers) <= 3
    assert sum(fetched) < total / 2


def test_loader_error_surfaces_in_the_consumer(tmp_path):
    root = write_packed(str(tmp_path), [16], row_group_rows=4)
    ds = PackedDataset(root)
    (tmp_path / "part-00000.parquet").write_bytes(b"corrupt")
    loader = DataLoader(ds, 4, 4, seed=0)
    with pytest.raises(UserError):
        next(iter(loader))
    loader.close()
