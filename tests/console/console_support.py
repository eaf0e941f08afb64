"""The console's test fixtures (imported by its test modules; not a conftest, whose module name the
suite's root conftest owns). The console under test: the real TLS server (`served_api`) and
Debian's Chromium driven by Playwright.

Every deployment of a module serves the same local TLS files (made once per module), so the one
Chromium of the module trusts exactly that server key (`--ignore-certificate-errors-spki-list`,
Chromium's switch for a known test key: any other certificate still fails) instead of ignoring
certificate errors. Without /usr/bin/chromium the browser tests skip, and fail under CI=true."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sagevault.config import Settings
from sagevault.crypto import create_local_tls, tls_files

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def module_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("console-tls") / "tls"
    create_local_tls(where)
    return where


@pytest.fixture
def settings(settings: Settings, module_tls: Path) -> Settings:
    """The suite's settings, with the module's TLS files in the data dir (the server uses them as its own)."""
    settings.tls_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copytree(module_tls, settings.tls_dir)
    settings.tls_dir.chmod(0o700)
    return settings


def _spki_hash(tls: Path) -> str:
    cert = x509.load_pem_x509_certificate(tls_files(tls).cert.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def browser(module_tls: Path) -> Iterator[Any]:
    """One Chromium per module (each test opens its own context)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: `apt-get install chromium` (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("playwright is not installed: pip install -e '.[test]'")
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", f"--ignore-certificate-errors-spki-list={_spki_hash(module_tls)}"],
        )
        yield launched
        launched.close()
