"""The stand-in's orders: deterministic Orders v0 `Order` objects modelled on Amazon's sandbox
example (`samples/01-getOrders.json`), their items, and the same orders in the 2026-01-01 shape.

Every PII string (buyer name and e-mail, shipping name, street, city, region, postal code, phone)
is unique per order and carries a tag such as `SBX4F2A000017`, so a test can scan files for
exactly these strings and nothing else.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any

ISO = "%Y-%m-%dT%H:%M:%SZ"
STATUSES = ("Unshipped", "Shipped", "Pending")
SPREAD = timedelta(days=10)  # purchases spread over the ten days before `now - LAG`
LAG = timedelta(minutes=5)

# marketplace id -> (sales channel, marketplace name, currency, country)
_MARKETPLACES = {
    "ATVPDKIKX0DER": ("Amazon.com", "Amazon.com", "USD", "US"),
    "A2EUQ1WTGCTBG2": ("Amazon.ca", "Amazon.ca", "CAD", "CA"),
    "A1AM78C64UM0Y8": ("Amazon.com.mx", "Amazon.com.mx", "MXN", "MX"),
    "A1F83G8C2ARO7P": ("Amazon.co.uk", "Amazon.co.uk", "GBP", "GB"),
    "A1PA6795UKMFR9": ("Amazon.de", "Amazon.de", "EUR", "DE"),
    "A13V1IB3VIYZZH": ("Amazon.fr", "Amazon.fr", "EUR", "FR"),
    "A1VC38T7YXB528": ("Amazon.co.jp", "Amazon.co.jp", "JPY", "JP"),
}
_FIRST = ["Maria", "John", "Aiko", "Carlos", "Fatima", "Liam", "Sofia", "Noah", "Elif", "Wei", "Priya", "Lukas"]
_LAST = ["Silva", "Smith", "Tanaka", "Oliveira", "Khan", "Murphy", "Rossi", "Brown", "Yilmaz", "Chen", "Patel"]
_STREETS = ["Sandbox Ave", "Fakewell Street", "Placeholder Road", "Example Lane", "Testing Blvd", "Mock Way"]
_CITIES = [("Sampleton", "WA"), ("Fakeburg", "TX"), ("Testville", "CO"), ("Mockford", "MA"), ("Dummyport", "OR")]
_PRODUCTS = [
    ("B00551Q3CS", "Card Book", "10.00"),
    ("B08C1W5N87", "Smart Speaker", "49.99"),
    ("B07PFFMP9P", "Streaming Stick", "39.99"),
    ("B0SANDBOX1", "Ceramic Mug", "12.50"),
    ("B0SANDBOX2", "Notebook, A5", "6.25"),
    ("B0SANDBOX3", "USB-C Cable", "8.99"),
]


def iso(moment: datetime) -> str:
    """`moment` as SP-API writes dates: UTC, whole seconds, `Z`."""
    return moment.astimezone(UTC).strftime(ISO)


def parse_iso(text: str) -> datetime:
    """An ISO 8601 date-time (a trailing `Z` allowed); a naive one is read as UTC. ValueError if not one."""
    moment = datetime.fromisoformat(text.strip())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _marketplace(marketplace_id: str) -> tuple[str, str, str, str]:
    return _MARKETPLACES.get(marketplace_id, ("Amazon", "Amazon", "USD", "US"))


def _seller_code(seller_id: str, seed: int) -> str:
    """Four hex digits that tell one seller's (and seed's) orders from another's."""
    return hashlib.sha256(f"{seller_id}|{seed}".encode()).hexdigest()[:4].upper()


def _rng(*parts: object) -> random.Random:
    return random.Random("|".join(str(p) for p in parts))  # noqa: S311 - fake data, deterministic on purpose


def order_items(order: dict[str, Any]) -> list[dict[str, Any]]:
    """The one or two v0 `OrderItem`s of `order` (deterministic from its id; quantities shipped
    follow its status)."""
    rnd = _rng("items", order["AmazonOrderId"])
    currency = order.get("OrderTotal", {}).get("CurrencyCode", "USD")
    shipped = order.get("OrderStatus") == "Shipped"
    picks = rnd.sample(_PRODUCTS, rnd.choice((1, 1, 2)))
    items = []
    for n, (asin, title, price) in enumerate(picks):
        quantity = rnd.choice((1, 1, 2))
        amount = float(price) * quantity
        digits = "".join(c for c in order["AmazonOrderId"] if c.isdigit())
        items.append(
            {
                "ASIN": asin,
                "OrderItemId": f"{digits[-12:]}{n:02d}",
                "SellerSKU": f"SBX-{asin}",
                "Title": f"{title} [sandbox]",
                "QuantityOrdered": quantity,
                "QuantityShipped": quantity if shipped else 0,
                "ProductInfo": {"NumberOfItems": "1"},
                "ItemPrice": {"CurrencyCode": currency, "Amount": f"{amount:.2f}"},
                "ItemTax": {"CurrencyCode": currency, "Amount": f"{amount * 0.1:.2f}"},
                "PromotionDiscount": {"CurrencyCode": currency, "Amount": "0.00"},
                "IsGift": "false",
                "ConditionId": "New",
                "ConditionSubtypeId": "New",
                "IsTransparency": False,
                "SerialNumberRequired": False,
                "IossNumber": "",
                "BuyerRequestedCancel": {"IsBuyerRequestedCancel": "false"},
            }
        )
    return items


