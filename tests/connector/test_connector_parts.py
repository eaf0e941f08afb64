"""The connector's parts that need no SP-API: the application's credentials file, the seller's
refresh token sealed under the tenant's keys (through a rotation and a shred), the token bucket
and the backoff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from commands import run
from conftest import OPERATOR, OTHER, TENANT
from sagevault.config import load_settings
from sagevault.connector import AppCredentials, Backoff, TokenBucket, check_https, load_app, save_app
from sagevault.connector._sync import read_page
from sagevault.crypto import InMemoryKeyProvider
from sagevault.deployment import Deployment, open_deployment
from sagevault.errors import ConfigError, PayloadError, TenantShredded, UpstreamError
from sagevault.vault import SecretUnreadable
from sagevault.vault._schema import tenant_secrets

SECRET = "amzn1.oa2-cs.v1.0123456789abcdef0123456789abcdef"
REFRESH = "Atzr|IwEBIExampleRefreshTokenForTests0123456789"


def test_the_client_secret_is_written_wrapped_and_opens_only_with_the_master_key(tmp_path: Path) -> None:
    keys = InMemoryKeyProvider()
    path = tmp_path / "keys" / "app.toml"
    save_app(path, AppCredentials("amzn1.application-oa2-client.x", SECRET, "https://127.0.0.1:8600"), keys)
    assert os.stat(path).st_mode & 0o777 == 0o600
    raw = path.read_bytes()
    assert SECRET.encode() not in raw and b"client_secret_sealed" in raw
    app = load_app(path, keys)
    assert app.client_secret == SECRET and app.endpoint_for("eu") == "https://127.0.0.1:8600"
    assert SECRET not in repr(app)
    with pytest.raises(ConfigError, match="cannot be unwrapped"):
        load_app(path, InMemoryKeyProvider())  # another master key opens nothing


def test_a_credentials_file_others_can_read_or_a_plaintext_endpoint_is_refused(tmp_path: Path) -> None:
    keys = InMemoryKeyProvider()
    path = tmp_path / "app.toml"
    path.write_text(f'client_id = "id"\nclient_secret = "{SECRET}"\n')
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_app(path, keys)
    path.chmod(0o600)
    assert load_app(path, keys).client_secret == SECRET  # a hand-made file with the secret in clear, 0600
    path.write_text(f'client_id = "id"\nclient_secret = "{SECRET}"\nendpoint = "http://127.0.0.1:8600"\n')
    with pytest.raises(ConfigError, match="https://"):
        load_app(path, keys)
    with pytest.raises(ConfigError, match="without credentials"):
        check_https("endpoint", "https://user:pw@example.test")
    with pytest.raises(ConfigError, match="sagevault connect app"):
        load_app(tmp_path / "missing.toml", keys)
    path.write_text("client_id = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_app(path, keys)


def test_the_refresh_token_is_sealed_under_the_tenant_keys_survives_a_rotation_and_dies_with_a_shred(
    vault_tenant: Deployment,
) -> None:
    d = vault_tenant
    with d.unit_of_work() as conn:
        d.vault.secrets.put(conn, TENANT, "sp-api-refresh-token", REFRESH, principal=OPERATOR)
    with d.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT sealed, key_version FROM tenant_secrets").all()
    assert len(stored) == 1 and REFRESH.encode() not in bytes(stored[0][0]) and stored[0][1] == 1
    with d.unit_of_work() as conn:
        step = d.vault.keys.rotate_step(conn, TENANT, principal=OPERATOR)
    assert step.complete and step.retired == [1]
    with d.unit_of_work() as conn:
        assert d.vault.secrets.get(conn, TENANT, "sp-api-refresh-token", principal=OPERATOR) == REFRESH
        version = conn.exec_driver_sql("SELECT key_version FROM tenant_secrets").scalar_one()
    assert version == 2  # re-sealed before version 1 was retired
    with d.unit_of_work() as conn:
        d.vault.shred(conn, TENANT, principal=OPERATOR)
    with d.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM tenant_secrets").scalar_one() == 0
    with d.unit_of_work() as conn, pytest.raises(TenantShredded):
        d.vault.secrets.get(conn, TENANT, "sp-api-refresh-token", principal=OPERATOR)


def test_a_sealed_secret_moved_to_another_tenant_does_not_open(vault_tenant: Deployment) -> None:
    d = vault_tenant
    with d.unit_of_work() as conn:
        d.vault.secrets.put(conn, TENANT, "sp-api-refresh-token", REFRESH, principal=OPERATOR)
        d.vault.secrets.put(conn, OTHER, "sp-api-refresh-token", "Atzr|other", principal=OPERATOR)
        mine = conn.exec_driver_sql(f"SELECT sealed FROM tenant_secrets WHERE tenant_id = '{TENANT}'").scalar_one()
        conn.execute(tenant_secrets.update().where(tenant_secrets.c.tenant_id == OTHER).values(sealed=mine))
        with pytest.raises(SecretUnreadable, match="connect"):
            d.vault.secrets.get(conn, OTHER, "sp-api-refresh-token", principal=OPERATOR)
        with pytest.raises(PayloadError):
            d.vault.secrets.put(conn, TENANT, "Bad Name", "x", principal=OPERATOR)
        assert conn.execute(select(tenant_secrets.c.name)).scalars().all() == ["sp-api-refresh-token"] * 2


class _Time:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_bucket_spends_its_burst_then_waits_at_the_rate_amazon_states() -> None:
    t = _Time()
    bucket = TokenBucket(0.0167, 20, clock=t.clock, sleep=t.sleep)
    for _ in range(20):
        assert bucket.take() == 0
    waited = bucket.take()
    assert waited == pytest.approx(1 / 0.0167)  # the 21st getOrders waits a minute
    bucket.set_rate(2.0)  # x-amzn-RateLimit-Limit: 2.0
    assert bucket.take() == pytest.approx(0.5)
    bucket.drain()  # a 429: this side's count was wrong
    assert bucket.take() == pytest.approx(0.5)


def test_backoff_grows_with_full_jitter_up_to_its_cap() -> None:
    b = Backoff(base=0.5, cap=4.0, attempts=6)
    assert [b.delay(n, lambda: 1.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.delay(3, lambda: 0.0) == 0.0


def test_a_master_key_rotation_rewraps_the_client_secret_too(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    stored = run(tmp_path, "connect", "app", "--client-id", "amzn1.application-oa2-client.x", stdin=SECRET + "\n")
    assert stored.returncode == 0, stored.stderr
    path = tmp_path / "var" / "keys" / "sp-api-app.toml"
    before = path.read_text()
    rotated = run(tmp_path, "keys", "rotate-master")
    assert rotated.returncode == 0 and "3 access secrets re-wrapped" in rotated.stdout, rotated.stdout + rotated.stderr
    assert path.read_text() != before and SECRET not in path.read_text()
    d = open_deployment(load_settings(data_dir=tmp_path / "var"))
    try:
        assert load_app(path, d.keys).client_secret == SECRET  # the old master key is gone; the new one opens it
    finally:
        d.close()


def test_pages_that_are_not_amazons_shape_are_refused_before_anything_is_stored() -> None:
    order = {"AmazonOrderId": "111-1111111-1111111", "MarketplaceId": "ATVPDKIKX0DER"}
    assert read_page("orders-v0", {"payload": {"Orders": [order], "NextToken": "t"}}, "ATVPDKIKX0DER")[1:] == (1, "t")
    for body, words in (
        ({"payload": {"Orders": [order] * 101}}, "more than 100"),
        ({"payload": {"Orders": [{**order, "MarketplaceId": "A1PA6795UKMFR9"}]}}, "another marketplace"),
        ({"payload": {"Orders": [order], "NextToken": 5}}, "next-page token"),
        ({"payload": {"Orders": {"a": 1}}}, "no list of orders"),
        ({"orders": [{"salesChannel": {"marketplaceId": "A1PA6795UKMFR9"}}]}, "another marketplace"),
    ):
        api = "orders-2026" if "orders" in body else "orders-v0"
        with pytest.raises(UpstreamError, match=words):
            read_page(api, body, "ATVPDKIKX0DER")
