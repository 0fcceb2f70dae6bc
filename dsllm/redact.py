"""Credentials out of text: presigned-URL signatures and the AWS secrets of the environment.

    redact("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA...&X-Amz-Signature=ab12")
    -> "https://b.s3.amazonaws.com/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"

What is replaced by `REDACTED`:
- the values of the query parameters that authenticate a presigned URL: SigV4's `X-Amz-Signature`,
  `X-Amz-Credential`, `X-Amz-Security-Token`, SigV2's `Signature`, `AWSAccessKeyId`,
  `x-amz-security-token` (any case, URL-encoded or not), and Google Cloud Storage's `X-Goog-*`
  equivalents;
- the literal values of `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and `AWS_ACCESS_KEY_ID` as set
  in this process's environment (8 characters or longer), wherever they appear.

dsllm applies it to every line it prints (`dsllm.console`: results, notes, the one-line error), to
its log records, to tracebacks of unexpected errors (`install_excepthook`) and to the JSON files it
writes (`storage.write_json`: manifest.json, stats.json, train_config.json, checkpoints' JSON).
"""

from __future__ import annotations

import os
import re
import sys

REDACTED = "REDACTED"
_PARAMS = (
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
    "X-Goog-Credential",
    "Signature",
    "AWSAccessKeyId",
    "GoogleAccessId",
)
# name=value in a query string (after ? or &, or the %3F / %26 of an encoded URL); the value is the
# run of characters a query value carries (letters, digits, percent-escapes, - . _ ~ + / =), so the
# text after the URL (": not found") stays
_QUERY = re.compile(
    r"((?:[?&]|%3[Ff]|%26)(?:" + "|".join(map(re.escape, _PARAMS)) + r")(?:=|%3[Dd]))[A-Za-z0-9%._~+/=-]+",
    re.IGNORECASE,
)
ENV_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID")


def _env_values() -> list[str]:
    vals = {os.environ.get(k, "") for k in ENV_SECRETS}
    return sorted((v for v in vals if len(v) >= 8), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with presigned-URL credentials and this environment's AWS secrets replaced."""
    if not text:
        return text
    text = _QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    for value in _env_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_obj(obj):
    """`redact` over every string of a JSON-like value (dict keys included)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact_obj(k): redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


def install_excepthook() -> None:
    """Tracebacks of unexpected errors are printed redacted."""
    import traceback

    def hook(kind, value, tb) -> None:
        sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))

    sys.excepthook = hook
