"""`dsllm pack` keeps domains apart: every row holds documents of one domain (its `domain`
column), the manifest counts rows, tokens and documents per domain, and the output is the same
bytes with 1 or 2 Ray workers or none, and after a resume."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dsllm.curation.executor import LocalExecutor
from dsllm.tokenizer.pack import PackConfig, pack
from tests.domain_data import EOS, domain_docs, train_small_tokenizer, write_domain_shards

CFG = PackConfig(seq_len=128, row_group_rows=4, batch_docs=32)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    return write_domain_shards(root / "curated"), train_small_tokenizer(root / "tok")


def _rows(out: Path):
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("part-*.parquet"))])


def test_rows_hold_one_domain_and_manifest_counts_them(inputs, tmp_path):
    from tokenizers import Tokenizer

    curated, tok_dir = inputs
    manifest = pack([str(curated)], str(tok_dir), str(tmp_path / "p"), CFG, LocalExecutor(), log=lambda m: None)
    table = _rows(tmp_path / "p")
    ids = np.stack(table.column("input_ids").to_numpy(zero_copy_only=False))
    n_tok = table.column("n_tokens").to_numpy()
    dom = np.array(table.column("domain").to_pylist())
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    eos = tok.token_to_id(EOS)
    docs = domain_docs()
    assert sorted(manifest["domains"]) == sorted(docs)
    for name, texts in docs.items():
        # the oracle: the domain's own documents encoded by `tokenizers`, EOS after each
        want = np.bincount(
            np.concatenate([np.array(e.ids + [eos]) for e in tok.encode_batch(texts)]), minlength=tok.get_vocab_size()
        )
        sel = dom == name
        mask = np.arange(CFG.seq_len)[None, :] < n_tok[sel][:, None]  # non-padding tokens
        got = np.bincount(ids[sel][mask], minlength=tok.get_vocab_size())
        assert np.array_equal(got, want), name
        m = manifest["domains"][name]
        assert (m["rows"], m["tokens"], m["documents"]) == (int(sel.sum()), int(want.sum()), len(texts))
        assert (n_tok[sel] < CFG.seq_len).sum() <= 1  # at most one padded row per domain
    assert manifest["rows"] == len(dom) and manifest["tokens"] == int(n_tok.sum())


def test_same_bytes_with_two_ray_workers_and_resume(ray_local, inputs, tmp_path):
    from dsllm.jobs.runner import RayExecutor

    curated, tok_dir = inputs
    hashes = []
    for name, executor in (
        ("local", LocalExecutor()),
        ("ray1", RayExecutor(max_in_flight=1, quiet=True)),
        ("ray2", RayExecutor(max_in_flight=2, quiet=True)),
    ):
        pack([str(curated)], str(tok_dir), str(tmp_path / name), CFG, executor, log=lambda m: None)
        hashes.append(
            {
                p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((tmp_path / name).iterdir())
                if p.is_file() and p.suffix == ".parquet"
            }
        )
    assert hashes[0] == hashes[1] == hashes[2] and len(hashes[0]) == 4
    # a run killed after its first source: remove the later sources' markers and the manifest
    out = tmp_path / "local"
    for marker in ("source-00001.json", "source-00002.json"):
        (out / "_work" / marker).unlink()
    (out / "manifest.json").unlink()
    pack([str(curated)], str(tok_dir), str(out), CFG, LocalExecutor(), log=lambda m: None)
    assert hashes[0] == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.suffix == ".parquet"
    }
