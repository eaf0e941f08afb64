"""The declarative field catalog: every field of the SP-API order documents SageVault stores, as
rows. A bare path is not PII; a `_pii(...)` row is, with its data category, the purposes it may be
revealed for and, for searchable fields, its blind-index kind."""

from __future__ import annotations

from collections.abc import Iterable

from ._model import CatalogField, Document, Purpose, Retention

P = Purpose
_SHIP = frozenset({P.FULFILMENT, P.TAX_INVOICING, P.TAX_REMITTANCE, P.LEGAL})  # name, postal address
_CONTACT = frozenset({P.FULFILMENT, P.LEGAL})  # phone, e-mail, delivery notes, gift text
_TAX = frozenset({P.TAX_INVOICING, P.TAX_REMITTANCE, P.LEGAL})
_PAYMENT = frozenset({P.TAX_REMITTANCE, P.LEGAL})
_PO = frozenset({P.FULFILMENT, P.TAX_INVOICING, P.LEGAL})
_NONE: frozenset[Purpose] = frozenset()

OPS = "system.operations"
PURCHASE = "user.behavior.purchase_history"

# (path, category, purposes, search) for PII; a bare path string for non-PII.
_Row = str | tuple[str, str, frozenset[Purpose], str | None]


def _pii(path: str, category: str, purposes: frozenset[Purpose], search: str | None = None) -> _Row:
    return (path, category, purposes, search)


def _under(prefix: str, rows: Iterable[_Row]) -> list[_Row]:
    out: list[_Row] = []
    for row in rows:
        if isinstance(row, str):
            out.append(f"{prefix}.{row}")
        else:
            out.append((f"{prefix}.{row[0]}", *row[1:]))
    return out


def _money(*names: str, amount: str = "Amount", currency: str = "CurrencyCode") -> list[_Row]:
    return [f"{n}.{leaf}" for n in names for leaf in (currency, amount)]


def _v0_buyer_address(search: bool) -> list[_Row]:
    """Orders v0 `Address` when it is the buyer's (ShippingAddress)."""
    street = "user.contact.address.street"
    return [
        _pii("Name", "user.name", _SHIP, "name" if search else None),
        _pii("CompanyName", "user.workplace", _SHIP),
        _pii("AddressLine1", street, _SHIP),
        _pii("AddressLine2", street, _SHIP),
        _pii("AddressLine3", street, _SHIP),
        _pii("City", "user.contact.address.city", _SHIP),
        _pii("County", "user.contact.address.state", _SHIP),
        _pii("District", "user.contact.address.city", _SHIP),
        _pii("StateOrRegion", "user.contact.address.state", _SHIP),
        _pii("Municipality", "user.contact.address.city", _SHIP),
        _pii("PostalCode", "user.contact.address.postal_code", _SHIP, "postal_code" if search else None),
        "CountryCode",
        _pii("Phone", "user.contact.phone_number", _CONTACT, "phone" if search else None),
        _pii("ExtendedFields.StreetName", street, _SHIP),
        _pii("ExtendedFields.StreetNumber", street, _SHIP),
        _pii("ExtendedFields.Complement", street, _SHIP),
        _pii("ExtendedFields.Neighborhood", "user.contact.address.city", _SHIP),
        _pii("ExtendedFields.GeoCoordinates.Latitude", "user.location.precise", _CONTACT),
        _pii("ExtendedFields.GeoCoordinates.Longitude", "user.location.precise", _CONTACT),
        _pii("AddressType", "user.contact.address", _CONTACT),
    ]


_SELLER_ADDRESS_V0 = [  # DefaultShipFromLocationAddress: the seller's own address, not buyer PII
    "Name",
    "CompanyName",
    "AddressLine1",
    "AddressLine2",
    "AddressLine3",
    "City",
    "County",
    "District",
    "StateOrRegion",
    "Municipality",
    "PostalCode",
    "CountryCode",
    "Phone",
    "ExtendedFields.StreetName",
    "ExtendedFields.StreetNumber",
    "ExtendedFields.Complement",
    "ExtendedFields.Neighborhood",
    "ExtendedFields.GeoCoordinates.Latitude",
    "ExtendedFields.GeoCoordinates.Longitude",
    "AddressType",
]


