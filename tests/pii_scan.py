"""Gather every byte a deployment stored, and the PII strings that must not be among them."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

from sagevault.catalog import CATALOG
from sagevault.db import create_engine_for
from sagevault.deployment import Deployment
from sagevault.vault import recognise
from sagevault.vault._operations import extract
from sagevault.vault._split import split


def _leaves(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _leaves(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _leaves(v)]
    return [obj] if isinstance(obj, str) else []


def pii_strings(payloads: list[Any], min_len: int = 5) -> set[str]:
    """String values at PII paths of `payloads` that never also occur in a non-PII value (the
    seller's own address may legitimately repeat a sandbox buyer's name)."""
    pii: set[str] = set()
    clear: set[str] = set()
    for payload in payloads:
        for doc in extract(payload, recognise(payload)):
            found: list[Any] = []
            unknown: dict[str, Any] = {}
            clear_doc = split(doc.body, CATALOG.tree(doc.document), "", found, unknown)
            pii.update(v for _, _, v in found if isinstance(v, str))
            pii.update(_leaves(unknown))
            clear.update(_leaves(clear_doc))
    clear_text = "\x00".join(clear)  # a PII value inside a clear one ("123456" in an order id) is no leak
    return {s for s in pii if len(s) >= min_len and s not in clear_text}


def stored_bytes(deployment: Deployment) -> bytes:
    """SQLite: the raw database, WAL and shm files. PostgreSQL: every value of every table,
    plus the raw heap files of our relations when this process can read the data directory."""
    engine = deployment.engine
    if engine.dialect.name == "sqlite":
        db = Path(str(engine.url.database))
        return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())
    chunks: list[bytes] = []
    owner = create_engine_for(deployment.settings.resolved_database_admin_url)  # CHECKPOINT, every table
    with owner.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    chunks.append(value if isinstance(value, bytes | memoryview) else str(value).encode())
        conn.execute(text("CHECKPOINT"))
        data_dir = conn.execute(text("SHOW data_directory")).scalar_one()
        files = conn.execute(
            text(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 't', 'i')"
            )
        ).scalars()
        for rel in files:
            path = Path(data_dir) / rel
            with suppress(OSError):  # not readable by this user: the row scan above covers every value
                chunks.append(path.read_bytes())
    owner.dispose()
    return b"".join(bytes(c) for c in chunks)


def leaked(values: set[str], haystack: bytes) -> list[str]:
    return sorted(v for v in values if v.encode() in haystack)


def written_files(d: Deployment) -> bytes:
    """Every file under the data dir but the keys and the vault's database (its PII is encrypted,
    which tests/vault checks): the security log, the application log, digests, TLS files."""
    root = d.settings.resolved_data_dir
    files = [p for p in root.rglob("*") if p.is_file() and "keys" not in p.parts]
    return b"".join(p.read_bytes() for p in files if not p.name.startswith("sagevault.db"))
