"""The application's LWA credentials (client id and secret) and the endpoints it talks to.

They come from a TOML file only this user can read (0600), never from the command line or a plain
environment variable. The secret is kept in it either wrapped by the master key provider (the
local key file or the KMS: what `sagevault connect app` writes) or, for a file managed by other
means, in clear. Endpoints must be https:// URLs: nothing goes to Amazon in clear."""

from __future__ import annotations

import base64
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import tomli_w

from sagevault.crypto import KeyProvider
from sagevault.errors import ConfigError, KeyProviderError, NotConfigured, shown

# Amazon's SP-API endpoints per region and the LWA token endpoint (one for every region).
ENDPOINTS = {
    "na": "https://sellingpartnerapi-na.amazon.com",
    "eu": "https://sellingpartnerapi-eu.amazon.com",
    "fe": "https://sellingpartnerapi-fe.amazon.com",
}
LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"  # noqa: S105 (a URL, not a secret)
_WRAP_CONTEXT = "lwa-client-secret"


def check_https(name: str, url: str) -> str:
    """`url` if it is a plain https:// URL (no credentials, query or fragment in it); else a
    clear refusal. SP-API and LWA traffic carries tokens and PII: never in clear, not even locally."""
    if not url.isprintable() or url != url.strip():
        raise ConfigError(f"{name} holds spaces or control characters; write the bare https:// URL")
    try:
        parts = urlsplit(url)
        port = parts.port  # a port that is not a number from 0 to 65535 raises here
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL (its host or port); write the bare https:// URL") from None
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ConfigError(
            f"{name} must be an https:// URL, not {shown(parts.scheme or url)}: tokens and PII never travel in clear"
        )
    if parts.username or parts.password or parts.query or parts.fragment or port == 0:
        raise ConfigError(f"{name} must be a bare https:// URL, without credentials, query or fragment")
    return url.rstrip("/")


@dataclass(frozen=True)
class AppCredentials:
    """The LWA client id and secret of the SP-API application, and where it talks to. The secret
    never appears in a repr."""

    client_id: str
    client_secret: str = field(repr=False)
    endpoint: str | None = None  # every region's SP-API endpoint (a stand-in); None: Amazon's per region
    token_url: str = LWA_TOKEN_URL
    ca_file: Path | None = None  # the CA to trust for them (a stand-in's); None: the system's

    def endpoint_for(self, region: str) -> str:
        return self.endpoint or ENDPOINTS[region]


def _context(client_id: str) -> dict[str, str]:
    return {"purpose": _WRAP_CONTEXT, "client_id": client_id}


def load_app(path: Path, keys: KeyProvider) -> AppCredentials:
    """The credentials in `path`, refused when missing, readable by others or incomplete."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise NotConfigured(
            "no SP-API application credentials (setting sp_api_app_file); run `sagevault connect app "
            "--client-id ID` (it reads the client secret from stdin)"
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"refusing to use {path}: it is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not valid TOML; write it again with `sagevault connect app`") from None
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not client_id.strip():
        raise ConfigError(f"{path} has no client_id")
    if isinstance(data.get("client_secret_sealed"), str):
        try:
            secret = keys.unwrap(base64.b64decode(data["client_secret_sealed"]), _context(client_id)).decode()
        except (KeyProviderError, ValueError):
            raise ConfigError(
                f"the client secret in {path} cannot be unwrapped with this deployment's master key; "
                "run `sagevault connect app` again"
            ) from None
    elif isinstance(data.get("client_secret"), str) and data["client_secret"]:
        secret = data["client_secret"]
    else:
        raise ConfigError(f"{path} has neither client_secret_sealed nor client_secret")
    endpoint = data.get("endpoint")
    ca = data.get("ca_file")
    return AppCredentials(
        client_id.strip(),
        secret,
        check_https("endpoint", endpoint) if isinstance(endpoint, str) else None,
        check_https("token_url", data.get("token_url", LWA_TOKEN_URL)),
        Path(ca) if isinstance(ca, str) else None,
    )


def save_app(path: Path, app: AppCredentials, keys: KeyProvider) -> None:
    """Write `app` to `path` (0600, replacing an earlier file atomically), its secret wrapped by
    the master key provider, so the file alone opens nothing."""
    if not app.client_id.strip() or not app.client_secret:
        raise ConfigError("the client id and the client secret must not be empty")
    data: dict[str, str] = {
        "client_id": app.client_id,
        "client_secret_sealed": base64.b64encode(
            keys.wrap(app.client_secret.encode(), _context(app.client_id))
        ).decode(),
        "master_key": keys.key_id,
        "token_url": check_https("token_url", app.token_url),
    }
    if app.endpoint:
        data["endpoint"] = check_https("endpoint", app.endpoint)
    if app.ca_file:
        data["ca_file"] = str(app.ca_file)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(tomli_w.dumps(data).encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rewrap_app(path: Path, keys: KeyProvider) -> int:
    """A master key rotation's part: the wrapped client secret in `path` wrapped again with the
    current master key (1), or nothing to do (0: no file, or a secret kept in clear by hand)."""
    if not path.exists() or "client_secret_sealed" not in tomllib.loads(path.read_text()):
        return 0
    save_app(path, load_app(path, keys), keys)
    return 1