def _total(items: list[dict[str, Any]]) -> float:
    return sum(float(i["ItemPrice"]["Amount"]) + float(i["ItemTax"]["Amount"]) for i in items)


def set_status(order: dict[str, Any], status: str) -> None:
    """Change `order`'s status in place, with the item counts that go with it."""
    order["OrderStatus"] = status
    quantity = sum(i["QuantityOrdered"] for i in order_items(order))
    order["NumberOfItemsShipped"] = quantity if status == "Shipped" else 0
    order["NumberOfItemsUnshipped"] = 0 if status == "Shipped" else quantity


def make_order(
    seller_id: str, marketplace_id: str, index: int, seed: int, purchased: datetime, updated: datetime
) -> dict[str, Any]:
    """Order number `index` of a seller (a v0 `Order` with BuyerInfo and ShippingAddress)."""
    rnd = _rng("order", seller_id, seed, index)
    channel, _name, currency, country = _marketplace(marketplace_id)
    code = _seller_code(seller_id, seed)
    tag = f"SBX{code}{index:06d}"
    first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
    city, state = rnd.choice(_CITIES)
    name = f"{first} {last} {tag}"
    order_id = f"{rnd.randrange(100, 999)}-{rnd.randrange(10**6, 10**7)}-{index:07d}"
    status = rnd.choice(STATUSES)
    ship_from = purchased + timedelta(days=1)
    order: dict[str, Any] = {
        "AmazonOrderId": order_id,
        "PurchaseDate": iso(purchased),
        "LastUpdateDate": iso(updated),
        "OrderStatus": status,
        "FulfillmentChannel": "MFN",
        "SalesChannel": channel,
        "ShipServiceLevel": "Std US D2D Dom",
        "OrderTotal": {"CurrencyCode": currency, "Amount": "0.00"},
        "NumberOfItemsShipped": 0,
        "NumberOfItemsUnshipped": 0,
        "PaymentMethod": "Other",
        "PaymentMethodDetails": ["Standard"],
        "IsReplacementOrder": False,
        "MarketplaceId": marketplace_id,
        "ShipmentServiceLevelCategory": "Standard",
        "OrderType": "StandardOrder",
        "EarliestShipDate": iso(ship_from),
        "LatestShipDate": iso(ship_from + timedelta(days=2)),
        "EarliestDeliveryDate": iso(ship_from + timedelta(days=3)),
        "LatestDeliveryDate": iso(ship_from + timedelta(days=7)),
        "IsBusinessOrder": False,
        "IsPrime": rnd.random() < 0.5,
        "IsGlobalExpressEnabled": False,
        "IsPremiumOrder": False,
        "IsSoldByAB": False,
        "IsIBA": False,
        "DefaultShipFromLocationAddress": {  # the seller's own warehouse, the same on every order
            "Name": f"Sandbox Seller {seller_id}",
            "AddressLine1": "2201 WESTLAKE AVE",
            "City": "SEATTLE",
            "StateOrRegion": "WA",
            "PostalCode": "98121-2778",
            "CountryCode": "US",
            "Phone": "+1 480-386-0930 ext. 73824",
            "AddressType": "Commercial",
        },
        "FulfillmentInstruction": {"FulfillmentSupplySourceId": "sampleSupplySourceId"},
        "IsISPU": False,
        "IsAccessPointOrder": False,
        "AutomatedShippingSettings": {"HasAutomatedShippingSettings": False},
        "EasyShipShipmentStatus": "PendingPickUp",
        "ElectronicInvoiceStatus": "NotRequired",
        "BuyerInfo": {
            "BuyerEmail": f"{first.lower()}.{last.lower()}.{tag.lower()}@marketplace.amazon.com",
            "BuyerName": name,
        },
        "ShippingAddress": {
            "Name": name,
            "AddressLine1": f"{rnd.randrange(1, 9999)} {rnd.choice(_STREETS)} Unit {tag}",
            "City": f"{city} {tag}",
            "StateOrRegion": f"{state} {tag}",
            "PostalCode": f"{90000 + int(code, 16) % 9000 + index // 10000:05d}-{index % 10000:04d}",
            "CountryCode": country,
            "Phone": f"+1 555-{rnd.randrange(100, 999)}-{index % 10000:04d} x{tag}",
        },
    }
    order["OrderTotal"]["Amount"] = f"{_total(order_items(order)):.2f}"
    set_status(order, status)
    return order


