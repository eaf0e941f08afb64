"""The migration runner. Each domain keeps its Alembic revisions in its own `migrations/`
folder; a `MigrationChain` names the folders whose revisions form one chain and the version
table it is tracked in. The vault, access and jobs tables form one chain (they live in one
database); the security log has a chain of its own (it may live in a database of its own)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

_RUNNER = Path(__file__).with_name("migrations")  # env.py and the revision template, shared by every chain


@dataclass(frozen=True, slots=True)
class MigrationChain:
    version_table: str
    locations: tuple[Path, ...]


def _config(conn: Connection, chain: MigrationChain) -> Config:
    cfg = _locations(chain)
    cfg.attributes["connection"] = conn
    cfg.attributes["version_table"] = chain.version_table
    return cfg


def _locations(chain: MigrationChain) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_RUNNER))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(str(p) for p in chain.locations))
    return cfg


def migrate(engine: Engine, chain: MigrationChain, revision: str = "heads") -> None:
    """Bring `chain` to its newest revision (or to `revision`), in one transaction."""
    with engine.begin() as conn:
        command.upgrade(_config(conn, chain), revision)


@functools.cache
def _heads(chain: MigrationChain) -> frozenset[str]:
    """The chain's newest revisions (read from its files once per process)."""
    return frozenset(ScriptDirectory.from_config(_locations(chain)).get_heads())


def schema_is_current(conn: Connection, chain: MigrationChain) -> bool:
    """Whether the database holds the chain's newest revisions (one read of its version table)."""
    current = MigrationContext.configure(conn, opts={"version_table": chain.version_table}).get_current_heads()
    return set(current) == _heads(chain)


def migrate_if_behind(engine: Engine, chain: MigrationChain) -> None:
    """`migrate`, when the database is not at the chain's newest revisions already."""
    with engine.connect() as conn:
        current = schema_is_current(conn, chain)
    if not current:
        migrate(engine, chain)
