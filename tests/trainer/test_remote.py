"""Listing and fetching checkpoints from a real S3 endpoint (moto's server) behind a requester-pays
proxy of our own (tests/conftest.py `s3_proxy`), and from local folders (trainer/checkpoints/remote.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from dsllm import storage
from dsllm.errors import UserError
from dsllm.trainer.checkpoints import hf, ranged, remote
from dsllm.trainer.checkpoints.export import export_hf

PREFIX = "DeepSeek-LLM/DeepSeek-LLM-7B-Base"


def _upload(folder: Path, uri: str, part_size: int | None = None) -> None:
    """Upload a folder; files above `part_size` as multipart uploads (so their ETag is `md5-N`)."""
    from boto3.s3.transfer import TransferConfig

    for f in sorted(folder.iterdir()):
        bucket, key = storage.split_s3(f"{uri}/{f.name}")
        cfg = TransferConfig(multipart_threshold=part_size or (1 << 40), multipart_chunksize=part_size or (8 << 20))
        storage.s3_client().upload_file(str(f), bucket, key, Config=cfg)


def _gets(proxy) -> list[tuple[str, str, dict]]:
    return [r for r in proxy.requests if r[0] == "GET" and "range" in r[2]]


@pytest.mark.parametrize(
    "name,step,tokens",
    [
        ("step-00001000", 1000, None),
        ("global_step2000-tokens-8.4B", 2000, 8_400_000_000),
        ("checkpoint-500", 500, None),
        ("iter_0001000", 1000, None),
        ("1500", 1500, None),
        ("DeepSeek-LLM-7B-Base", None, None),
        ("400B-tokens", None, 400 * 10**9),
        ("stepwise", None, None),
    ],
)
def test_names(name, step, tokens):
    assert remote.parse_step(name) == step
    assert remote.parse_tokens(name) == tokens


def test_list_local_run_and_metadata(tiny_llama, tmp_path):
    for step in (10, 20):
        folder, _ = tiny_llama(name=f"run/checkpoints/step-{step:08d}")
        (folder / "trainer_state.json").write_text(json.dumps({"step": step, "tokens": step * 100}))
        (folder / "optimizer.pt").write_bytes(b"x")
    partial, _ = tiny_llama(name="run/checkpoints/.tmp-step-00000030-123")  # a save in progress
    infos = remote.list_checkpoints(str(tmp_path / "run"))
    assert [(i.name, i.step, i.tokens) for i in infos] == [
        ("checkpoints/step-00000010", 10, 1000),
        ("checkpoints/step-00000020", 20, 2000),
    ]
    assert infos[0].format == "safetensors +optimizer"
    assert "model.safetensors" in infos[0].names() and infos[0].size == sum(f.size for f in infos[0].files)
    with pytest.raises(UserError, match="no such file or directory"):
        remote.list_checkpoints(str(tmp_path / "nope"))


def test_list_s3_sends_requester_pays(tiny_llama, s3_bucket, s3_proxy, cli):
    base = f"s3://{s3_bucket}/{PREFIX}"
    s3_proxy.require_payer = False
    for name in ("step-1000", "global_step2000-tokens-8.4B"):
        folder, _ = tiny_llama(name=name, fmt="bin", shards=2)
        _upload(folder, f"{base}/{name}")
    s3_proxy.require_payer = True
    s3_proxy.requests.clear()
    out = cli("checkpoint", "list", base, "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert [(c["name"], c["step"], c["tokens"], c["format"]) for c in listed] == [
        ("step-1000", 1000, None, "pytorch-bin sharded"),
        ("global_step2000-tokens-8.4B", 2000, 8_400_000_000, "pytorch-bin sharded"),
    ]
    assert {f["name"] for f in listed[0]["files"]} >= {"config.json", "pytorch_model.bin.index.json"}
    # the proxy refuses requests without the header, so success proves it was sent on every call
    assert s3_proxy.requests and all(h.get("x-amz-request-payer") == "requester" for _, _, h in s3_proxy.requests)
    denied = cli("checkpoint", "list", base, "--no-requester-pays")
    assert denied.returncode == 2
    assert denied.stderr.strip().count("\n") == 0 and "access denied" in denied.stderr


def test_fetch_import_verify_and_cache(tiny_llama, s3_bucket, s3_proxy, tmp_path):
    folder, ref = tiny_llama(vocab=102400, hidden=16, layers=1, name="step-3000")  # ~13 MB
    s3_proxy.require_payer = False
    _upload(folder, f"s3://{s3_bucket}/{PREFIX}/step-3000", part_size=5 << 20)
    s3_proxy.require_payer = True
    head = storage.s3_client().head_object(
        Bucket=s3_bucket, Key=f"{PREFIX}/step-3000/model.safetensors", RequestPayer="requester"
    )
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload: checked via per-part MD5s
    cache = tmp_path / "cache"
    ckpt = hf.resolve_checkpoint(f"s3://{s3_bucket}/{PREFIX}", cache=cache, stream=False)
    assert ckpt.step == 3000 and not ckpt.streamed and ckpt.config.bos_token_id == 100000
    assert Path(ckpt.path) == cache / "s3" / s3_bucket / PREFIX / "step-3000"
    model = hf.build_model(ckpt)
    x = torch.randint(0, 102400, (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x).logits, rtol=1e-5, atol=1e-6)
    meta = json.loads((Path(ckpt.path) / ".model.safetensors.dsllm.json").read_text())
    assert meta["verified"] == "md5" and meta["etag"] == head["ETag"].strip('"')
    assert json.loads((Path(ckpt.path) / ".config.json.dsllm.json").read_text())["verified"] == "md5"
    assert len(_gets(s3_proxy)) >= 3  # three ranged GETs for the three parts
    assert not list(Path(ckpt.path).glob(".*.partial"))
    s3_proxy.requests.clear()
    # streaming is the default, but a cached copy (same ETag and size) wins: no download at all
    again = hf.resolve_checkpoint(f"s3://{s3_bucket}/{PREFIX}/step-3000", cache=cache)
    assert again.path == ckpt.path and not again.streamed and _gets(s3_proxy) == []


def _single_object(s3_bucket, s3_proxy, size=4 << 20) -> tuple[str, bytes]:
    data = (
        torch.randint(0, 256, (size,), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)).numpy().tobytes()
    )
    s3_proxy.require_payer = False
    storage.s3_client().put_object(Bucket=s3_bucket, Key="ckpt/model.safetensors", Body=data)
    s3_proxy.require_payer = True
    return f"s3://{s3_bucket}/ckpt/model.safetensors", data


def test_transient_truncation_is_retried(s3_bucket, s3_proxy, tmp_path):
    uri, data = _single_object(s3_bucket, s3_proxy)
    s3_proxy.fault, s3_proxy.fault_times = "truncate", 1
    [path] = remote.fetch_files([uri], cache=tmp_path, chunk_size=1 << 20)
    assert path.read_bytes() == data and s3_proxy.fault_times == 0


def test_interrupted_fetch_resumes_with_missing_ranges_only(s3_bucket, s3_proxy, tmp_path):
    uri, data = _single_object(s3_bucket, s3_proxy)
    s3_proxy.fault, s3_proxy.fault_match = "truncate", "-2097151"  # the second of four ranges, retries too
    with pytest.raises(UserError, match=r"download failed after 2 retries: truncated at byte \d+ of 4194304"):
        remote.fetch_files([uri], cache=tmp_path, chunk_size=1 << 20)
    final = remote.cache_path(uri, tmp_path)
    assert not final.exists()  # never a half-written file under the real name
    progress = final.with_name(".model.safetensors.progress").read_text().splitlines()[1:]
    done = len(progress)
    assert 1 <= done <= 3 and not any(line.startswith("1048576 ") for line in progress)
    # a crash can lose bytes the log already recorded: damage one recorded range; resume re-hashes
    lo = int(progress[0].split()[0])
    with open(final.with_name(".model.safetensors.partial"), "r+b") as f:
        f.seek(lo + 10)
        f.write(b"\0" * 100)
    s3_proxy.fault = None
    s3_proxy.requests.clear()
    [path] = remote.fetch_files([uri], cache=tmp_path, chunk_size=1 << 20)
    assert len(_gets(s3_proxy)) == 4 - done + 1
    assert path.read_bytes() == data
    assert json.loads(final.with_name(".model.safetensors.dsllm.json").read_text())["verified"] == "md5"
    assert hashlib.md5(path.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()
    assert not final.with_name(".model.safetensors.partial").exists()


def test_corrupted_bytes_fail_the_checksum(s3_bucket, s3_proxy, tmp_path):
    uri, _ = _single_object(s3_bucket, s3_proxy)
    s3_proxy.fault = "corrupt"
    with pytest.raises(UserError, match="MD5 checksum mismatch against the S3 ETag"):
        remote.fetch_files([uri], cache=tmp_path, chunk_size=1 << 20)
    final = remote.cache_path(uri, tmp_path)
    assert not final.exists() and not final.with_name(".model.safetensors.partial").exists()
    s3_proxy.fault = None
    [path] = remote.fetch_files([uri], cache=tmp_path, chunk_size=1 << 20)
    assert path.exists()


def test_sha256_checksum_is_used_when_s3_has_one(s3_bucket, s3_proxy, tmp_path):
    s3_proxy.require_payer = False
    storage.s3_client().put_object(Bucket=s3_bucket, Key="c/config.json", Body=b'{"a": 1}', ChecksumAlgorithm="SHA256")
    s3_proxy.require_payer = True
    [path] = remote.fetch_files([f"s3://{s3_bucket}/c/config.json"], cache=tmp_path)
    assert json.loads(path.with_name(".config.json.dsllm.json").read_text())["verified"] == "sha256"


def test_missing_shard_on_s3(tiny_llama, s3_bucket, s3_proxy, tmp_path):
    folder, _ = tiny_llama(fmt="bin", shards=2, name="step-10")
    next(folder.glob("pytorch_model-00002-*.bin")).unlink()
    s3_proxy.require_payer = False
    _upload(folder, f"s3://{s3_bucket}/run/step-10")
    s3_proxy.require_payer = True
    with pytest.raises(
        UserError, match="shard pytorch_model-00002-of-00002.bin listed in pytorch_model.bin.index.json is missing"
    ):
        hf.resolve_checkpoint(f"s3://{s3_bucket}/run", cache=tmp_path)


def test_export_to_s3_and_import_back(tiny_llama, s3_bucket, s3_proxy, tmp_path):
    folder, ref = tiny_llama(fmt="bin", shards=2)
    s3_proxy.require_payer = False  # the output bucket is the user's own
    export_hf(hf.resolve_checkpoint(str(folder)), f"s3://{s3_bucket}/exported", max_shard_bytes=40_000)
    s3_proxy.require_payer = True
    names = {f.uri.rsplit("/", 1)[1] for f in storage.list_files(f"s3://{s3_bucket}/exported", requester_pays=True)}
    assert {"config.json", "generation_config.json", "model.safetensors.index.json"} <= names
    back = hf.resolve_checkpoint(f"s3://{s3_bucket}/exported", cache=tmp_path)
    for name, t in hf.build_model(back).state_dict().items():
        if name in ref.state_dict():
            assert torch.equal(t, ref.state_dict()[name]), name


def test_concurrent_fetches_of_one_object_share_the_cache(s3_bucket, s3_proxy, tmp_path):
    """Two fetchers of the same object (Ray workers on one node) serialize on the cache entry's lock."""
    from concurrent.futures import ThreadPoolExecutor

    uri, data = _single_object(s3_bucket, s3_proxy)
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: remote.fetch_files([uri], cache=tmp_path, chunk_size=1 << 20)[0], range(2)))
    assert paths[0] == paths[1] and paths[0].read_bytes() == data
    assert len(_gets(s3_proxy)) == 4  # one download of the four ranges; the second fetcher found it cached


def test_ranged_read_refuses_an_object_replaced_after_head(s3_bucket, s3_proxy, tmp_path):
    """The one ranged GET (cache download and streaming import) is If-Match the HEAD's ETag."""
    uri, data = _single_object(s3_bucket, s3_proxy, size=1 << 16)
    obj = ranged.head(uri, requester_pays=True)
    assert ranged.get_bytes(storage.s3_client(), obj, 100, 300, True) == data[100:300]
    s3_proxy.require_payer = False  # same key, same size, new bytes
    storage.s3_client().put_object(Bucket=s3_bucket, Key="ckpt/model.safetensors", Body=data[::-1])
    s3_proxy.require_payer = True
    with pytest.raises(UserError, match="the object changed while it was read"):
        ranged.get_bytes(storage.s3_client(), obj, 100, 300, True)
