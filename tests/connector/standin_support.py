"""What the connector's shell tests share: the stand-in's application file, as an operator would
write it for `sagevault connect app --from` (0600)."""

from __future__ import annotations

from pathlib import Path

from sagevault.sandbox import Sandbox


def app_file(tmp: Path, sandbox: Sandbox, url: str, ca_file: str | Path, *, endpoint: str | None = None) -> Path:
    path = tmp / "app.toml"
    path.write_text(
        f'client_id = "{sandbox.config.client_id}"\nclient_secret = "{sandbox.config.client_secret}"\n'
        f'endpoint = "{endpoint or url}"\ntoken_url = "{url}/auth/o2/token"\nca_file = "{ca_file}"\n'
    )
    path.chmod(0o600)
    return path
