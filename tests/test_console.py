"""dsllm.console: results on stdout, messages on stderr, text never read as markup, and the
`--log-level` / `-v` flags choosing which `dsllm.*` log records reach stderr."""

from __future__ import annotations

import json
import logging

import pytest

from dsllm import console
from dsllm.jobs.cli import build_parser


def test_results_on_stdout_messages_on_stderr(capsys):
    console.out('{"a": 1}')
    console.note("starting")
    console.warn("careful")
    console.error("curate", "no inputs")
    cap = capsys.readouterr()
    assert json.loads(cap.out) == {"a": 1}
    assert cap.err.splitlines() == ["starting", "warning: careful", "dsllm curate: error: no inputs"]


def test_text_from_data_is_printed_as_it_is(capsys):
    text = "[bold red]x[/bold red] :smile: https://example.com/[b]?q=[/i] " + "w" * 300
    console.out(text)
    console.note(text)
    cap = capsys.readouterr()
    assert cap.out == text + "\n"  # no markup, no emoji, no wrapping at the terminal width
    assert cap.err == text + "\n"


def test_raw_passes_control_characters(capsys):
    console.raw("50%\r100%\n")
    console.raw("\rfetched 1 MB", err=True)
    cap = capsys.readouterr()
    assert cap.out == "50%\r100%\n"
    assert cap.err == "\rfetched 1 MB"


@pytest.mark.parametrize(
    "argv, shown, hidden",
    [
        (["plan", "--compute", "1e20"], ["warning"], ["info", "debug"]),
        (["-v", "plan", "--compute", "1e20"], ["warning", "info"], ["debug"]),
        (["plan", "--compute", "1e20", "-vv"], ["warning", "info", "debug"], []),
        (["--log-level", "error", "plan", "--compute", "1e20"], ["error"], ["warning"]),
        (["plan", "--compute", "1e20", "--log-level", "debug"], ["debug", "info"], []),
    ],
)
def test_log_level_flags(capsys, argv, shown, hidden):
    args = build_parser().parse_args(argv)
    handler = console.setup_logging(console.level_from_args(args))
    try:
        log = logging.getLogger("dsllm.curation.example")
        for name in ("debug", "info", "warning", "error"):
            getattr(log, name)(f"a {name} record")
        err = capsys.readouterr().err
    finally:
        logging.getLogger("dsllm").removeHandler(handler)
    for name in shown:
        assert f"{name.upper()} dsllm.curation.example: a {name} record" in err
    for name in hidden:
        assert f"a {name} record" not in err


def test_setup_twice_installs_one_handler(capsys):
    console.setup_logging(logging.INFO)
    handler = console.setup_logging(logging.INFO)
    try:
        logging.getLogger("dsllm.x").info("once")
        assert capsys.readouterr().err.count("once") == 1
    finally:
        logging.getLogger("dsllm").removeHandler(handler)
