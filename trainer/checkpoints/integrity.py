"""SHA-256 of every file of the checkpoints dsllm writes, checked when they are loaded.

Native step folders (`Checkpointer`) and exports (`export_hf`) carry a `SHA256SUMS` file in the
format of coreutils' `sha256sum` (`<64 hex>  <name>` per line), so `sha256sum -c SHA256SUMS` in the
folder checks it by hand too. Loading a local checkpoint folder (`hf.resolve_checkpoint`:
`train --resume-from`, a rerun resuming its latest step, `eval`, `checkpoint export`) re-hashes every
listed file that is present, streamed in 8 MiB reads, and refuses a mismatch with one line naming
the file. A folder without `SHA256SUMS` (a Hugging Face download, an older dsllm checkpoint) is
loaded as before: nothing records what its bytes should be (S3 downloads are still checked against
S3's own checksum or ETag, `remote` / `stream`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from dsllm import storage
from dsllm.errors import UserError

SUMS = "SHA256SUMS"
READ = 8 << 20
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


class HashingWriter:
    """A binary file object that hashes what is written through it (SHA-256)."""

    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def write(self, data) -> int:
        self.h.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def sha256_bytes(data) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(READ):
            h.update(chunk)
    return h.hexdigest()


def format_sums(digests: dict[str, str]) -> str:
    """`sha256sum` output for {file name: hex digest}, sorted by name."""
    for name in digests:
        storage.check_relative(name, SUMS)
    return "".join(f"{digests[n]}  {n}\n" for n in sorted(digests))


def write_sums(folder: str | Path, digests: dict[str, str]) -> None:
    storage.write_text(storage.join(str(folder), SUMS), format_sums(digests))


def read_sums(path: Path, where: str) -> dict[str, str]:
    """{name: hex} of a SHA256SUMS file; a malformed line or a name leaving the folder is refused."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: {SUMS} unreadable ({exc})") from None
    out = {}
    for i, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if not m:
            raise UserError(f"{where}: {SUMS} line {i} is not `<sha256>  <file name>`")
        name = m.group(2)
        storage.check_relative(name, f"{where}: {SUMS} file name")
        if "/" in name:
            raise UserError(f"{where}: {SUMS} names {name!r}, outside the checkpoint folder")
        out[name] = m.group(1)
    return out


def verify_folder(folder: Path, where: str, skip: Iterable[str] = ()) -> list[str]:
    """Check every file `folder/SHA256SUMS` lists and that is present (a fetch may leave optimizer
    state behind; a missing weight file is reported by whoever needs it). Returns the names
    verified ([] when the folder has no SHA256SUMS)."""
    sums_path = folder / SUMS
    if not sums_path.is_file():
        return []
    sums, skipped, done = read_sums(sums_path, where), set(skip), []
    for name, want in sums.items():
        path = folder / name
        if name in skipped or not path.is_file():
            continue
        if sha256_file(path) != want:
            raise UserError(
                f"{where}: {name} is corrupt: its SHA-256 differs from the one recorded in {SUMS} when "
                "it was written (a flipped bit or a damaged copy); use another checkpoint or restore the file"
            )
        done.append(name)
    return done