def generate_orders(
    seller_id: str, marketplace_id: str, count: int, seed: int, now: datetime, *, start: int = 0
) -> list[dict[str, Any]]:
    """`count` v0 `Order` objects of one seller, deterministic for (seller, seed, now): ids like
    `123-1234567-1234567` (unique per seller: the last group is the order's number), purchased
    and last updated over the ten days before `now - 5 minutes`, statuses Unshipped, Shipped or
    Pending, with BuyerInfo and ShippingAddress. `start`: the number of the first order (orders
    added later continue the numbering)."""
    end = now.astimezone(UTC).replace(microsecond=0) - LAG
    orders = []
    for index in range(start, start + count):
        rnd = _rng("dates", seller_id, seed, index)
        purchased = end - timedelta(seconds=rnd.randrange(int(SPREAD.total_seconds())))
        room = int(min((end - purchased).total_seconds(), 2 * 86400))
        updated = purchased + timedelta(seconds=rnd.randrange(room + 1))
        orders.append(make_order(seller_id, marketplace_id, index, seed, purchased, updated))
    return orders


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


def pii_values(order: dict[str, Any]) -> list[str]:
    """Every PII string of `order` (v0 or 2026-01-01 shape), each once: what must never appear in
    clear in a file SageVault writes. The country code is not PII and is left out."""
    parts = [
        order.get("BuyerInfo"),
        order.get("ShippingAddress"),
        order.get("buyer"),
        (order.get("recipient") or {}).get("deliveryAddress"),
    ]
    found: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key.lower() in ("countrycode", "addresstype"):
                continue
            found.extend(s for s in _strings(value) if s not in found)
    return found


def shipping_address(order: dict[str, Any]) -> dict[str, Any]:
    return dict(order["ShippingAddress"])


def buyer_info(order: dict[str, Any]) -> dict[str, Any]:
    return dict(order["BuyerInfo"])


_FULFILLMENT_2026 = {"Pending": "PENDING", "Unshipped": "UNSHIPPED", "Shipped": "SHIPPED", "Canceled": "CANCELLED"}
FULFILLMENT_STATUSES_2026 = frozenset(
    {"PENDING_AVAILABILITY", "PENDING", "UNSHIPPED", "PARTIALLY_SHIPPED", "SHIPPED", "CANCELLED", "UNFULFILLABLE"}
)


def fulfillment_status_2026(order: dict[str, Any]) -> str:
    return _FULFILLMENT_2026.get(order["OrderStatus"], "PENDING")


def _money_2026(money: dict[str, Any]) -> dict[str, str]:
    return {"amount": money["Amount"], "currencyCode": money["CurrencyCode"]}


def order_2026(order: dict[str, Any], *, buyer: bool, recipient: bool) -> dict[str, Any]:
    """`order` (v0) as the 2026-01-01 API answers it; the buyer and the recipient (PII) only when asked."""
    _channel, marketplace_name, _currency, _country = _marketplace(order["MarketplaceId"])
    currency = order["OrderTotal"]["CurrencyCode"]
    items = []
    for item in order_items(order):
        shipped, quantity = item["QuantityShipped"], item["QuantityOrdered"]
        unit = {"amount": f"{float(item['ItemPrice']['Amount']) / quantity:.2f}", "currencyCode": currency}
        items.append(
            {
                "orderItemId": item["OrderItemId"],
                "quantityOrdered": quantity,
                "product": {
                    "asin": item["ASIN"],
                    "title": item["Title"],
                    "sellerSku": item["SellerSKU"],
                    "condition": {"conditionType": "NEW", "conditionSubtype": "NEW"},
                    "price": {"unitPrice": unit},
                },
                "proceeds": {"proceedsTotal": _money_2026(item["ItemPrice"])},
                "fulfillment": {"quantityFulfilled": shipped, "quantityUnfulfilled": quantity - shipped},
            }
        )
    converted: dict[str, Any] = {
        "orderId": order["AmazonOrderId"],
        "createdTime": order["PurchaseDate"],
        "lastUpdatedTime": order["LastUpdateDate"],
        "programs": ["PRIME"] if order["IsPrime"] else [],
        "associatedOrders": [],
        "salesChannel": {
            "channelName": "AMAZON",
            "marketplaceId": order["MarketplaceId"],
            "marketplaceName": marketplace_name,
        },
        "proceeds": {"grandTotal": _money_2026(order["OrderTotal"])},
        "fulfillment": {
            "fulfillmentStatus": fulfillment_status_2026(order),
            "fulfilledBy": "MERCHANT",
            "fulfillmentServiceLevel": "STANDARD",
            "shipByWindow": {"earliestDateTime": order["EarliestShipDate"], "latestDateTime": order["LatestShipDate"]},
        },
        "orderItems": items,
    }
    if buyer:
        info = order["BuyerInfo"]
        converted["buyer"] = {"buyerName": info["BuyerName"], "buyerEmail": info["BuyerEmail"]}
    if recipient:
        a = order["ShippingAddress"]
        converted["recipient"] = {
            "deliveryAddress": {
                "name": a["Name"],
                "addressLine1": a["AddressLine1"],
                "city": a["City"],
                "stateOrRegion": a["StateOrRegion"],
                "postalCode": a["PostalCode"],
                "countryCode": a["CountryCode"],
                "phone": a["Phone"],
            }
        }
    return converted
