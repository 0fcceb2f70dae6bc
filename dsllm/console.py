"""User output through one console, diagnostics through `logging`.

- Results of a command (tables, JSON, the paths it wrote) go to stdout: `out(...)`.
- Messages for the person running it (what is starting, warnings, the one-line error) go to stderr:
  `note(...)`, `warn(...)`, `error(...)`, so stdout stays clean to pipe.
- Diagnostics of the library are `logging.getLogger(__name__)` records under `dsllm.*`;
  `setup_logging` shows them on stderr from the level `--log-level` / `-v` asks for (default: warnings),
  through rich's `RichHandler` on a terminal and as plain lines elsewhere (files, CI, Ray job logs).

Text is printed as it is: no rich markup, emoji codes or highlighting is applied, so bytes from the
data (URLs, page text, file names) never become markup. rich drops only a few control codes (BEL,
BS, VT, FF, CR), not ESC or the C1 codes, so text from crawled data goes through `printable` first.
Both consoles look up `sys.stdout` / `sys.stderr` when they print, so redirection works. Every
string printed and every log record passes through `dsllm.redact` (presigned-URL signatures, the
environment's AWS secrets).
"""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

stdout = Console(soft_wrap=True, markup=False, highlight=False, emoji=False)
stderr = Console(stderr=True, soft_wrap=True, markup=False, highlight=False, emoji=False)

LEVELS = ("debug", "info", "warning", "error")
_OURS = "_dsllm_console_handler"


# C0 (but newline and tab), DEL, C1 and the bidirectional / line-separator controls that can make a
# terminal line read differently from its bytes: shown as visible escapes instead
_UNSAFE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}
_UNSAFE.update(
    {c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
)


def printable(text: str) -> str:
    """`text` with every terminal control character (ESC, CSI, BEL, CR, bidi overrides...) shown as
    a visible escape such as `\\x1b`: what untrusted text (page text, URLs) goes through before a
    terminal sees it. Newlines and tabs are kept."""
    return text.translate(_UNSAFE)


def _clean(text: object) -> object:
    """Text with presigned-URL credentials and the environment's AWS secrets redacted (dsllm.redact)."""
    if isinstance(text, str):
        from dsllm.redact import redact

        return redact(text)
    return text


def out(text: object = "", end: str = "\n") -> None:
    """A command's result on stdout."""
    stdout.print(_clean(text), end=end, markup=False, highlight=False, emoji=False)


def raw(text: str, err: bool = False) -> None:
    """Text passed through as it is, control characters included (a Ray job's own log; a progress
    line redrawn with a carriage return), on stdout or, with `err`, stderr."""
    file = (stderr if err else stdout).file
    file.write(text)
    file.flush()


def note(text: object) -> None:
    """A message for the person running the command, on stderr."""
    stderr.print(_clean(text), markup=False, highlight=False, emoji=False)


def warn(text: object) -> None:
    """`warning: ...` on stderr."""
    note(f"warning: {text}")


def error(command: str | None, text: object) -> None:
    """The one line a user error becomes: `dsllm CMD: error: ...`."""
    note(f"dsllm {command}: error: {text}" if command else f"dsllm: error: {text}")


def add_logging_arguments(parser, suppress_defaults: bool = False) -> None:
    """`--log-level LEVEL` and `-v/--verbose` (info; twice: debug). With `suppress_defaults`, a
    subcommand's copy leaves the value the top-level parser set alone when not given."""
    import argparse

    d = {"default": argparse.SUPPRESS} if suppress_defaults else {}
    parser.add_argument(
        "--log-level", choices=LEVELS, help="diagnostics shown on stderr (default: warning)", **({"default": None} | d)
    )
    parser.add_argument(
        "-v", "--verbose", action="count", help="more diagnostics: -v info, -vv debug", **({"default": 0} | d)
    )


def level_from_args(args) -> int:
    """The logging level the command line asks for: --log-level wins over -v."""
    if getattr(args, "log_level", None):
        return getattr(logging, str(args.log_level).upper())
    verbose = getattr(args, "verbose", 0) or 0
    return logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING


class _RedactFilter(logging.Filter):
    """Log records leave with presigned-URL credentials and AWS secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        from dsllm.redact import redact

        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:  # the traceback text, formatted now
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _StderrHandler(logging.StreamHandler):
    """A plain-line handler that writes to whatever `sys.stderr` is at the time."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: int = logging.WARNING) -> logging.Handler:
    """Route `dsllm.*` log records at `level` and above to stderr (replacing an earlier setup)."""
    logger = logging.getLogger("dsllm")
    for h in [h for h in logger.handlers if getattr(h, _OURS, False)]:
        logger.removeHandler(h)
    handler: logging.Handler
    if stderr.is_terminal:
        handler = RichHandler(console=stderr, show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    setattr(handler, _OURS, True)
    handler.addFilter(_RedactFilter())
    handler.setLevel(level)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler
