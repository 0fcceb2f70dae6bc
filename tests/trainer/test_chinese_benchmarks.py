"""C-Eval and CMMLU from local folders in their published layouts (CSV per subject): the requests
against prompts written out here by hand, accuracy through `dsllm eval` against `transformers`'
log-likelihoods, and the questions in a decontamination index (a page quoting one is dropped)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsllm.errors import UserError
from dsllm.trainer.benchmarks import tasks as T
from tests.trainer.test_benchmarks import OFFLINE, _reference_ll, _tokenizer

CEVAL_HEADER = "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n"


def _ceval(root):
    """Two subjects; computer_network has a Chinese name in subject_mapping.json, art_studies not."""
    for d in ("dev", "val", "test"):
        (root / d).mkdir(parents=True)
    (root / "subject_mapping.json").write_text(
        json.dumps({"computer_network": ["Computer Network", "计算机网络", "STEM"]}, ensure_ascii=False),
        encoding="utf-8",
    )
    (root / "dev" / "computer_network_dev.csv").write_text(
        "id,question,A,B,C,D,answer,explanation\n"
        '0,TCP 属于哪一层？,传输层,网络层,应用层,物理层,A,"TCP 是传输层协议"\n'
        "1,IP 地址有多少位？,16,32,64,128,B,\n",
        encoding="utf-8",
    )
    (root / "val" / "computer_network_val.csv").write_text(
        "id,question,A,B,C,D,answer\n"
        "0,HTTP 默认端口是？,21,80,443,8080,B\n"
        '1,"DNS 的作用是什么？",域名解析,加密,路由,压缩,A\n',
        encoding="utf-8",
    )
    (root / "test" / "computer_network_test.csv").write_text(
        "id,question,A,B,C,D\n0,以太网帧的最小长度是多少字节？,32,46,64,128\n", encoding="utf-8"
    )
    (root / "val" / "art_studies_val.csv").write_text(
        "id,question,A,B,C,D,answer\n0,《蒙娜丽莎》的作者是谁？,达·芬奇,米开朗基罗,拉斐尔,梵高,A\n", encoding="utf-8"
    )


def _cmmlu(root):
    (root / "dev").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "dev" / "agronomy.csv").write_text(
        ",Question,A,B,C,D,Answer\n0,水稻属于什么科？,禾本科,豆科,菊科,十字花科,A\n", encoding="utf-8"
    )
    (root / "test" / "agronomy.csv").write_text(
        ",Question,A,B,C,D,Answer\n0,小麦的主要营养成分是？,蛋白质,淀粉,脂肪,纤维素,B\n"
        "1,玉米原产于哪里？,亚洲,欧洲,美洲,非洲,C\n",
        encoding="utf-8",
    )


def test_ceval_folder_gives_the_documented_prompts_and_labels(tmp_path):
    _ceval(tmp_path / "ceval-exam")
    spec, reqs = T.load_requests(str(tmp_path / "ceval-exam"), shots=5)
    assert (spec.name, spec.kind, spec.norm) == ("ceval", "mc", "length")
    assert len(reqs) == 3 * 4  # the validation split: 1 + 2 questions, four options each
    # subjects in sorted order: art_studies (no Chinese name: the file name), then computer_network
    art = [r for r in reqs if r.doc_id == 0]
    assert [r.continuation for r in art] == ["达·芬奇", "米开朗基罗", "拉斐尔", "梵高"] and art[0].label == 0
    assert (
        art[0].context
        == "以下是中国关于art studies考试的单项选择题，请选出其中的正确答案。\n\n《蒙娜丽莎》的作者是谁？\n答案："
    )
    http = [r for r in reqs if r.doc_id == 1]
    shots = "TCP 属于哪一层？\n答案：传输层\n\nIP 地址有多少位？\n答案：32\n\n"
    assert http[0].context == CEVAL_HEADER + shots + "HTTP 默认端口是？\n答案："
    assert [r.continuation for r in http] == ["21", "80", "443", "8080"] and {r.label for r in http} == {1}
    assert [r.idx for r in http] == [0, 1, 2, 3]
    dns = [r for r in reqs if r.doc_id == 2]
    assert dns[0].label == 0 and dns[0].context.endswith("\n\nDNS 的作用是什么？\n答案：")
    # --shots 1 keeps the first dev example; --shots 0 none; --limit counts questions
    _, one = T.load_requests(str(tmp_path / "ceval-exam"), shots=1, limit=2)
    assert {r.doc_id for r in one} == {0, 1}
    assert [r for r in one if r.doc_id == 1][
        0
    ].context == CEVAL_HEADER + "TCP 属于哪一层？\n答案：传输层\n\nHTTP 默认端口是？\n答案："
    _, zero = T.load_requests(str(tmp_path / "ceval-exam"), shots=0)
    assert [r for r in zero if r.doc_id == 1][0].context == CEVAL_HEADER + "HTTP 默认端口是？\n答案："


def test_cmmlu_folder_scores_its_test_split(tmp_path):
    _cmmlu(tmp_path / "cmmlu")
    spec, reqs = T.load_requests(str(tmp_path / "cmmlu"))
    assert spec.name == "cmmlu" and len(reqs) == 8
    assert [r.label for r in reqs if r.idx == 0] == [1, 2]
    assert reqs[4].context == (
        "以下是中国关于agronomy考试的单项选择题，请选出其中的正确答案。\n\n"
        "水稻属于什么科？\n答案：禾本科\n\n玉米原产于哪里？\n答案："
    )
    assert [r.continuation for r in reqs[4:]] == ["亚洲", "欧洲", "美洲", "非洲"]


def test_bad_folders_are_one_line_errors(tmp_path):
    _ceval(tmp_path / "c")
    (tmp_path / "c" / "val" / "bad_val.csv").write_text("id,question,A,B,C,D,answer\n0,q,a,b,c,d,E\n")
    with pytest.raises(UserError, match=r"bad_val.csv:2: answer 'E' is not one of A, B, C, D"):
        T.load_requests(str(tmp_path / "c"))
    (tmp_path / "c" / "val" / "bad_val.csv").write_text("id,prompt,A,B\n0,q,a,b\n")
    with pytest.raises(UserError, match="expected columns question, A, B, C, D, answer"):
        T.load_requests(str(tmp_path / "c"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="unknown task"):
        T.spec_of(str(tmp_path / "empty"))


def test_eval_cli_on_a_ceval_folder_matches_transformers(tiny_llama, tmp_path, cli):
    folder, ref = tiny_llama(vocab=300, max_pos=8192)  # few-shot Chinese prompts fit whole
    tok = _tokenizer(folder, 300)
    _ceval(tmp_path / "ceval-exam")
    log = tmp_path / "samples.jsonl"
    res = cli(
        "eval", "--model", str(folder), "--tasks", str(tmp_path / "ceval-exam"), "--json", "--log-samples", str(log),
        env=OFFLINE,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 12 and {r["task"] for r in lines} == {"ceval"}
    per_doc: dict[int, list[float]] = {}
    for rec in lines:
        want, n = _reference_ll(ref, tok, rec["context"], rec["continuation"])
        assert rec["num_tokens"] == n and rec["loglikelihood"] == pytest.approx(want, abs=1e-4)
        per_doc.setdefault(rec["doc_id"], [0.0] * 4)[rec["idx"]] = want / n
    labels = {0: 0, 1: 1, 2: 0}  # from the CSVs above
    correct = sum(int(np.argmax(per_doc[d]) == lab) for d, lab in labels.items())
    assert json.loads(res.stdout)[0]["tasks"]["ceval"] == {"metric": "acc_len", "value": correct / 3, "docs": 3}


def test_decontamination_index_holds_the_questions_of_every_split(tmp_path, cli):
    from dsllm.curation.decontam.index import DecontamIndex

    _ceval(tmp_path / "ceval-exam")
    idx = tmp_path / "idx.npz.xz"
    res = cli("decontam", "index", "--tasks", str(tmp_path / "ceval-exam"), "--output", str(idx))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["test_strings"] == {"ceval": 6}  # dev 2, val 2 + 1, test 1
    index = DecontamIndex.load(str(idx))
    quoting = "课后练习：以太网帧的最小长度是多少字节？请写出计算过程。"
    assert index.match([quoting, "以太网的历史很长，今天我们讨论别的话题。"]) == ["ceval", None]
