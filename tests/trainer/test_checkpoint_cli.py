"""`dsllm checkpoint list|fetch|export` as a user runs them, and the one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest
import torch

from dsllm import storage

SECRET = "wJalrXUtnFEMI-dsllm-test-secret"


def _one_error_line(out, command="checkpoint") -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [ln for ln in out.stderr.strip().splitlines() if not ln.startswith("fetched ")]  # progress
    assert len(lines) == 1 and lines[0].startswith(f"dsllm {command}: error: "), out.stderr
    assert "Traceback" not in out.stderr and SECRET not in out.stderr + out.stdout
    return lines[0]


def _upload(folder, uri):
    for f in sorted(folder.iterdir()):
        storage.upload_file(str(f), f"{uri}/{f.name}")


def test_list_and_export_local(tiny_llama, tmp_path, cli):
    from transformers import LlamaForCausalLM

    folder, ref = tiny_llama(name="run/checkpoints/step-00000042", vocab=102400, hidden=8, layers=1)
    listed = cli("checkpoint", "list", str(tmp_path / "run"))
    assert listed.returncode == 0, listed.stderr
    assert "checkpoints/step-00000042" in listed.stdout and "42" in listed.stdout
    assert "model.safetensors" in listed.stdout and "safetensors" in listed.stdout
    out = cli("checkpoint", "export", str(tmp_path / "run"), "--output", str(tmp_path / "hf"))
    assert out.returncode == 0, out.stderr
    assert "(step 42)" in out.stdout and "note: config.json says bos/eos 1/2" in out.stderr
    model = LlamaForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert (model.config.bos_token_id, model.config.eos_token_id) == (100000, 100001)
    x = torch.randint(0, 102400, (1, 6))
    with torch.no_grad():
        assert torch.equal(model(x).logits, ref(x).logits)


def test_fetch_prints_cached_folder(tiny_llama, s3_bucket, s3_proxy, tmp_path, cli):
    folder, _ = tiny_llama(name="step-7")
    s3_proxy.require_payer = False
    _upload(folder, f"s3://{s3_bucket}/m/step-7")
    s3_proxy.require_payer = True
    out = cli("checkpoint", "fetch", f"s3://{s3_bucket}/m", "--cache", str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    local = tmp_path / "c" / "s3" / s3_bucket / "m" / "step-7"
    assert out.stdout.strip() == str(local)
    assert (local / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


def test_wrong_credentials(s3_bucket, s3_proxy, monkeypatch, cli):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    s3_proxy.mode = "bad_key"
    line = _one_error_line(cli("checkpoint", "list", f"s3://{s3_bucket}/x"))
    assert line.endswith(f"s3://{s3_bucket}/x: credentials rejected by S3 (InvalidAccessKeyId)")


def test_access_denied(s3_bucket, s3_proxy, cli):
    s3_proxy.mode = "deny"
    line = _one_error_line(cli("checkpoint", "fetch", f"s3://{s3_bucket}/x"))
    assert "access denied" in line


def test_truncated_download(tiny_llama, s3_bucket, s3_proxy, tmp_path, cli):
    folder, _ = tiny_llama(name="step-1")
    s3_proxy.require_payer = False
    _upload(folder, f"s3://{s3_bucket}/t/step-1")
    s3_proxy.require_payer = True
    s3_proxy.fault, s3_proxy.fault_match = "truncate", "model.safetensors"
    line = _one_error_line(
        cli(
            "checkpoint",
            "export",
            f"s3://{s3_bucket}/t",
            "--output",
            str(tmp_path / "o"),
            "--cache",
            str(tmp_path / "c"),
        )
    )
    assert "model.safetensors: download failed after 2 retries: truncated at byte" in line
    assert "rerun to resume" in line
    assert not (tmp_path / "c" / "s3" / s3_bucket / "t" / "step-1" / "model.safetensors").exists()


def test_missing_shard_from_s3(tiny_llama, s3_bucket, s3_proxy, tmp_path, cli):
    folder, _ = tiny_llama(fmt="bin", shards=2, name="step-5")
    next(folder.glob("pytorch_model-00001-*.bin")).unlink()
    s3_proxy.require_payer = False
    _upload(folder, f"s3://{s3_bucket}/ms/step-5")
    s3_proxy.require_payer = True
    line = _one_error_line(
        cli(
            "checkpoint",
            "export",
            f"s3://{s3_bucket}/ms",
            "--output",
            str(tmp_path / "o"),
            "--cache",
            str(tmp_path / "c"),
        )
    )
    assert "shard pytorch_model-00001-of-00002.bin listed in pytorch_model.bin.index.json is missing" in line


@pytest.mark.parametrize(
    "damage,expected",
    [
        ("header", "corrupt safetensors header"),
        ("pickle", "pytorch_model.bin: refused: the pickle holds a Counter at 'model.norm.weight', not a tensor"),
        ("config", "config.json does not match the weights"),
    ],
)
def test_bad_checkpoints(tiny_llama, tmp_path, cli, damage, expected):
    folder, _ = tiny_llama(fmt="bin" if damage == "pickle" else "safetensors")
    if damage == "header":
        p = folder / "model.safetensors"
        p.write_bytes(p.read_bytes()[:8] + b"\xff" * 40 + p.read_bytes()[48:])
    elif damage == "pickle":
        import collections

        sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
        sd["model.norm.weight"] = collections.Counter(a=1)  # any non-tensor object
        torch.save(sd, folder / "pytorch_model.bin")
    else:
        raw = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**raw, "intermediate_size": 48}))
    line = _one_error_line(cli("checkpoint", "export", str(folder), "--output", str(tmp_path / "o")))
    assert expected in line
