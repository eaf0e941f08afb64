"""`sagevault connect` and `sagevault sync` on the shell (in process), and /api/v1/tenants/{id}/sync
with its scopes, against the local SP-API stand-in: secrets only from stdin or private files,
clear refusals, the website authorisation flow with its one-time state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from standin_support import app_file

from commands import run
from conftest import OPERATOR, TENANT
from sagevault.connector import AppCredentials, Backoff, SpApiClient
from sagevault.sandbox import Sandbox, SandboxConfig, SandboxServer, SellerSpec, new_refresh_token, serve
from webapi import Api

SELLER = "A1CLISELLER001"


@pytest.fixture
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, SandboxServer]]:
    sellers = {s: SellerSpec(seller_id=s, orders=120, refresh_token=new_refresh_token()) for s in (SELLER, TENANT)}
    sandbox = Sandbox(SandboxConfig(sellers=sellers, rate_scale=1000.0))
    with serve(sandbox, tls_dir=tmp_path_factory.mktemp("standin")) as server:
        yield sandbox, server


def _app_file(tmp: Path, sandbox: Sandbox, server: SandboxServer, endpoint: str | None = None) -> Path:
    return app_file(tmp, sandbox, server.url, server.ca_file, endpoint=endpoint)


def test_connect_and_sync_on_the_command_line(tmp_path: Path, standin: tuple[Sandbox, SandboxServer]) -> None:
    sandbox, server = standin
    token = sandbox.config.sellers[SELLER].refresh_token
    assert run(tmp_path, "init").returncode == 0
    missing = run(tmp_path, "connect", "seller", SELLER, "--marketplace", "ATVPDKIKX0DER", stdin=token + "\n")
    assert missing.returncode == 2 and "sagevault connect app" in missing.stderr

    plain = run(tmp_path, "connect", "app", "--from", str(_app_file(tmp_path, sandbox, server, "http://127.0.0.1:9")))
    assert plain.returncode == 2 and "https://" in plain.stderr
    app_file = _app_file(tmp_path, sandbox, server)
    app_file.chmod(0o644)
    shared = run(tmp_path, "connect", "app", "--from", str(app_file))
    assert shared.returncode == 2 and "chmod 600" in shared.stderr
    app_file.chmod(0o600)
    assert run(tmp_path, "connect", "app", "--from", str(app_file)).returncode == 0
    stored = tmp_path / "var" / "keys" / "sp-api-app.toml"
    assert stored.stat().st_mode & 0o777 == 0o600 and sandbox.config.client_secret not in stored.read_text()

    unknown = run(tmp_path, "connect", "seller", SELLER, stdin=token + "\n")
    assert unknown.returncode == 2 and "--marketplace" in unknown.stderr
    europe = run(
        tmp_path,
        "connect",
        "seller",
        SELLER,
        "--marketplace",
        "ATVPDKIKX0DER",
        "--marketplace",
        "A1PA6795UKMFR9",
        stdin=token + "\n",
    )
    assert europe.returncode == 2 and "span SP-API regions" in europe.stderr
    wrong = run(tmp_path, "connect", "seller", SELLER, "--marketplace", "ATVPDKIKX0DER", stdin="Atzr|not-issued\n")
    assert wrong.returncode == 2 and "invalid_grant" in wrong.stderr and "Atzr|not-issued" not in wrong.stderr
    token_file = tmp_path / "seller.token"
    token_file.write_text(token)
    token_file.chmod(0o644)
    loose = run(tmp_path, "connect", "seller", SELLER, "--refresh-token-file", str(token_file))
    assert loose.returncode == 2 and "chmod 600" in loose.stderr
    token_file.chmod(0o600)
    made = run(
        tmp_path,
        "connect",
        "seller",
        SELLER,
        "--marketplace",
        "ATVPDKIKX0DER",
        "--since",
        "2020-01-01",
        "--refresh-token-file",
        str(token_file),
    )
    assert made.returncode == 0 and f"connected seller {SELLER}" in made.stdout, made.stderr
    assert json.loads(run(tmp_path, "sync", "status", "--json").stdout)[0]["pages"] == 0

    synced = run(tmp_path, "sync", "run", "--tenant", SELLER)
    assert synced.returncode == 0 and "synced 120 orders in 2 pages" in synced.stdout, synced.stderr
    [status] = json.loads(run(tmp_path, "sync", "status", "--json").stdout)
    assert (status["state"], status["orders"], status["pages"], status["errors"]) == ("active", 120, 2, 0)
    table = run(tmp_path, "sync", "status")
    assert SELLER in table.stdout and "active" in table.stdout
    order = sandbox.orders_of(SELLER)[0]
    shown = run(tmp_path, "show", "--tenant", SELLER, "--order", order["AmazonOrderId"])
    assert (
        shown.returncode == 0 and order["BuyerInfo"]["BuyerEmail"] not in shown.stdout and "BuyerInfo" in shown.stdout
    )

    removed = run(tmp_path, "connect", "remove", SELLER)
    assert removed.returncode == 0 and "removed" in removed.stdout
    stopped = run(tmp_path, "sync", "run", "--tenant", SELLER)
    assert stopped.returncode == 2 and "connect" in stopped.stderr


def test_the_website_flow_checks_its_one_time_state(tmp_path: Path, standin: tuple[Sandbox, SandboxServer]) -> None:
    sandbox, server = standin
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "connect", "app", "--from", str(_app_file(tmp_path, sandbox, server))).returncode == 0
    assert run(tmp_path, "tenants", "add", SELLER, "--marketplace", "ATVPDKIKX0DER").returncode == 0
    shown = run(
        tmp_path,
        "connect",
        "url",
        SELLER,
        "--application-id",
        "amzn1.sp.solution.demo",
        "--redirect-uri",
        "https://app.example/callback",
    )
    assert shown.returncode == 0, shown.stderr
    url = urlsplit(shown.stdout.strip())
    query = parse_qs(url.query)
    assert url.netloc == "sellercentral.amazon.com" and query["application_id"] == ["amzn1.sp.solution.demo"]
    state = query["state"][0]
    code = sandbox.authorization_code(SELLER)
    finish = ("connect", "finish", SELLER, "--redirect-uri", "https://app.example/callback", "--selling-partner-id")
    forged = run(tmp_path, *finish, SELLER, stdin=f"not-the-state\n{code}\n")
    assert forged.returncode == 2 and "does not match" in forged.stderr
    # a redirect for another seller is refused before its code is exchanged: never stored under this tenant
    other = run(tmp_path, *finish, TENANT, stdin=f"{state}\n{sandbox.authorization_code(TENANT)}\n")
    assert other.returncode == 2 and "another selling partner" in other.stderr
    done = run(tmp_path, *finish, SELLER, stdin=f"{state}\n{code}\n")
    assert done.returncode == 0 and "website authorisation flow" in done.stdout, done.stderr
    again = run(tmp_path, *finish, SELLER, stdin=f"{state}\n{sandbox.authorization_code(SELLER)}\n")
    assert again.returncode == 2 and "does not match" in again.stderr  # the state was good once
    assert run(tmp_path, "sync", "run", "--tenant", SELLER).returncode == 0


def test_the_sync_over_https_needs_its_scopes(api: Api, tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = SellerSpec(seller_id=TENANT, orders=150, refresh_token=new_refresh_token())
    sandbox = Sandbox(SandboxConfig(sellers={TENANT: spec}, rate_scale=1000.0), api.clock)
    with serve(sandbox, tls_dir=tmp_path_factory.mktemp("standin")) as server:
        app = AppCredentials(
            sandbox.config.client_id, sandbox.config.client_secret, server.url, server.token_url, server.ca_file
        )
        api.d.connector.use(SpApiClient(app, timeout=2, backoff=Backoff(base=0.01, cap=0.05)))
        with api.d.unit_of_work() as conn:
            api.d.connector.connect(conn, TENANT, spec.refresh_token, principal=OPERATOR)
        operator = api.login("olu.ops", api.person("olu.ops", "operator", [TENANT]))
        packer = api.login("pia.packer", api.person("pia.packer", "fulfilment", [TENANT]))
        url = f"{api.base}/tenants/{TENANT}/sync"
        assert api.client.get(url, headers=packer).status_code == 403
        assert api.client.post(url, headers=packer, json={}).status_code == 403
        assert api.client.post(url, headers=operator, json={"max_pages": 0}).status_code == 422
        assert api.client.post(url, headers=operator, json={"max_pages": True}).status_code == 422
        api.clock.advance(minutes=5)  # the first window's end (three minutes before now) is past the orders
        one = api.client.post(url, headers=operator, json={"max_pages": 1})
        assert one.status_code == 200, one.text
        assert (one.json()["pages"], one.json()["orders"], one.json()["finished"]) == (1, 100, False)
        rest = api.client.post(url, headers=operator, json={}).json()
        assert (rest["orders"], rest["finished"]) == (50, True)
        [status] = api.client.get(url, headers=operator).json()
        assert (status["orders"], status["pages"], status["state"]) == (150, 2, "active")
        sandbox.revoke(TENANT)
        api.d.connector.client.forget(TENANT)
        api.clock.advance(minutes=5)  # a new window to read
        revoked = api.client.post(url, headers=operator, json={})
        assert revoked.status_code == 409 and "authorise the application again" in revoked.json()["detail"]
        assert spec.refresh_token not in revoked.text
        assert api.client.get(url, headers=operator).json()[0]["state"] == "revoked"
