"""The application log: SageVault's own lines and third-party ones pass the redaction that
masks e-mail addresses, phone numbers and every kind of token before anything is written."""

from __future__ import annotations

import json
import logging
import re
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


def test_our_lines_are_json_with_a_readable_utc_time_and_chatty_libraries_stay_quiet(log_file: Path) -> None:
    """SageVault's lines are one JSON object each whose time is not masked as a number; the SQL
    echo and HTTP client chatter at INFO (which would carry bound values and URLs) is not written."""
    get_logger("sagevault.test").info("keys rotated", tenant="T1", records=3)
    logging.getLogger("sqlalchemy.engine").info("INSERT INTO records VALUES (%s)", "maria.silva@example.com")
    logging.getLogger("httpx").info("HTTP Request: GET https://127.0.0.1:8443/api/v1/tenants 200")
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1, lines
    line = json.loads(lines[0])
    assert (line["event"], line["level"], line["tenant"], line["records"]) == ("keys rotated", "info", "T1", 3)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["timestamp"]), line["timestamp"]


def test_configuring_again_writes_each_line_once_and_a_released_log_gets_no_more_lines(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "sagevault.log"
    configure_logging(path)
    configure_logging(path)  # a process that runs a second command: the file is opened again, not twice
    get_logger("sagevault.test").warning("written once")
    release_logging()
    get_logger("sagevault.test").warning("after release")
    written = path.read_text()
    assert written.count("written once") == 1 and "after release" not in written
    assert not any(getattr(h, "_sagevault", False) for h in logging.getLogger().handlers)
