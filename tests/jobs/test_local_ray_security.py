"""The in-process Ray of a dsllm command, run as a user has it (no RAY_AUTH_MODE, no
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER in the environment): every listening socket of every process of
`dsllm curate` and `dsllm pack` is on loopback, and Ray's token authentication is on with an
owner-only token file. (`dsllm train --workers 2` is watched the same way in test_train_ray.py,
`dsllm demo` in test_demo.py.)"""

from __future__ import annotations

import stat

from tests.conftest import run_cli
from tests.listeners import run_watched, user_env


def test_curate_and_pack_in_process_ray_listen_on_loopback_only_with_token_auth(tmp_path):
    crawl = tmp_path / "crawl"
    made = run_cli("sample-crawl", str(crawl), "--warcs", "1", "--records", "40")
    assert made.returncode == 0, made.stderr
    home = tmp_path / "home"
    env = user_env(home)
    curate = run_watched(["curate", str(crawl), "--output", str(tmp_path / "out"), "--executor", "ray"], env)
    assert curate.returncode == 0, curate.stderr[-3000:]
    # the observation is not vacuous: Ray's own servers were seen listening
    assert {"gcs_server", "raylet"} <= set(curate.listening), curate.listening
    assert not curate.exposed(), curate.exposed()
    # Ray's token auth was on in its processes, and the token is readable by its owner only
    assert curate.auth["raylet"] == "token" and curate.auth["gcs_server"] == "token", curate.auth
    token = home / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.read_text().strip() not in curate.stdout + curate.stderr

    tok = run_cli(
        "tokenizer", "train", str(tmp_path / "out"), "--output", str(tmp_path / "tok"), "--vocab-size", "400", "--quiet"
    )
    assert tok.returncode == 0, tok.stderr[-2000:]
    pack = run_watched(
        ["pack", str(tmp_path / "out"), "--tokenizer", str(tmp_path / "tok"), "--output", str(tmp_path / "packed"),
         "--seq-len", "64"],
        env,
    )  # fmt: skip
    assert pack.returncode == 0, pack.stderr[-3000:]
    assert {"gcs_server", "raylet"} <= set(pack.listening), pack.listening
    assert not pack.exposed(), pack.exposed()
    assert pack.auth["raylet"] == "token", pack.auth
