"""Streaming safetensors from S3 straight into the model (trainer/checkpoints/stream.py), against moto's server
behind the requester-pays proxy (tests/conftest.py `s3_proxy`); the cached path is the reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsllm import storage
from dsllm.errors import UserError
from dsllm.trainer.checkpoints import hf, remote, stream
from dsllm.trainer.model import Transformer

PREFIX = "DeepSeek-LLM/DeepSeek-LLM-7B-Base"
X = torch.randint(0, 102400, (1, 8), generator=torch.Generator().manual_seed(2))


def _upload(s3_proxy, folder: Path, uri: str, part_size: int | None = None) -> None:
    """Upload a folder as the bucket owner; files above `part_size` as multipart uploads."""
    from boto3.s3.transfer import TransferConfig

    s3_proxy.require_payer = False
    for f in sorted(folder.iterdir()):
        bucket, key = storage.split_s3(f"{uri}/{f.name}")
        cfg = TransferConfig(multipart_threshold=part_size or (1 << 40), multipart_chunksize=part_size or (8 << 20))
        storage.s3_client().upload_file(str(f), bucket, key, Config=cfg)
    s3_proxy.require_payer = True
    s3_proxy.requests.clear()


def _ranged_gets(s3_proxy, name="model.safetensors") -> list[str]:
    return [
        h["range"] for m, p, h in s3_proxy.requests if m == "GET" and "range" in h and p.split("?")[0].endswith(name)
    ]


def _packed(folder: Path, vocab: int = 128, rows: int = 3, seq: int = 16) -> None:
    """A small PACKED folder (F's layout) for `dsllm eval`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    ids = np.random.default_rng(0).integers(0, vocab, size=(rows, seq), dtype=np.int32)
    pq.write_table(
        pa.table(
            {
                "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(ids.reshape(-1)), seq),
                "doc_offsets": pa.array([[0]] * rows, type=pa.list_(pa.int32())),
                "n_tokens": pa.array(np.full(rows, seq, dtype=np.int32)),
            }
        ),
        folder / "part-00000.parquet",
    )
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "kind": "packed",
                "seq_len": seq,
                "rows": rows,
                "tokens": rows * seq,
                "tokenizer": {"vocab_size": vocab, "eos_id": 2},
                "shards": [
                    {
                        "path": "part-00000.parquet",
                        "rows": rows,
                        "tokens": rows * seq,
                        "bytes": (folder / "part-00000.parquet").stat().st_size,
                    }
                ],
            }
        )
    )


@pytest.fixture
def published(tiny_llama, s3_bucket, s3_proxy):
    """A ~13 MB DeepSeek-vocabulary checkpoint on S3 in 5 MiB multipart parts (like `aws s3 cp`)."""
    folder, ref = tiny_llama(vocab=102400, hidden=16, layers=1, name="step-3000")
    _upload(s3_proxy, folder, f"s3://{s3_bucket}/{PREFIX}/step-3000", part_size=5 << 20)
    return f"s3://{s3_bucket}/{PREFIX}", folder, ref


def test_stream_is_default_and_matches_cached_path(published, s3_proxy, tmp_path):
    src, _, ref = published
    ckpt = hf.resolve_checkpoint(src, cache=tmp_path / "a")
    assert ckpt.streamed and ckpt.step == 3000 and ckpt.config.bos_token_id == 100000
    folder = Path(ckpt.path)
    assert (folder / "config.json").exists() and not list(folder.glob("*model.safetensors*"))  # no weights on disk
    model = hf.build_model(ckpt)
    [(uri, how)] = ckpt.verified.items()
    assert uri.endswith("/model.safetensors") and how == "md5"  # per-part MD5s against the multipart ETag
    gets = _ranged_gets(s3_proxy)
    assert gets[0] == "bytes=0-262143"  # the header probe; then the whole object in part-aligned ranges
    assert all(
        h.get("x-amz-request-payer") == "requester" for _, _, h in s3_proxy.requests
    )  # and the proxy enforced it
    cached = hf.build_model(hf.resolve_checkpoint(src, cache=tmp_path / "b", stream=False))
    with torch.no_grad():
        assert torch.equal(model(X), cached(X))
        torch.testing.assert_close(model(X), ref(X).logits, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), cached.state_dict().values()))


