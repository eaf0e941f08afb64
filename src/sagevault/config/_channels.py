"""Outbound channels must be encrypted: SageVault refuses a plaintext connection to any host that
is not this machine (DPP: Amazon Information is encrypted in transit).

- PostgreSQL over TCP to another host needs `sslmode=verify-full` (the server certificate is
  checked and so is its name); a Unix socket or a loopback address may go without.
- Redis to another host needs `rediss://` (TLS).
- An AWS KMS endpoint other than the SDK's default (which is HTTPS) must be `https://`.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.engine import make_url

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_local_host(host: str | None) -> bool:
    """No host (a Unix socket), a path, a loopback name or a loopback address."""
    if not host or host.startswith("/"):
        return True
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def database_problem(name: str, url: str) -> str | None:
    try:
        parsed = make_url(url)
    except Exception:
        return f"{name} is not a database URL (e.g. postgresql+psycopg://user@host:5432/db)"
    if not parsed.drivername.startswith("postgresql"):
        return None
    hosts = [parsed.host] if parsed.host else []
    query = {k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()}
    hosts += [h for h in str(query.get("host", "")).split(",") if h]
    if all(is_local_host(h) for h in hosts):
        return None
    if query.get("sslmode") != "verify-full":
        return (
            f"{name} points at a PostgreSQL server on another host without TLS verification; add "
            "?sslmode=verify-full (and sslrootcert=PATH for a private CA): SageVault sends nothing in clear"
        )
    return None


def redis_problem(name: str, url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme in ("redis", "redis+unix") and not (parts.scheme == "redis+unix" or is_local_host(parts.hostname)):
        return f"{name} points at Redis on another host in clear; use rediss:// (TLS): SageVault sends nothing in clear"
    if parts.scheme == "rediss" and parse_qs(parts.query).get("ssl_cert_reqs", ["required"])[-1] != "required":
        return f"{name} turns off Redis certificate checks (ssl_cert_reqs); remove that option"
    return None


def https_problem(name: str, url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_local_host(parts.hostname)):
        return None
    return f"{name} must be an https:// URL (http:// only to this machine): SageVault sends nothing in clear"
