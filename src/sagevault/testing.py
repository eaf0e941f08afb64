"""Test helpers that ship with the package: realistic SP-API order payloads from a seeded
generator, and a clock that moves only when told.

Orders follow the shape of Amazon's Orders v0 sandbox examples (getOrders with a Restricted
Data Token, so ShippingAddress and BuyerInfo are present): about 15 PII fields each. Every PII
value is built from the seed, so a test can list exactly which strings must never appear in
clear anywhere.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sagevault.access import Argon2Hashing

_FIRST = ["Maria", "John", "Aiko", "Carlos", "Fatima", "Liam", "Sofia", "Noah", "Elif", "Wei", "Priya", "Lukas"]
_LAST = ["Silva", "Smith", "Tanaka", "Oliveira", "Khan", "Murphy", "Rossi", "Brown", "Yilmaz", "Chen", "Patel"]
_STREETS = ["Westlake Ave", "Oak Avenue", "Rua das Flores", "Main Street", "Harbor Blvd", "Elm Road", "Pine Lane"]
_CITIES = [
    ("Seattle", "WA", "King"),
    ("Austin", "TX", "Travis"),
    ("Denver", "CO", "Denver"),
    ("Boston", "MA", "Suffolk"),
]


def generate_orders(n: int, seed: int = 7, *, prefix: str = "") -> Iterator[dict[str, Any]]:
    """`n` Orders v0 `Order` objects with buyer PII, deterministic for a seed."""
    rnd = random.Random(seed)
    for i in range(n):
        first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
        city, state, county = rnd.choice(_CITIES)
        tag = f"{prefix}{seed:x}{i:07d}"
        name = f"{first} {last} {tag}"
        yield {
            "AmazonOrderId": f"{rnd.randrange(100, 999)}-{rnd.randrange(10**6, 10**7)}-{i:07d}",
            "PurchaseDate": f"2026-10-{rnd.randrange(1, 28):02d}T{rnd.randrange(24):02d}:15:00Z",
            "LastUpdateDate": "2026-11-01T08:00:00Z",
            "OrderStatus": rnd.choice(["Unshipped", "Shipped", "PartiallyShipped"]),
            "FulfillmentChannel": "MFN",
            "SalesChannel": "Amazon.com",
            "ShipServiceLevel": "Std US D2D Dom",
            "OrderTotal": {"CurrencyCode": "USD", "Amount": f"{rnd.randrange(500, 50000) / 100:.2f}"},
            "NumberOfItemsShipped": 0,
            "NumberOfItemsUnshipped": rnd.randrange(1, 4),
            "PaymentMethod": "Other",
            "PaymentMethodDetails": ["Standard"],
            "MarketplaceId": "ATVPDKIKX0DER",
            "ShipmentServiceLevelCategory": "Standard",
            "OrderType": "StandardOrder",
            "EarliestShipDate": "2026-11-02T00:00:00Z",
            "LatestShipDate": "2026-11-04T00:00:00Z",
            "IsBusinessOrder": False,
            "IsPrime": rnd.random() < 0.6,
            "IsPremiumOrder": False,
            "IsGlobalExpressEnabled": False,
            "IsReplacementOrder": False,
            "IsSoldByAB": False,
            "ShippingAddress": {
                "Name": name,
                "CompanyName": f"{last} Trading {tag}",
                "AddressLine1": f"{rnd.randrange(1, 9999)} {rnd.choice(_STREETS)} {tag}",
                "AddressLine2": f"Apt {tag}",
                "City": f"{city} {tag}",
                "County": f"{county} {tag}",
                "StateOrRegion": state,
                "PostalCode": f"{rnd.randrange(10000, 99999)}-{i % 10000:04d}",
                "CountryCode": "US",
                "Phone": f"+1 {rnd.randrange(200, 999)}-555-{i % 10000:04d} x{tag}",
                "AddressType": "Residential",
            },
            "BuyerInfo": {
                "BuyerEmail": f"{first.lower()}.{tag}@marketplace.amazon.com",
                "BuyerName": name,
                "BuyerCounty": f"{county} {tag}",
                "PurchaseOrderNumber": f"PO-{tag}",
                "BuyerTaxInfo": {"CompanyLegalName": f"{last} Holdings {tag}"},
            },
        }


def get_orders_response(orders: list[dict[str, Any]]) -> dict[str, Any]:
    """A getOrders response around `orders`, as Amazon returns it."""
    return {"payload": {"Orders": orders, "CreatedBefore": "2026-11-28T00:00:00Z"}}


class ManualClock:
    """A clock that stands still until moved: for password ages, lock cool-offs, key expiry and
    TOTP steps in tests. Pass it as `clock=` to the deployment or the access service."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now


def fast_password_hashing() -> Argon2Hashing:
    """A password hasher for tests where hashing cost is not what they test: Argon2id at a tiny
    cost (1 pass over 8 KiB), so a log-in takes microseconds instead of the deployment's tens of
    milliseconds. Never for a deployment: the settings refuse a cost below OWASP's floor."""
    return Argon2Hashing(time_cost=1, memory_kib=8, parallelism=1)