def _v0_buyer_info(search: bool) -> list[_Row]:
    return [
        _pii("BuyerEmail", "user.contact.email", _CONTACT, "email" if search else None),
        _pii("BuyerName", "user.name", _SHIP, "name" if search else None),
        _pii("BuyerCounty", "user.contact.address.state", _TAX),
        _pii("BuyerTaxInfo.CompanyLegalName", "user.workplace", _TAX),
        _pii("BuyerTaxInfo.TaxingRegion", "user.contact.address.state", _TAX),
        _pii("BuyerTaxInfo.TaxClassifications[].Name", "user.government_id", _TAX),
        _pii("BuyerTaxInfo.TaxClassifications[].Value", "user.government_id", _TAX),
        _pii("PurchaseOrderNumber", "user.unique_id", _PO),
    ]


def _v0_item_buyer_info() -> list[_Row]:
    return [
        _pii("BuyerCustomizedInfo.CustomizedURL", "user.content.private", _CONTACT),
        *_money("GiftWrapPrice", "GiftWrapTax"),
        _pii("GiftMessageText", "user.content.private", _CONTACT),
        "GiftWrapLevel",
    ]


def _delivery_time(
    prefix: str,
    hours: str,
    open_key: str,
    start_end: tuple[str, str],
    hm: tuple[str, str],
    day: str,
    exception_leaves: tuple[str, ...],
) -> list[_Row]:
    """Preferred delivery windows. Amazon classes delivery preferences as PII (they describe a
    buyer's routine), so every leaf is encrypted."""
    windows = [f"{open_key}[].{se}.{unit}" for se in start_end for unit in hm]
    rows: list[_Row] = [_pii(f"{prefix}.{hours}[].{day}", "user.contact.address", _CONTACT)]
    rows += [_pii(f"{prefix}.{hours}[].{w}", "user.contact.address", _CONTACT) for w in windows]
    rows += [_pii(f"{prefix}.exception[].{leaf}", "user.contact.address", _CONTACT) for leaf in exception_leaves]
    rows += [_pii(f"{prefix}.exception[].{w}", "user.contact.address", _CONTACT) for w in windows]
    return rows


def _v0_delivery_preferences() -> list[_Row]:
    rows = _delivery_time(
        "PreferredDeliveryTime",
        "BusinessHours",
        "OpenIntervals",
        ("StartTime", "EndTime"),
        ("Hour", "Minute"),
        "DayOfWeek",
        ("ExceptionDate", "IsOpen"),
    )
    rows = [r if isinstance(r, str) else (r[0].replace("exception[]", "ExceptionDates[]"), *r[1:]) for r in rows]
    return [
        _pii("DropOffLocation", "user.contact.address", _CONTACT),
        *rows,
        _pii("OtherAttributes[]", "user.contact.address", _CONTACT),
        _pii("AddressInstructions", "user.contact.address", _CONTACT),
    ]


_V0_ORDER: list[_Row] = [
    "AmazonOrderId",
    "SellerOrderId",
    "PurchaseDate",
    "LastUpdateDate",
    "OrderStatus",
    "FulfillmentChannel",
    "SalesChannel",
    "OrderChannel",
    "ShipServiceLevel",
    *_money("OrderTotal"),
    "NumberOfItemsShipped",
    "NumberOfItemsUnshipped",
    *_money("PaymentExecutionDetail[].Payment"),
    "PaymentExecutionDetail[].PaymentMethod",
    "PaymentExecutionDetail[].AcquirerId",
    "PaymentExecutionDetail[].CardBrand",
    _pii("PaymentExecutionDetail[].AuthorizationCode", "user.financial", _PAYMENT),
    "PaymentMethod",
    "PaymentMethodDetails[]",
    "MarketplaceId",
    "ShipmentServiceLevelCategory",
    "EasyShipShipmentStatus",
    "CbaDisplayableShippingLabel",
    "OrderType",
    "EarliestShipDate",
    "LatestShipDate",
    "EarliestDeliveryDate",
    "LatestDeliveryDate",
    "IsBusinessOrder",
    "IsPrime",
    "IsPremiumOrder",
    "IsGlobalExpressEnabled",
    "ReplacedOrderId",
    "IsReplacementOrder",
    "PromiseResponseDueDate",
    "IsEstimatedShipDateSet",
    "IsSoldByAB",
    "IsIBA",
    *_under("DefaultShipFromLocationAddress", _SELLER_ADDRESS_V0),
    "BuyerInvoicePreference",
    _pii("BuyerTaxInformation.BuyerLegalCompanyName", "user.workplace", _TAX),
    _pii("BuyerTaxInformation.BuyerBusinessAddress", "user.contact.address", _TAX),
    _pii("BuyerTaxInformation.BuyerTaxRegistrationId", "user.government_id", _TAX),
    _pii("BuyerTaxInformation.BuyerTaxOffice", "user.government_id", _TAX),
    "FulfillmentInstruction.FulfillmentSupplySourceId",
    "IsISPU",
    "IsAccessPointOrder",
    "MarketplaceTaxInfo.TaxClassifications[].Name",
    "MarketplaceTaxInfo.TaxClassifications[].Value",
    "SellerDisplayName",
    *_under("ShippingAddress", _v0_buyer_address(search=True)),
    *_under("BuyerInfo", _v0_buyer_info(search=True)),
    "AutomatedShippingSettings.HasAutomatedShippingSettings",
    "AutomatedShippingSettings.AutomatedCarrier",
    "AutomatedShippingSettings.AutomatedShipMethod",
    "HasRegulatedItems",
    "ElectronicInvoiceStatus",
]

