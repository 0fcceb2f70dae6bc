"""The in-process Ray of a dsllm command: loopback only, Ray's token authentication left on.

Ray ≥ 2.5x turns token authentication on for a new local `ray.init()` when `RAY_AUTH_MODE` is
unset, and writes a token to `~/.ray/auth_token`; dsllm never sets `RAY_AUTH_MODE` itself. What
it adds:
- `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`: with it Ray keeps the node address 127.0.0.1, so the
  GCS, raylet, object manager, workers and agents all listen on loopback (without it Ray resolves
  the node to the host's network address and its gRPC servers listen on every interface);
- the token file, when dsllm is the one to create it, is written owner-only (0600): Ray writes it
  with the process umask, which on a shared machine lets other local users read it.
"""

from __future__ import annotations

import os
from pathlib import Path


def prepare_local_ray() -> None:
    """Environment for an in-process Ray bound to 127.0.0.1 with Ray's default authentication."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: Ray may already be imported
    if os.environ.get("RAY_AUTH_MODE", "token").lower() == "token":
        ensure_private_token()


def default_token_path() -> Path:
    """Where Ray looks for its token when neither RAY_AUTH_TOKEN nor RAY_AUTH_TOKEN_PATH is set."""
    return Path.home() / ".ray" / "auth_token"


def ensure_private_token() -> Path | None:
    """Create Ray's default token file owner-only if no token is configured yet; return its path.

    An existing token (file, RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH) is left as it is."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return None
    path = default_token_path()
    if path.exists():
        return path
    from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another dsllm command created it first
        return path
    except OSError:  # an unwritable home: Ray reports its own token problem, as without dsllm
        return None
    with os.fdopen(fd, "w") as f:
        f.write(generate_new_authentication_token())
    return path
