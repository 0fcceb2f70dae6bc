"""Progress for logs (issue 20.6): away from a terminal, each line names its stage, with counts, rate
and ETA; a line at the start, every interval, and at the end."""

from __future__ import annotations

import io
import re

from dsllm.progress import StageProgress

LINE = re.compile(
    r"^\[(?P<stage>[\w/]+)\] (?P<done>\d+)/(?P<total>\d+) inputs \((?P<pct>\d+)%\) \| "
    r"(?P<rate>[\d.]+)/s \| eta (?P<eta>\S+) \| (?P<elapsed>[\d.]+)s$"
)


def test_plain_lines_name_the_stage_with_counts_rate_and_eta():
    out = io.StringIO()  # not a terminal: what a log file, nohup or a Ray job log sees
    with StageProgress("curate/inputs", 4, unit="inputs", stream=out, interval=0) as p:
        for _ in range(4):
            p.advance()
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # the start, then one per task with interval 0
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [int(m["done"]) for m in parsed] == [0, 1, 2, 3, 4]
    assert {m["stage"] for m in parsed} == {"curate/inputs"} and {int(m["total"]) for m in parsed} == {4}
    assert [int(m["pct"]) for m in parsed] == [0, 25, 50, 75, 100]
    assert parsed[-1]["eta"] == "done" and float(parsed[-1]["rate"]) > 0


def test_interval_limits_lines_but_always_prints_the_end():
    out = io.StringIO()
    p = StageProgress("pack/pack_source", 1000, unit="inputs", stream=out, interval=3600)
    for _ in range(1000):
        p.advance()
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("[pack/pack_source] 1000/1000 inputs (100%)")


def test_quiet_prints_nothing():
    out = io.StringIO()
    with StageProgress("x", 3, stream=out, quiet=True) as p:
        p.advance(3)
    assert out.getvalue() == ""