_V0_ORDER_ITEM: list[_Row] = [
    "ASIN",
    "SellerSKU",
    "OrderItemId",
    "AssociatedItems[].OrderId",
    "AssociatedItems[].OrderItemId",
    "AssociatedItems[].AssociationType",
    "Title",
    "QuantityOrdered",
    "QuantityShipped",
    "ProductInfo.NumberOfItems",
    "PointsGranted.PointsNumber",
    *_money("PointsGranted.PointsMonetaryValue"),
    *_money(
        "ItemPrice",
        "ShippingPrice",
        "ItemTax",
        "ShippingTax",
        "ShippingDiscount",
        "ShippingDiscountTax",
        "PromotionDiscount",
        "PromotionDiscountTax",
        "CODFee",
        "CODFeeDiscount",
    ),
    "PromotionIds[]",
    "IsGift",
    "ConditionNote",
    "ConditionId",
    "ConditionSubtypeId",
    "ScheduledDeliveryStartDate",
    "ScheduledDeliveryEndDate",
    "PriceDesignation",
    "TaxCollection.Model",
    "TaxCollection.ResponsibleParty",
    "SerialNumberRequired",
    "IsTransparency",
    "IossNumber",
    "StoreChainStoreId",
    "DeemedResellerCategory",
    *_under("BuyerInfo", _v0_item_buyer_info()),
    "BuyerRequestedCancel.IsBuyerRequestedCancel",
    _pii("BuyerRequestedCancel.BuyerCancelReason", "user.content.private", _CONTACT),
    "SerialNumbers[]",
    "SubstitutionPreferences.SubstitutionType",
    *_under(
        "SubstitutionPreferences.SubstitutionOptions[]",
        ["ASIN", "QuantityOrdered", "SellerSKU", "Title", "Measurement.Unit", "Measurement.Value"],
    ),
    "Measurement.Unit",
    "Measurement.Value",
    "ShippingConstraints.PalletDelivery",
    "ShippingConstraints.SignatureConfirmation",
    "ShippingConstraints.RecipientIdentityVerification",
    "ShippingConstraints.RecipientAgeVerification",
    "AmazonPrograms.Programs[]",
]

_V0_REGULATED: list[_Row] = [
    "AmazonOrderId",
    "RegulatedInformation.Fields[].FieldId",
    "RegulatedInformation.Fields[].FieldLabel",
    "RegulatedInformation.Fields[].FieldType",
    _pii("RegulatedInformation.Fields[].FieldValue", "user.health_and_medical", _CONTACT),
    "RequiresDosageLabel",
    *_under(
        "RegulatedOrderVerificationStatus",
        [
            "Status",
            "RequiresMerchantAction",
            "ValidRejectionReasons[].RejectionReasonId",
            "ValidRejectionReasons[].RejectionReasonDescription",
            "RejectionReason.RejectionReasonId",
            "RejectionReason.RejectionReasonDescription",
            "ReviewDate",
            "ExternalReviewerId",
            "ValidVerificationDetails[].VerificationDetailType",
            "ValidVerificationDetails[].ValidVerificationStatuses[]",
            "ValidInterimStatusCodes[].StatusCode",
            "ValidInterimStatusCodes[].StatusDescription",
        ],
    ),
]


def _customer_address_2026(search: bool) -> list[_Row]:
    street = "user.contact.address.street"
    return [
        _pii("name", "user.name", _SHIP, "name" if search else None),
        _pii("companyName", "user.workplace", _SHIP),
        _pii("addressLine1", street, _SHIP),
        _pii("addressLine2", street, _SHIP),
        _pii("addressLine3", street, _SHIP),
        _pii("city", "user.contact.address.city", _SHIP),
        _pii("districtOrCounty", "user.contact.address.state", _SHIP),
        _pii("stateOrRegion", "user.contact.address.state", _SHIP),
        _pii("municipality", "user.contact.address.city", _SHIP),
        _pii("postalCode", "user.contact.address.postal_code", _SHIP, "postal_code" if search else None),
        "countryCode",
        _pii("phone", "user.contact.phone_number", _CONTACT, "phone" if search else None),
        _pii("extendedFields.streetName", street, _SHIP),
        _pii("extendedFields.streetNumber", street, _SHIP),
        _pii("extendedFields.complement", street, _SHIP),
        _pii("extendedFields.neighborhood", "user.contact.address.city", _SHIP),
        _pii("addressType", "user.contact.address", _CONTACT),
    ]


