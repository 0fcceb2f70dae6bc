"""C-Eval and CMMLU read from a local folder in their published layout (no offline package has them).

- C-Eval (`ceval-exam`): `dev/<subject>_dev.csv`, `val/<subject>_val.csv`, `test/<subject>_test.csv`
  with columns `id,question,A,B,C,D,answer[,explanation]`, and optionally `subject_mapping.json`
  (`{"<subject>": [English name, Chinese name, category]}`). The test split's answers are not
  published, so the validation split is scored.
- CMMLU: `dev/<subject>.csv` and `test/<subject>.csv` with columns `,Question,A,B,C,D,Answer`; the
  test split is scored.

Scored as DeepSeek LLM scores multiple choice (App. A.6): by perplexity over the answer options,
length-normalised (mean log-likelihood per token of each option's text). Prompt per subject: the
C-Eval header `以下是中国关于{科目}考试的单项选择题，请选出其中的正确答案。`, then up to `shots` solved
examples from the dev split (`{question}\\n答案：{correct option}`), then `{question}\\n答案：`;
each option's text is a continuation. Documents are numbered across subjects in sorted subject
order, so `--limit N` takes the first N questions of the first subjects.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from dsllm.errors import UserError

LETTERS = ("A", "B", "C", "D")


def layout(path: Path) -> str | None:
    """ "ceval" or "cmmlu" when the folder has that benchmark's published layout, else None."""
    if not path.is_dir():
        return None
    if any((path / "val").glob("*_val.csv")):
        return "ceval"
    if any((path / "test").glob("*.csv")) and (path / "dev").is_dir():
        return "cmmlu"
    return None


def _rows(path: Path) -> list[dict[str, str]]:
    """One CSV's questions: question, the four options and the answer letter (one error line if not)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            out = []
            for n, row in enumerate(reader, 2):
                low = {(k or "").strip().lower(): (v or "") for k, v in row.items() if k is not None}
                if "question" not in low or any(c.lower() not in low for c in LETTERS):
                    raise UserError(f"{path}: expected columns question, A, B, C, D, answer")
                answer = low.get("answer", "").strip().upper()
                if answer and answer not in LETTERS:
                    raise UserError(f"{path}:{n}: answer {answer[:20]!r} is not one of A, B, C, D")
                out.append({"question": low["question"], **{c: low[c.lower()] for c in LETTERS}, "answer": answer})
            return out
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise UserError(f"{path}: not a readable CSV file ({exc})") from None


def _subjects(root: Path, kind: str) -> list[tuple[str, Path, Path | None]]:
    """(subject, scored split file, dev file or None) in sorted subject order."""
    if kind == "ceval":
        scored = sorted((root / "val").glob("*_val.csv"))
        return [
            (p.name[: -len("_val.csv")], p, _existing(root / "dev" / p.name.replace("_val.csv", "_dev.csv")))
            for p in scored
        ]
    scored = sorted((root / "test").glob("*.csv"))
    return [(p.stem, p, _existing(root / "dev" / p.name)) for p in scored]


def _existing(p: Path) -> Path | None:
    return p if p.is_file() else None


def _subject_name(root: Path, subject: str) -> str:
    mapping = root / "subject_mapping.json"
    if mapping.is_file():
        try:
            names = json.loads(mapping.read_text(encoding="utf-8")).get(subject)
            if isinstance(names, list) and len(names) > 1 and isinstance(names[1], str):
                return names[1]
        except (ValueError, AttributeError):
            raise UserError(f"{mapping}: not a JSON object of subject names") from None
    return subject.replace("_", " ")


def _block(row: dict[str, str]) -> str:
    return f"{row['question'].strip()}\n答案："


def load(root: Path, kind: str, shots: int | None, request_cls) -> list:
    """Every scored question of the folder as four requests (one per option) of task `kind`, labels
    from `answer` (`request_cls`: tasks.Request, passed in so this module does not import tasks)."""
    shots = 5 if shots is None else shots
    out = []
    doc = 0
    for subject, scored, dev in _subjects(root, kind):
        header = f"以下是中国关于{_subject_name(root, subject)}考试的单项选择题，请选出其中的正确答案。\n\n"
        examples = [r for r in (_rows(dev) if dev is not None and shots > 0 else []) if r["answer"]][:shots]
        prefix = header + "".join(f"{_block(r)}{r[r['answer']].strip()}\n\n" for r in examples)
        for row in _rows(scored):
            if not row["answer"]:
                raise UserError(f"{scored}: a question without an answer (the scored split must have answers)")
            label = LETTERS.index(row["answer"])
            context = prefix + _block(row)
            for i, letter in enumerate(LETTERS):
                out.append(request_cls(kind, doc, i, context, row[letter].strip(), label))
            doc += 1
    if not out:
        raise UserError(f"{root}: no questions found in its {kind} layout")
    return out


def strings(root: Path) -> list[str]:
    """The test strings of every split (questions), for the decontamination index."""
    kind = layout(root)
    if kind is None:
        raise UserError(f"{root}: not a C-Eval or CMMLU folder")
    out: dict[str, None] = {}
    for split in ("dev", "val", "test"):
        for p in sorted((root / split).glob("*.csv")) if (root / split).is_dir() else []:
            out.update((r["question"].strip(), None) for r in _rows(p))
    return [s for s in out if s]
