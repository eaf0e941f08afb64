"""SQLite backups: the online backup API copies the vault's database (one consistent snapshot,
writers never held up) into memory; a restore works on the image in memory, replays there, and
writes the result with VACUUM INTO (a fresh file: no free page, no WAL, nothing deleted in it),
then atomically replaces the database file. Nothing of the image reaches the disk before the
replay is done.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import StaticPool

from sagevault.errors import ConfigError, IntegrityError, PayloadError

from ._backup_pg import AUDIT_TABLES

_ROLLBACK_JOURNAL = b"\x01\x01"  # header bytes 18-19: 1 = rollback journal, 2 = WAL


def database_path(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise PayloadError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def image(path: Path) -> bytes:
    """A consistent copy of the database at `path` (its security-log tables left out, if the
    deployment keeps them in the same file), compacted, as the bytes of a database file."""
    if not path.exists():
        raise ConfigError(f"the vault's database {path} does not exist")
    with (
        closing(sqlite3.connect(path, isolation_level=None)) as source,
        closing(sqlite3.connect(":memory:", isolation_level=None)) as copy,
    ):
        source.backup(copy)
        for table in sorted(AUDIT_TABLES):
            copy.execute(f'DROP TABLE IF EXISTS "{table}"')
        copy.execute("VACUUM")
        data = bytearray(copy.serialize())
    data[18:20] = _ROLLBACK_JOURNAL
    return bytes(data)


@contextmanager
def in_memory(data: bytes) -> Iterator[tuple[Engine, sqlite3.Connection]]:
    """The image as a database in memory, and an engine over it (one connection)."""
    raw = bytearray(data)
    raw[18:20] = _ROLLBACK_JOURNAL  # an in-memory database cannot keep a WAL
    memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    try:
        memory.deserialize(bytes(raw))
        if memory.execute("PRAGMA quick_check").fetchone() != ("ok",):
            raise IntegrityError("the backup's database image is damaged (SQLite's quick_check fails)")
    except sqlite3.DatabaseError:
        memory.close()
        raise IntegrityError("the backup's database image is not an SQLite database") from None
    engine = create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
    try:
        yield engine, memory
    finally:
        engine.dispose()
        memory.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_beside(memory: sqlite3.Connection, live: Path) -> Path:
    """The restored database written with VACUUM INTO to a new file (0600) beside `live`."""
    target = live.with_name(f".{live.name}.restore-{secrets.token_hex(6)}")
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        memory.execute("VACUUM INTO ?", (str(target),))
        with closing(sqlite3.connect(target, isolation_level=None)) as written:
            if written.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise IntegrityError("the restored database did not write out whole; nothing was replaced")
            written.execute("PRAGMA journal_mode=WAL")
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        discard(target)
        raise
    return target


def discard(path: Path) -> None:
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with suppress(FileNotFoundError):
            name.unlink()


def swap(target: Path, live: Path) -> None:
    """Replace the live database with `target` in one rename; its old WAL and shared-memory
    index go first (a WAL left beside the new file would be replayed into it)."""
    for stale in (Path(f"{live}-wal"), Path(f"{live}-shm")):
        with suppress(FileNotFoundError):
            stale.unlink()
    os.replace(target, live)
    _fsync_dir(live.parent)
    for stale in (Path(f"{live}-wal"), Path(f"{live}-shm")):
        with suppress(FileNotFoundError):
            stale.unlink()