def _delivery_preference_2026() -> list[_Row]:
    rows = _delivery_time(
        "deliveryTime",
        "businessHours",
        "timeWindows",
        ("startTime", "endTime"),
        ("hour", "minute"),
        "dayOfWeek",
        ("exceptionDate", "exceptionDateType"),
    )
    rows = [r if isinstance(r, str) else (r[0].replace("exception[]", "exceptionDates[]"), *r[1:]) for r in rows]
    return [
        _pii("dropOffLocation", "user.contact.address", _CONTACT),
        _pii("addressInstruction", "user.contact.address", _CONTACT),
        *rows,
        _pii("deliveryCapabilities[]", "user.contact.address", _CONTACT),
    ]


def _money_2026(*names: str) -> list[_Row]:
    return _money(*names, amount="amount", currency="currencyCode")


_ORDER_2026: list[_Row] = [
    "orderId",
    "orderAliases[].aliasId",
    "orderAliases[].aliasType",
    "createdTime",
    "lastUpdatedTime",
    "programs[]",
    "associatedOrders[].orderId",
    "associatedOrders[].associationType",
    "salesChannel.channelName",
    "salesChannel.marketplaceId",
    "salesChannel.marketplaceName",
    _pii("buyer.buyerName", "user.name", _SHIP, "name"),
    _pii("buyer.buyerEmail", "user.contact.email", _CONTACT, "email"),
    _pii("buyer.buyerCompanyName", "user.workplace", _SHIP),
    _pii("buyer.buyerPurchaseOrderNumber", "user.unique_id", _PO),
    *_under("recipient.deliveryAddress", _customer_address_2026(search=True)),
    *_under("recipient.deliveryPreference", _delivery_preference_2026()),
    *_money_2026("proceeds.grandTotal", "proceeds.breakdowns[].subtotal"),
    "proceeds.breakdowns[].type",
    "proceeds.breakdowns[].status",
    "payment.paymentExecutions[].paymentMethod",
    *_money_2026("payment.paymentExecutions[].paymentAmount"),
    "payment.paymentExecutions[].acquirerId",
    "payment.paymentExecutions[].cardBrand",
    _pii("payment.paymentExecutions[].authorizationCode", "user.financial", _PAYMENT),
    "tax.taxRegistrations[].entityType",
    _pii("tax.taxRegistrations[].legalName", "user.workplace", _TAX),
    "tax.taxRegistrations[].taxRegistrationType",
    _pii("tax.taxRegistrations[].taxRegistrationNumber", "user.government_id", _TAX),
    *_under(
        "tax.taxRegistrations[].taxRegistrationAddress",
        [r if isinstance(r, str) else (r[0], r[1], _TAX, None) for r in _customer_address_2026(search=False)],
    ),
    "tax.taxRegistrations[].taxRegistrationAttributes[].key",
    _pii("tax.taxRegistrations[].taxRegistrationAttributes[].value", "user.government_id", _TAX),
    "tax.taxInvoicing.buyerInvoicePreference",
    "tax.taxInvoicing.invoiceStatus",
    "fulfillment.fulfillmentStatus",
    "fulfillment.fulfilledBy",
    "fulfillment.fulfillmentServiceLevel",
    *[
        f"fulfillment.{w}.{e}"
        for w in ("shipByWindow", "deliverByWindow", "labelPrintingWindow")
        for e in ("earliestDateTime", "latestDateTime")
    ],
    *_under(
        "orderItems[]",
        [
            "orderItemId",
            "quantityOrdered",
            "measurement.unit",
            "measurement.value",
            "associatedOrderItems[].orderId",
            "associatedOrderItems[].orderItemId",
            "associatedOrderItems[].associationType",
            "programs[]",
            "product.asin",
            "product.title",
            "product.sellerSku",
            "product.condition.conditionType",
            "product.condition.conditionSubtype",
            "product.condition.conditionNote",
            *_money_2026("product.price.unitPrice"),
            "product.price.priceDesignation",
            "product.serialNumbers[]",
            _pii("product.customization.customizedUrl", "user.content.private", _CONTACT),
            *_money_2026(
                "proceeds.proceedsTotal",
                "proceeds.breakdowns[].subtotal",
                "proceeds.breakdowns[].detailedBreakdowns[].value",
                "expense.pointsCost.pointsGranted.pointsMonetaryValue",
            ),
            "proceeds.breakdowns[].type",
            "proceeds.breakdowns[].detailedBreakdowns[].subtype",
            "expense.pointsCost.pointsGranted.pointsNumber",
            "promotion.breakdowns[].promotionId",
            "cancellation.cancellationRequest.requester",
            _pii("cancellation.cancellationRequest.cancelReason", "user.content.private", _CONTACT),
            "cancellation.cancellationExecution.cancelledBy",
            "cancellation.cancellationExecution.cancelReason",
            "fulfillment.quantityFulfilled",
            "fulfillment.quantityUnfulfilled",
            "fulfillment.picking.substitutionPreference.substitutionType",
            *_under(
                "fulfillment.picking.substitutionPreference.substitutionOptions[]",
                ["asin", "quantityOrdered", "sellerSku", "title", "measurement.unit", "measurement.value"],
            ),
            _pii("fulfillment.packing.giftOption.giftMessage", "user.content.private", _CONTACT),
            "fulfillment.packing.giftOption.giftWrapLevel",
            "fulfillment.packing.serialNumberRequirement.requirementType",
            "fulfillment.shipping.scheduledDeliveryWindow.earliestDateTime",
            "fulfillment.shipping.scheduledDeliveryWindow.latestDateTime",
            *[
                f"fulfillment.shipping.shippingConstraints.{c}"
                for c in (
                    "palletDelivery",
                    "cashOnDelivery",
                    "signatureConfirmation",
                    "recipientIdentityVerification",
                    "recipientAgeVerification",
                )
            ],
            "fulfillment.shipping.internationalShipping.iossNumber",
            "tax.taxCalculationBreakdowns[].reportingScheme",
            "tax.taxCollections[].model",
            "tax.taxCollections[].responsibleParty",
        ],
    ),
    *_under(
        "packages[]",
        [
            "packageReferenceId",
            "createdTime",
            "packageStatus.status",
            "packageStatus.detailedStatus",
            "carrier",
            "shipTime",
            "shippingService",
            "trackingNumber",
            *[
                f"shipFromAddress.{a}"
                for a in (  # the seller's warehouse, not buyer PII
                    "name",
                    "addressLine1",
                    "addressLine2",
                    "addressLine3",
                    "city",
                    "districtOrCounty",
                    "stateOrRegion",
                    "municipality",
                    "postalCode",
                    "countryCode",
                )
            ],
            "packageItems[].orderItemId",
            "packageItems[].quantity",
            "packageItems[].transparencyCodes[]",
        ],
    ),
    "fulfillmentOrders[].fulfillmentOrderId",
]

