"""The catalog covers Amazon's order models completely and decides PII the way the DPP reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import MODELS
from sagevault.catalog import CATALOG, Document, Purpose


def schema_leaves(spec: dict[str, Any], name: str) -> set[str]:
    defs = spec["definitions"]
    out: set[str] = set()

    def walk(schema: dict[str, Any], path: str, seen: frozenset[str]) -> None:
        if "$ref" in schema:
            ref = schema["$ref"].rsplit("/", 1)[-1]
            if ref not in seen:
                walk(defs[ref], path, seen | {ref})
            return
        for sub in schema.get("allOf", []):
            walk(sub, path, seen)
        if schema.get("type") == "array":
            walk(schema["items"], path + "[]", seen)
        elif "properties" in schema:
            for key, sub in schema["properties"].items():
                walk(sub, f"{path}.{key}" if path else key, seen)
        elif "allOf" not in schema:
            out.add(path)

    walk({"$ref": f"#/definitions/{name}"}, "", frozenset())
    return out


CASES = [
    ("ordersV0.json", "Order", Document.V0_ORDER, ""),
    ("ordersV0.json", "OrderBuyerInfo", Document.V0_BUYER_INFO, ""),
    ("ordersV0.json", "OrderAddress", Document.V0_ADDRESS, ""),
    ("ordersV0.json", "OrderItem", Document.V0_ORDER_ITEMS, "OrderItems[]."),
    ("ordersV0.json", "OrderItemBuyerInfo", Document.V0_ORDER_ITEMS_BUYER_INFO, "OrderItems[]."),
    ("ordersV0.json", "OrderRegulatedInfo", Document.V0_REGULATED_INFO, ""),
    ("orders_2026-01-01.json", "Order", Document.ORDER_2026, ""),
]


@pytest.mark.parametrize(("model", "definition", "document", "prefix"), CASES)
def test_every_field_of_amazons_model_is_catalogued(
    model: str, definition: str, document: Document, prefix: str
) -> None:
    spec = json.loads((MODELS / model).read_text())
    leaves = {prefix + leaf for leaf in schema_leaves(spec, definition)}
    catalogued = {f.path for f in CATALOG.fields(document)}
    assert leaves - catalogued == set()
    assert len(leaves) > 5


@pytest.mark.parametrize(
    ("document", "path", "pii"),
    [
        (Document.V0_ORDER, "BuyerInfo.BuyerEmail", True),
        (Document.V0_ORDER, "ShippingAddress.AddressLine1", True),
        (Document.V0_ORDER, "ShippingAddress.CountryCode", False),
        (Document.V0_ORDER, "DefaultShipFromLocationAddress.AddressLine1", False),  # the seller's own
        (Document.V0_ORDER, "BuyerTaxInformation.BuyerTaxRegistrationId", True),
        (Document.V0_ADDRESS, "BuyerCompanyName", True),
        (Document.V0_ADDRESS, "DeliveryPreferences.AddressInstructions", True),
        (Document.V0_ORDER_ITEMS, "OrderItems[].BuyerInfo.GiftMessageText", True),
        (Document.V0_ORDER_ITEMS, "OrderItems[].Title", False),
        (Document.V0_REGULATED_INFO, "RegulatedInformation.Fields[].FieldValue", True),
        (Document.ORDER_2026, "recipient.deliveryAddress.phone", True),
        (Document.ORDER_2026, "buyer.buyerEmail", True),
        (Document.ORDER_2026, "orderItems[].product.title", False),
    ],
)
def test_pii_classification_follows_the_dpp_reference(document: Document, path: str, pii: bool) -> None:
    field = CATALOG.field(document, path)
    assert field is not None and field.pii is pii


def test_pii_fields_carry_purposes_and_searchable_kinds() -> None:
    for field in CATALOG:
        if field.pii:
            assert field.purposes and field.category.startswith("user.")
            assert field.retention.value.startswith("pii:")
        else:
            assert not field.purposes and field.search is None
    searchable = {(f.document, f.path): f.search for f in CATALOG if f.search}
    assert searchable[(Document.V0_ORDER, "BuyerInfo.BuyerEmail")] == "email"
    assert searchable[(Document.ORDER_2026, "recipient.deliveryAddress.postalCode")] == "postal_code"
    assert {*searchable.values()} == {"email", "phone", "postal_code", "name"}
    email = CATALOG.field(Document.V0_BUYER_INFO, "BuyerEmail")
    assert email is not None and Purpose.TAX_INVOICING not in email.purposes


def test_concrete_indices_resolve_to_their_catalog_field() -> None:
    field = CATALOG.field(Document.V0_ORDER_ITEMS, "OrderItems[12].BuyerInfo.GiftMessageText")
    assert field is not None and field.category == "user.content.private"
