"""Canary records: realistic fake orders that no legitimate work reads.

`fake_orders` makes Orders v0 objects whose names, addresses, e-mail addresses and phone numbers
look real and belong to nobody (phones in the 555-0100..0199 range set aside for fiction; e-mail
addresses at Amazon's buyer relay domain under random local parts). The edge stores them through
the normal ingest path, then `CanaryRegistry.register` keeps HMAC(key, tenant/record id) for
each record. The key is a file beside the master key, outside the database: the rows of the
database and the answers of the API are the same for a canary as for an order, and only a holder
of the key can tell them apart. The detector asks `touched` for every event that names records.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from sagevault._private_files import check_private
from sagevault.config import make_private_dir
from sagevault.errors import ConfigError

from ._schema import canary_tokens

_FIRST = [
    "Olivia",
    "Mateo",
    "Hannah",
    "Arjun",
    "Chloe",
    "Diego",
    "Grace",
    "Kenji",
    "Leila",
    "Marcus",
    "Nadia",
    "Oscar",
    "Ruth",
    "Samuel",
    "Tessa",
    "Victor",
    "Yara",
    "Zoe",
    "Elena",
    "Tomas",
]
_LAST = [
    "Alvarez",
    "Becker",
    "Castillo",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quinn",
    "Romero",
    "Sato",
    "Varga",
]
_STREETS = ["Maple Street", "Cedar Avenue", "Lakeview Drive", "Hillcrest Road", "Birch Lane", "Willow Court"]
_PLACES = [
    ("Portland", "OR", "Multnomah", "972"),
    ("Columbus", "OH", "Franklin", "432"),
    ("Raleigh", "NC", "Wake", "276"),
    ("Madison", "WI", "Dane", "537"),
    ("Tucson", "AZ", "Pima", "857"),
]


def fake_orders(count: int, *, now: datetime | None = None) -> Iterator[dict[str, Any]]:
    """`count` Orders v0 `Order` objects that look like real buyers' orders and are nobody's."""
    rnd = secrets.SystemRandom()
    now = now or datetime.now(UTC)
    for _ in range(count):
        first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
        city, state, county, zip3 = rnd.choice(_PLACES)
        bought = now - timedelta(days=rnd.randrange(1, 20), minutes=rnd.randrange(1440))
        name = f"{first} {last}"
        yield {
            "AmazonOrderId": f"{rnd.randrange(111, 999)}-{rnd.randrange(10**6, 10**7)}-{rnd.randrange(10**6, 10**7)}",
            "PurchaseDate": bought.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "LastUpdateDate": (bought + timedelta(hours=rnd.randrange(1, 30))).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "OrderStatus": rnd.choice(["Unshipped", "Shipped"]),
            "FulfillmentChannel": "MFN",
            "SalesChannel": "Amazon.com",
            "ShipServiceLevel": "Std US D2D Dom",
            "OrderTotal": {"CurrencyCode": "USD", "Amount": f"{rnd.randrange(900, 24000) / 100:.2f}"},
            "NumberOfItemsShipped": 0,
            "NumberOfItemsUnshipped": rnd.randrange(1, 3),
            "PaymentMethod": "Other",
            "MarketplaceId": "ATVPDKIKX0DER",
            "OrderType": "StandardOrder",
            "IsBusinessOrder": False,
            "IsPrime": rnd.random() < 0.5,
            "ShippingAddress": {
                "Name": name,
                "AddressLine1": f"{rnd.randrange(10, 9800)} {rnd.choice(_STREETS)}",
                "City": city,
                "County": county,
                "StateOrRegion": state,
                "PostalCode": f"{zip3}{rnd.randrange(10, 99)}",
                "CountryCode": "US",
                "Phone": f"+1 {rnd.randrange(201, 989)}-555-01{rnd.randrange(100):02d}",
                "AddressType": "Residential",
            },
            "BuyerInfo": {
                "BuyerEmail": f"{secrets.token_hex(8)}@marketplace.amazon.com",
                "BuyerName": name,
            },
        }


def create_canary_key(path: Path) -> None:
    make_private_dir(path.parent)
    path.write_bytes(secrets.token_bytes(32))
    path.chmod(0o600)


class CanaryRegistry:
    """The keyed list of canary records. `touched` answers from memory (loaded once, refreshed
    when this process registers more, or when `refresh` finds the table grew)."""

    def __init__(self, key_file: Path) -> None:
        self._key_file = key_file
        self._key: bytes | None = None
        self._tokens: set[str] = set()
        self._loaded = -1
        self._lock = threading.Lock()
        self._checked = -math.inf

    RECHECK_SECONDS = 5.0  # how stale this process's copy of the registry may be for a listing

    def _secret(self) -> bytes:
        if self._key is None:
            if not self._key_file.exists():
                if self._loaded > 0:  # a new key would match none of them: canaries would go blind
                    raise ConfigError(
                        f"{self._key_file} is missing while {self._loaded} canary records are registered; "
                        "restore it from the backup of the keys directory"
                    )
                create_canary_key(self._key_file)
            check_private(self._key_file)
            self._key = self._key_file.read_bytes()
        return self._key

    def token(self, tenant_id: str, record_id: int) -> str:
        return hmac.new(self._secret(), f"{tenant_id}/{record_id}".encode(), hashlib.sha256).hexdigest()

    def register(self, conn: Connection, tenant_id: str, record_ids: Sequence[int]) -> int:
        self.refresh_from(conn)
        tokens = [self.token(tenant_id, r) for r in record_ids]
        new = [t for t in tokens if t not in self._tokens]
        if new:
            conn.execute(canary_tokens.insert(), [{"token": t, "tenant_id": tenant_id} for t in new])
            with self._lock:
                self._tokens.update(new)
        return len(new)

    def refresh(self, engine: Engine) -> None:
        """Read the registry again if it holds another number of rows than this process knows
        (another process seeded canaries, or a tenant's were shredded)."""
        with engine.connect() as conn:
            self.refresh_from(conn)

    def touched(self, tenant_id: str | None, record_ids: Sequence[int]) -> list[int]:
        if not self._tokens or tenant_id is None:
            return []
        return [r for r in record_ids if self.token(tenant_id, r) in self._tokens]

    def hidden(self, conn: Connection, tenant_id: str, record_ids: Sequence[int]) -> set[int]:
        """Which of `record_ids` are canaries (what a seller's listing and counts leave out)."""
        if time.monotonic() - self._checked > self.RECHECK_SECONDS:
            self.refresh_from(conn)
        return set(self.touched(tenant_id, record_ids))

    def count(self, conn: Connection, tenant_id: str) -> int:
        return int(
            conn.execute(
                select(func.count()).select_from(canary_tokens).where(canary_tokens.c.tenant_id == tenant_id)
            ).scalar_one()
        )

    def refresh_from(self, conn: Connection) -> None:
        self._checked = time.monotonic()
        count = int(conn.execute(select(func.count()).select_from(canary_tokens)).scalar_one())
        if count != self._loaded:
            tokens = {str(t) for t in conn.execute(select(canary_tokens.c.token)).scalars()}
            with self._lock:
                self._tokens, self._loaded = tokens, count