_TABLE: dict[Document, list[_Row]] = {
    Document.V0_ORDER: _V0_ORDER,
    Document.V0_BUYER_INFO: ["AmazonOrderId", *_v0_buyer_info(search=True)],
    Document.V0_ADDRESS: [
        "AmazonOrderId",
        _pii("BuyerCompanyName", "user.workplace", _SHIP),
        *_under("ShippingAddress", _v0_buyer_address(search=True)),
        *_under("DeliveryPreferences", _v0_delivery_preferences()),
    ],
    Document.V0_ORDER_ITEMS: ["AmazonOrderId", "NextToken", *_under("OrderItems[]", _V0_ORDER_ITEM)],
    Document.V0_ORDER_ITEMS_BUYER_INFO: [
        "AmazonOrderId",
        "NextToken",
        *_under("OrderItems[]", ["OrderItemId", *_v0_item_buyer_info()]),
    ],
    Document.V0_REGULATED_INFO: _V0_REGULATED,
    Document.ORDER_2026: _ORDER_2026,
}

_PURCHASE_HINTS = ("Price", "Amount", "amount", "Title", "title", "Quantity", "quantity", "ASIN", "asin", "SKU", "Sku")


def _build(table: dict[Document, list[_Row]]) -> list[CatalogField]:
    fields = []
    for doc, rows in table.items():
        for row in rows:
            if isinstance(row, str):
                category = PURCHASE if any(h in row for h in _PURCHASE_HINTS) else OPS
                fields.append(CatalogField(doc, row, False, category, _NONE, Retention.NON_PII))
            else:
                path, category, purposes, search = row
                fields.append(CatalogField(doc, path, True, category, purposes, Retention.PII_AFTER_DELIVERY, search))
    return fields


FIELDS = _build(_TABLE)
