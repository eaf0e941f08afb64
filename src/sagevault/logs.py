"""Application logs: structlog, JSON lines, ids only.

SageVault's own log calls pass ids and counts, never values. Third-party loggers that could
print PII or credentials (SQL echo with bound parameters, AWS SDK wire logs, an SP-API client at
DEBUG) are pinned to WARNING, and every record passes a filter that masks anything that looks
like an e-mail address, phone number or bearer token before it is written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

from sagevault.config import make_private_dir

PINNED = (
    "sqlalchemy",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "alembic",
    "botocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "sp_api",
    "httpx",
    "httpcore",
    "psycopg",
)

_SECRETS = re.compile(
    r"[^@\s\"']+@[^@\s\"']+\.[A-Za-z]{2,}"  # e-mail addresses
    r"|\+?\d[\d\s().-]{6,}\d"  # phone numbers
    r"|(?:Atza|Atzr)\|[\w\-|=]+"  # LWA access and refresh tokens
    r"|(?i:bearer)\s+[\w\-.=]+"
    r"|sv[eks]_[\w-]+"  # SageVault enrolment secrets, API keys, session tokens
)


def redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


class RedactingFilter(logging.Filter):
    """Masks third-party records; SageVault's own are redacted field by field before rendering
    (so that their timestamps, which look like numbers, stay readable)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("sagevault"):
            return True
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def _redact_event(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {k: redact(v) if isinstance(v, str) and k != "timestamp" else v for k, v in event.items()}


def configure_logging(log_file: Path | None, level: int = logging.INFO) -> None:
    """JSON lines to `log_file` (mode 0600) through the redacting filter; third parties pinned."""
    for name in PINNED:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    root.setLevel(level)
    release_logging()
    if log_file is not None:
        make_private_dir(log_file.parent)
        log_file.touch(mode=0o600, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(RedactingFilter())
        handler._sagevault = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_event,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )


def release_logging() -> None:
    """Close the log file `configure_logging` opened (a process that runs several commands, or
    one that is done, leaves no file open)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_sagevault", False):
            root.removeHandler(handler)
            handler.close()


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
