"""`dsllm.redact` on real presigned URLs made by botocore (SigV4 and SigV2, with a session token):
every credential-bearing parameter is replaced, the rest of the URL (host, key, expiry) is kept;
and the redaction reaches log records, tracebacks of unexpected errors and written JSON."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from dsllm.redact import REDACTED, redact

CREDS = {
    "aws_access_key_id": "AKIAREDACTTEST000001",
    "aws_secret_access_key": "redactTestSecret/Key+aaaaaaaaaaaaaaaaaaaaa",
    "aws_session_token": "redactTestSessionTokenZZZZZZZZZZZZ",
}
SECRET_PARAMS = {
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "signature",
    "awsaccesskeyid",
}


def _presigned(version: str) -> str:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="https://s3.amazonaws.com",
        config=Config(signature_version=version),
        **CREDS,
    )
    return s3.generate_presigned_url("get_object", Params={"Bucket": "b-1", "Key": "dir/a b.warc.gz"}, ExpiresIn=900)


@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_presigned_url_credentials_are_replaced_and_the_rest_kept(version):
    url = _presigned(version)
    query = parse_qs(urlsplit(url).query)
    present = {k for k in query if k.lower() in SECRET_PARAMS}
    assert len(present) >= 3, query  # the URL really carries credentials (botocore's own output)
    clean = redact(f"dsllm curate: error: {url}: not found (HTTP 404)")
    assert CREDS["aws_access_key_id"] not in clean and CREDS["aws_session_token"] not in clean
    got = parse_qs(urlsplit(clean.split(": error: ", 1)[1].split(": not found")[0]).query)
    for k, v in query.items():  # every parameter survives; credentials as REDACTED, others unchanged
        assert got[k] == ([REDACTED] if k in present else v), k
    assert urlsplit(clean.split(": error: ", 1)[1]).path == urlsplit(url).path
    # the same URL nested (URL-encoded) inside another URL's query
    nested = redact("https://proxy.example/fetch?u=" + quote(url, safe=""))
    for k in present:
        for v in query[k]:
            assert quote(v, safe="") not in nested and v not in nested


def test_environment_secrets_are_replaced(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDS["aws_secret_access_key"])
    text = f"boto said: bad key {CREDS['aws_secret_access_key']}!"
    assert redact(text) == f"boto said: bad key {REDACTED}!"
    assert redact("short values are left alone: abc") == "short values are left alone: abc"


def test_log_records_and_written_json_are_redacted(tmp_path, capsys):
    from dsllm import console, storage

    url = _presigned("s3v4")
    handler = console.setup_logging(logging.INFO)
    try:
        logging.getLogger("dsllm.test").warning("fetching %s", url)
        try:
            raise OSError(f"cannot open {url}")
        except OSError:
            logging.getLogger("dsllm.test").exception("failed")
    finally:
        logging.getLogger("dsllm").removeHandler(handler)
    err = capsys.readouterr().err
    assert "fetching https://" in err and "cannot open https://" in err
    assert CREDS["aws_session_token"] not in err and CREDS["aws_access_key_id"] not in err
    storage.write_json(str(tmp_path / "m.json"), {"inputs": [{"uri": url}], url: 1})
    text = (tmp_path / "m.json").read_text()
    assert CREDS["aws_session_token"] not in text and "X-Amz-Signature=REDACTED" in text
    assert json.loads(text)["inputs"][0]["uri"].startswith("https://s3.amazonaws.com/b-1/dir/a%20b.warc.gz?")


def test_unexpected_error_traceback_is_redacted():
    url = _presigned("s3v4")
    code = (
        f"import sys\nfrom dsllm.redact import install_excepthook\ninstall_excepthook()\nraise RuntimeError({url!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and "RuntimeError: https://s3.amazonaws.com/b-1/" in proc.stderr
    assert CREDS["aws_session_token"] not in proc.stderr and "X-Amz-Signature=REDACTED" in proc.stderr
