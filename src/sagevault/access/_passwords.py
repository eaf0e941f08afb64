"""Passwords: the DPP rules, a bundled breached-password list, Argon2id hashing, and a new
password prepared (checked and hashed) before the transaction that sets it."""

from __future__ import annotations

import functools
import gzip
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol

import argon2
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.engine import Connection

from sagevault.config import PolicyProfile, Settings
from sagevault.errors import AccessError

from ._schema import password_history

_CLASSES = (
    ("an upper-case letter", re.compile(r"[A-Z]")),
    ("a lower-case letter", re.compile(r"[a-z]")),
    ("a digit", re.compile(r"\d")),
    ("a symbol", re.compile(r"[^A-Za-z0-9]")),
)
_LOGIN_PARTS = re.compile(r"[a-z0-9]+")
_CORE = re.compile(r"^[^a-z]*(.*?)[^a-z]*$", re.S)


@functools.cache
def _breached() -> frozenset[str]:
    data = resources.files("sagevault.access").joinpath("data/breached-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode().split("\n")) - {""}


def is_breached(password: str) -> bool:
    """On the bundled list as typed (case folded), or once the digits and symbols wrapped around
    its letters are taken off ("Password123!" is "password")."""
    folded = password.lower()
    core = _CORE.fullmatch(folded)
    candidates = {folded, core.group(1) if core else folded}
    return not candidates.isdisjoint(_breached())


def check_strength(password: str, login: str, policy: PolicyProfile) -> None:
    """Refuse a password the policy does not allow, saying every rule it breaks. The password
    itself never appears in the message."""
    try:
        password.encode()
    except UnicodeEncodeError:
        raise AccessError("password refused: it holds characters that are not text", reason="weak_password") from None
    problems = []
    if len(password) < policy.password_min_length:
        problems.append(f"at least {policy.password_min_length} characters")
    missing = [name for name, pattern in _CLASSES if not pattern.search(password)]
    if missing:
        problems.append("also " + ", ".join(missing))
    folded = password.lower()
    parts = [p for p in _LOGIN_PARTS.findall(login.lower()) if len(p) >= 3]
    if login.lower() in folded or any(p in folded for p in parts):
        problems.append("no part of the login")
    if problems:
        raise AccessError("password refused: it needs " + "; ".join(problems), reason="weak_password")
    if is_breached(password):
        raise AccessError(
            "password refused: it is on the list of passwords known from breaches; choose another",
            reason="breached_password",
        )


class PasswordHasher(Protocol):
    """How passwords are hashed and checked. `Argon2Hashing` is the real one;
    `sagevault.testing.fast_password_hashing()` is for tests where hashing cost is not under test."""

    def hash(self, password: str) -> str: ...

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`. With `stored` None (no such account, or one that
        may not log in) it spends the time of a real check and answers False."""
        ...


class Argon2Hashing:
    """Argon2id at the deployment's cost. A check against no stored hash spends the same time on
    a dummy one, so a failure does not tell whether the login exists."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = argon2.PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)

    @classmethod
    def from_settings(cls, settings: Settings) -> Argon2Hashing:
        return cls(
            time_cost=settings.password_hash_time_cost,
            memory_kib=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )

    @functools.cached_property
    def _dummy(self) -> str:
        """What a check without a stored hash verifies against: made at the first check, so opening
        a deployment (every CLI command) costs no hashing."""
        return self._hasher.hash("sagevault dummy password for unknown accounts")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        dummy = self._dummy  # made by the first check of any kind: the first one tells nothing either
        try:
            return self._hasher.verify(stored or dummy, password) and stored is not None
        except (VerificationError, InvalidHashError, UnicodeEncodeError):
            return False


@dataclass(frozen=True, slots=True)
class NewPassword:
    """A new password checked against the rules and the principal's history, and hashed: the
    costly part of setting one (an Argon2 hash and up to `password_history` verifications), done
    before the write transaction so that it holds no lock meanwhile."""

    principal_id: str
    password_hash: str = field(repr=False)
    checked_with: str | None = field(repr=False)  # the newest stored hash when the history was read


def prepare_new_password(
    conn: Connection, hasher: PasswordHasher, profile: PolicyProfile, principal_id: str, login: str, password: str
) -> NewPassword:
    """Refuse a password the policy does not allow (weak, breached, one of the last
    `password_history`), or hash it. Reads only."""
    check_strength(password, login, profile)
    history = list(
        conn.execute(
            select(password_history.c.password_hash)
            .where(password_history.c.principal_id == principal_id)
            .order_by(password_history.c.set_at.desc())
            .limit(profile.password_history)
        ).scalars()
    )
    if any(hasher.verify(old, password) for old in history):
        raise AccessError(
            f"password refused: it is one of your last {profile.password_history}; choose a new one",
            reason="password_reused",
        )
    return NewPassword(principal_id, hasher.hash(password), history[0] if history else None)


def still_current(conn: Connection, prepared: NewPassword) -> bool:
    """Whether the history `prepared` was checked against is still the principal's (no password
    was set between the check and now)."""
    newest = conn.execute(
        select(password_history.c.password_hash)
        .where(password_history.c.principal_id == prepared.principal_id)
        .order_by(password_history.c.set_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    return newest == prepared.checked_with
