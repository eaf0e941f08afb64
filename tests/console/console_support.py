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
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from factories import PASSWORD
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


def chromium_args(tls: Path) -> list[str]:
    """Chromium's switches: trust exactly the server key in `tls`."""
    return ["--no-sandbox", f"--ignore-certificate-errors-spki-list={_spki_hash(tls)}"]


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
            args=chromium_args(module_tls),
        )
        yield launched
        launched.close()


@pytest.fixture
def page_of(browser: Any) -> Iterator[Callable[[], Any]]:
    """A new page in a browser context of its own (cookies, storage) per call: one per person; the
    contexts are closed after the test."""
    contexts: list[Any] = []

    def new() -> Any:
        context = browser.new_context()
        contexts.append(context)
        return context.new_page()

    yield new
    for context in contexts:
        context.close()


# --- in process ----------------------------------------------------------------------------------

CSRF_FIELD = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(text: str) -> str:
    """The CSRF token a console page's forms carry."""
    found = CSRF_FIELD.search(text)
    assert found is not None, "no CSRF token on the page"
    return found[1]


def log_in_form(api: Any, login: str) -> str:
    """Log `login` (a person of `api`, or its admin) in through the console's form, in process; the
    session's CSRF token, from the dashboard."""
    base = api.base.removesuffix("/api/v1") + "/console"
    form = api.client.get(f"{base}/login")
    totp = api.admin_person.totp if login == api.admin_person.login else api._people[login].totp
    data = {"csrf": csrf_of(form.text), "login": login, "password": PASSWORD, "code": api.next_code(totp)}
    done = api.client.post(f"{base}/login", data=data)
    assert done.status_code == 303 and done.headers["location"] == "/console", done.text
    return csrf_of(api.client.get(base).text)