def test_single_part_md5_is_hashed_in_order_across_parallel_ranges(tiny_llama, s3_bucket, s3_proxy, tmp_path):
    folder, ref = tiny_llama(vocab=102400, hidden=16, layers=1, name="flat")
    _upload(s3_proxy, folder, f"s3://{s3_bucket}/flat")  # single PUTs: the ETag is the object's MD5
    shard = stream.open_shard(f"s3://{s3_bucket}/flat/model.safetensors")
    assert stream.verify_mode(shard.remote) == "md5"
    model = Transformer(hf.resolve_checkpoint(str(folder)).config)
    targets = model.state_dict()
    seen = []
    names, how = stream.load_shard(
        shard,
        lambda n, s: targets.get(n),
        chunk_size=1 << 20,
        workers=4,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert how == "md5" and names == set(ref.state_dict())
    assert len(_ranged_gets(s3_proxy)) == 1 + -(-shard.remote.size // (1 << 20))  # probe + 1 MiB ranges
    assert seen[-1] == (shard.remote.size, shard.remote.size)
    for name, t in ref.state_dict().items():
        assert torch.equal(targets[name], t), name
    # a range that keeps failing stops the others (no hang on the in-order commit) with one error
    s3_proxy.fault, s3_proxy.fault_match = "truncate", "-4194303"  # the 4th range and its retries
    with pytest.raises(UserError, match="streaming failed after 2 retries: truncated at byte"):
        stream.load_shard(shard, lambda n, s: targets.get(n), chunk_size=1 << 20, workers=4)


def test_full_object_sha256_is_verified_when_s3_has_one(tiny_llama, s3_bucket, s3_proxy):
    folder, ref = tiny_llama(name="sha")
    s3_proxy.require_payer = False
    storage.s3_client().put_object(
        Bucket=s3_bucket,
        Key="sha/model.safetensors",
        ChecksumAlgorithm="SHA256",
        Body=(folder / "model.safetensors").read_bytes(),
    )
    s3_proxy.require_payer = True
    shard = stream.open_shard(f"s3://{s3_bucket}/sha/model.safetensors")
    model = Transformer(hf.resolve_checkpoint(str(folder)).config)
    names, how = stream.load_shard(shard, model.state_dict().get, chunk_size=32 << 10)
    assert how == "sha256" and torch.equal(model.lm_head.weight, ref.lm_head.weight)
    s3_proxy.fault, s3_proxy.fault_match = "corrupt", "bytes=32768-"
    with pytest.raises(UserError, match="SHA-256 checksum mismatch"):
        stream.load_shard(shard, model.state_dict().get, chunk_size=32 << 10)


def test_stream_converts_dtype_and_loads_in_place(published, tmp_path):
    src, _, ref = published
    streamed = hf.build_model(hf.resolve_checkpoint(src, cache=tmp_path / "a"), dtype=torch.bfloat16)
    cached = hf.build_model(hf.resolve_checkpoint(src, cache=tmp_path / "b", stream=False), dtype=torch.bfloat16)
    assert streamed.lm_head.weight.dtype == torch.bfloat16
    assert all(torch.equal(a, b) for a, b in zip(streamed.state_dict().values(), cached.state_dict().values()))
    # --resume-from's path: a built (randomly initialized) model overwritten in place
    ckpt = hf.resolve_checkpoint(src, cache=tmp_path / "a")
    model = Transformer(ckpt.config)
    before = model.lm_head.weight.data_ptr()
    hf.load_into(model, ckpt)
    assert model.lm_head.weight.data_ptr() == before and torch.equal(model.lm_head.weight, ref.lm_head.weight)


def test_truncated_range_is_retried_then_one_clear_error(published, s3_proxy, tmp_path):
    src, _, ref = published
    ckpt = hf.resolve_checkpoint(src, cache=tmp_path)
    size = ckpt.remote_shards[ckpt.files[0]].remote.size  # one range over the 13 MB, cut in the middle
    s3_proxy.fault, s3_proxy.fault_times, s3_proxy.fault_match = "truncate", 1, f"-{size - 1}"
    model = hf.build_model(ckpt)
    assert s3_proxy.fault_times == 0 and ckpt.verified[ckpt.files[0]] == "md5"
    assert torch.equal(model.lm_head.weight, ref.lm_head.weight)
    s3_proxy.fault_times = -1  # every attempt cut: DSLLM_FETCH_RETRIES=2 retries, then one line
    with pytest.raises(UserError, match=r"streaming failed after 2 retries: truncated at byte \d+ of \d+") as err:
        hf.build_model(hf.resolve_checkpoint(src, cache=tmp_path))
    assert "\n" not in str(err.value)


def test_corrupted_bytes_fail_the_part_checksum(published, s3_proxy, tmp_path):
    src, _, _ = published
    ckpt = hf.resolve_checkpoint(src, cache=tmp_path)
    model = Transformer(ckpt.config)
    s3_proxy.fault, s3_proxy.fault_match = "corrupt", "bytes=5242880-"  # part 2: a byte inside a tensor
    with pytest.raises(UserError, match="MD5 checksum mismatch against the S3 multipart ETag"):
        stream.load_shard(ckpt.remote_shards[ckpt.files[0]], model.state_dict().get, chunk_size=5 << 20)
    s3_proxy.fault_match = "bytes=0-"  # byte 8 of the object: the header's first byte
    with pytest.raises(UserError, match="MD5 checksum mismatch against the S3 multipart ETag"):
        hf.build_model(ckpt)


def test_corrupt_header_is_one_clear_error(tiny_llama, s3_bucket, s3_proxy, tmp_path, cli):
    folder, _ = tiny_llama(name="bad")
    st = folder / "model.safetensors"
    data = bytearray(st.read_bytes())
    data[8:12] = b"\xff\xfe[["  # the JSON header is garbage now
    st.write_bytes(bytes(data))
    _upload(s3_proxy, folder, f"s3://{s3_bucket}/bad")
    with pytest.raises(UserError, match="model.safetensors: corrupt safetensors header"):
        hf.resolve_checkpoint(f"s3://{s3_bucket}/bad", cache=tmp_path)
    data[:8] = (1 << 40).to_bytes(8, "little")
    st.write_bytes(bytes(data))
    _upload(s3_proxy, folder, f"s3://{s3_bucket}/bad")
    out = cli("eval", "--model", f"s3://{s3_bucket}/bad", "--data", str(tmp_path / "nope"))
    assert out.returncode == 2 and "no manifest.json" in out.stderr  # --data is checked first
    _packed(tmp_path / "packed")
    out = cli(
        "eval",
        "--model",
        f"s3://{s3_bucket}/bad",
        "--data",
        str(tmp_path / "packed"),
        env={"DSLLM_CACHE": str(tmp_path / "c")},
    )
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("dsllm eval: error: ")
    assert "corrupt safetensors header (header length 1099511627776 does not fit" in out.stderr


def test_cache_is_forced_by_env_and_bin_is_always_cached(tiny_llama, s3_bucket, s3_proxy, tmp_path, monkeypatch):
    folder, _ = tiny_llama(name="st")
    _upload(s3_proxy, folder, f"s3://{s3_bucket}/st")
    monkeypatch.setenv("DSLLM_CHECKPOINT_CACHE", "1")
    ckpt = hf.resolve_checkpoint(f"s3://{s3_bucket}/st", cache=tmp_path)
    assert not ckpt.streamed and (Path(ckpt.path) / "model.safetensors").exists()
    monkeypatch.delenv("DSLLM_CHECKPOINT_CACHE")
    folder, ref = tiny_llama(name="bin", fmt="bin", shards=2)
    _upload(s3_proxy, folder, f"s3://{s3_bucket}/bin")
    ckpt = hf.resolve_checkpoint(f"s3://{s3_bucket}/bin", cache=tmp_path)
    assert not ckpt.streamed and ckpt.format == "bin"  # pickles need mmap: through the cache


def test_should_stream_rules():
    def info(*names, etag="e"):
        return remote.CheckpointInfo("s3://b/ck", "ck", [storage.FileInfo(f"s3://b/ck/{n}", 10, etag) for n in names])

    hf_st = info(
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    )
    assert hf.should_stream(hf_st, None) and not hf.should_stream(hf_st, False)
    assert not hf.should_stream(info("config.json", "pytorch_model.bin"), True)
    native = info("config.json", "model.safetensors", "optimizer.pt", "trainer_state.json")
    assert not hf.should_stream(native, None)  # exact resume reads the optimizer from a step folder
    assert hf.should_stream(native, None, with_optimizer=False)  # eval needs the weights only
    local = remote.CheckpointInfo("/x/ck", "ck", [storage.FileInfo("/x/ck/model.safetensors", 10)])
    assert not hf.should_stream(local, True)


def test_eval_cli_streams_and_no_stream_caches(published, tmp_path, cli):
    src, _, _ = published
    _packed(tmp_path / "packed", vocab=102400)
    runs = {}
    for flag in ([], ["--no-stream"]):
        cache = tmp_path / f"cache{len(flag)}"
        out = cli("eval", "--model", src, "--data", str(tmp_path / "packed"), "--json", "--cache", str(cache), *flag)
        assert out.returncode == 0, out.stderr
        assert ("streaming" in out.stderr) == (not flag)
        assert any(cache.rglob("model.safetensors")) == bool(flag)
        runs[bool(flag)] = json.loads(out.stdout)[0]
    assert runs[True]["loss"] == runs[False]["loss"] and runs[True]["tokens"] == runs[False]["tokens"]


def test_object_replaced_between_header_and_data_is_refused(published, s3_proxy, tiny_llama, tmp_path):
    src, _, _ = published
    ckpt = hf.resolve_checkpoint(src, cache=tmp_path)
    other, _ = tiny_llama(vocab=102400, hidden=16, layers=1, name="other", seed=5)
    _upload(s3_proxy, other, f"{src}/step-3000")  # same size, new bytes, new ETag
    with pytest.raises(UserError, match="the object changed while it was read"):
        hf.build_model(ckpt)
