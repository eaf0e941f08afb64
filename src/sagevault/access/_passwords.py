"""Passwords: the DPP rules, a bundled breached-password list, and Argon2id hashing."""

from __future__ import annotations

import functools
import gzip
import re
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sagevault.config import PolicyProfile, Settings
from sagevault.errors import AccessError

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


class PasswordHashing:
    """Argon2id with the deployment's cost; `dummy_verify` spends the same time on an unknown
    account so a failure does not tell whether the login exists."""

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )
        self._dummy = self._hasher.hash("sagevault dummy password for unknown accounts")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError, UnicodeEncodeError):
            return False

    def dummy_verify(self, password: str) -> None:
        self.verify(None, password)
