"""The application log: SageVault's own lines and third-party ones pass the redaction that
masks e-mail addresses, phone numbers and every kind of token before anything is written."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagevault.logs import configure_logging, get_logger, release_logging

SECRETS = {
    "session": "svs_Zt3kQ9vLmX2pR8wYc4bN6dH1fJ0sA5eU7gK",
    "api key": "svk_0123456789abcdef_Zt3kQ9vLmX2pR8wYc4bN6dH1fJ0sA5eU7gKqWxYz012",
    "enrolment": "sve_Zt3kQ9vLmX2pR8wYc4bN6dH1fJ0s",
    "LWA refresh": "Atzr|IwEBIA-Zt3kQ9vLmX2pR8wYc4bN6dH1fJ0s",
    "bearer": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc",
    "e-mail": "maria.silva@marketplace.amazon.com",
    "phone": "+1 206-555-0142",
}


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs" / "sagevault.log"
    configure_logging(path)
    yield path
    release_logging()


def test_tokens_and_pii_are_masked_in_our_lines_and_in_third_party_lines(log_file: Path) -> None:
    for what, secret in SECRETS.items():
        get_logger("sagevault.test").warning("request refused", what=what, detail=f"sent {secret} in a header")
        logging.getLogger("httpx").warning("HTTP Request: header value %s", secret)
    written = log_file.read_text()
    assert written.count("[redacted]") >= 2 * len(SECRETS)
    leaked = [what for what, secret in SECRETS.items() if secret.split()[-1] in written]
    assert leaked == []
    assert (log_file.stat().st_mode & 0o777) == 0o600
