"""The command line contract of SPEC.md: every command listed, every command with --help and the
flags SPEC names, user errors as one line with exit code 2 and no traceback."""

from __future__ import annotations

import pytest

from dsllm.jobs.cli import COMMANDS, main
from tests.conftest import run_cli

SPEC_COMMANDS = [
    "demo",
    "sample-crawl",
    "curate",
    "stats",
    "quality",
    "tokenizer",
    "pack",
    "mix",
    "train",
    "checkpoint",
    "eval",
    "decontam",
    "plan",
    "submit",
    "jobs",
]

# (argv before --help, flags SPEC.md promises)
SPEC_FLAGS = [
    (["demo"], ["--workdir"]),
    (["sample-crawl"], ["OUT", "--warcs", "--records", "--seed"]),
    (
        ["curate"],
        [
            "--output",
            "--config",
            "--set",
            "--dedup-index",
            "--skip",
            "--cc-base",
            "--limit",
            "--ray-address",
            "--requester-pays",
        ],
    ),
    (["stats"], ["PATH", "--json", "--html", "--sample", "--verify"]),
    (["quality", "train"], ["--positive", "--negative", "--output"]),
    (["tokenizer", "train"], ["--output", "--vocab-size"]),
    (["tokenizer", "from-gguf"], ["--output"]),
    (["tokenizer", "eval"], ["--data"]),
    (["pack"], ["--tokenizer", "--output", "--seq-len"]),
    (["mix"], ["PACKED", "--output", "--mixture", "--set", "--tokens"]),
    (["train"], ["--model", "--data", "--output", "--resume-from", "--max-steps", "--batch-size", "--workers"]),
    (["checkpoint", "list"], ["SRC"]),
    (["checkpoint", "export"], ["--output"]),
    (
        ["eval"],
        [
            "--model",
            "--data",
            "--max-rows",
            "--json",
            "--tasks",
            "--limit",
            "--shots",
            "--tokenizer",
            "--log-samples",
            "--html",
        ],
    ),
    (["decontam", "index"], ["--tasks", "--local", "--output"]),
    (["plan"], ["--compute"]),
    (["submit"], ["--address", "--wait"]),
    (["jobs"], ["list", "status", "logs", "stop", "--address"]),
]


def test_help_lists_every_spec_command_in_order():
    out = run_cli("--help")
    assert out.returncode == 0, out.stderr
    positions = [out.stdout.find(f"\n    {name}") for name in SPEC_COMMANDS]
    assert all(p > 0 for p in positions), out.stdout
    assert positions == sorted(positions)
    # SPEC's commands in SPEC's order; commands added by issues (e.g. `scaling`) may sit among them
    assert [name for name, _, _ in COMMANDS if name in SPEC_COMMANDS] == SPEC_COMMANDS


@pytest.mark.parametrize("argv,flags", SPEC_FLAGS, ids=[" ".join(a) for a, _ in SPEC_FLAGS])
def test_every_command_has_help_with_its_spec_flags(argv, flags, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: dsllm {' '.join(argv)}")
    missing = [f for f in flags if f not in text]
    assert not missing, f"`dsllm {' '.join(argv)} --help` lacks {missing}"


def test_no_command_prints_help_and_exits_2():
    out = run_cli()
    assert out.returncode == 2 and "sample-crawl" in out.stdout


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["stats", "/nonexistent/curated"], "/nonexistent/curated"),
        (["curate", "/nonexistent/in.warc.gz", "--output", "/tmp/dsllm-cli-test-out"], "/nonexistent/in.warc.gz"),
        (
            ["curate", "cc:CC-MAIN-2024-10", "--output", "/tmp/dsllm-cli-test-out", "--config", "/nonexistent.toml"],
            "/nonexistent.toml",
        ),
        (
            ["pack", "/nonexistent/shards", "--tokenizer", "/nonexistent/tok", "--output", "/tmp/dsllm-cli-p"],
            "/nonexistent",
        ),
        (["sample-crawl", "/tmp/dsllm-cli-sc", "--crawl", "CC-MAIN-24-10"], "CC-MAIN-24-10"),
        (
            ["train", "--model", "tiny", "--data", "/nonexistent/packed", "--output", "/tmp/dsllm-cli-run"],
            "/nonexistent/packed",
        ),
        (["demo", "--workdir", "/tmp/dsllm-cli-demo", "--set", "no_such_knob=1"], "no_such_knob"),
    ],
)
def test_user_errors_are_one_line_exit_2_no_traceback(argv, needle):
    out = run_cli(*argv, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr
    assert len(lines) == 1 and lines[0].startswith(f"dsllm {argv[0]}: error: "), out.stderr
    assert needle in lines[0]


def test_argparse_errors_exit_2_with_the_command_named():
    out = run_cli("sample-crawl", "--warcs", "many", "/tmp/x")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("dsllm sample-crawl: error:")


@pytest.mark.parametrize(
    "argv",
    [
        ["curate", "in.warc.gz", "--output", "o"],
        ["pack", "shards", "--tokenizer", "t", "--output", "o"],
        ["train", "--model", "tiny", "--data", "d", "--output", "o"],
        ["quality", "train", "--positive", "p", "--negative", "n", "--output", "o"],
        ["demo", "--workdir", "o"],
        ["tokenizer", "train", "shards", "--output", "o"],
        ["tokenizer", "eval", "t", "--data", "d"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_every_config_file_is_strict(argv, tmp_path):
    """A misspelt section in any command's --config FILE is one error line (exit 2), before any work."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[bogus_section]\nx = 1\n")
    proc = run_cli(*argv, "--config", str(cfg), cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "bogus_section" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
