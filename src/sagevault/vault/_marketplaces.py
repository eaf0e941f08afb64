"""Amazon marketplace ids and the SP-API region that serves each (public Amazon reference data)."""

from __future__ import annotations

from sagevault.errors import PayloadError, shown

MARKETPLACES: dict[str, tuple[str, str]] = {
    "ATVPDKIKX0DER": ("na", "US"),
    "A2EUQ1WTGCTBG2": ("na", "CA"),
    "A1AM78C64UM0Y8": ("na", "MX"),
    "A2Q3Y263D00KWC": ("na", "BR"),
    "A1RKKUPIHCS9HS": ("eu", "ES"),
    "A1F83G8C2ARO7P": ("eu", "UK"),
    "A13V1IB3VIYZZH": ("eu", "FR"),
    "AMEN7PMS3EDWL": ("eu", "BE"),
    "A1805IZSGTT6HS": ("eu", "NL"),
    "A1PA6795UKMFR9": ("eu", "DE"),
    "APJ6JRA9NG5V4": ("eu", "IT"),
    "A2NODRKZP88ZB9": ("eu", "SE"),
    "AE08WJ6YKNBMC": ("eu", "ZA"),
    "A1C3SOZRARQ6R3": ("eu", "PL"),
    "ARBP9OOSHTCHU": ("eu", "EG"),
    "A33AVAJ2PDY3EV": ("eu", "TR"),
    "A17E79C6D8DWNP": ("eu", "SA"),
    "A2VIGQ35RCS4UG": ("eu", "AE"),
    "A21TJRUUN4KGV": ("eu", "IN"),
    "A28R8C7NBKEWEA": ("eu", "IE"),
    "A19VAU5U5O7RUS": ("fe", "SG"),
    "A39IBJ37TRP1C6": ("fe", "AU"),
    "A1VC38T7YXB528": ("fe", "JP"),
}


def region_of(marketplace_id: str) -> str:
    try:
        return MARKETPLACES[marketplace_id][0]
    except KeyError:
        raise PayloadError(
            f"{shown(marketplace_id)} is not an Amazon marketplace id SageVault knows; use an id such as "
            "ATVPDKIKX0DER (US) or A1PA6795UKMFR9 (DE)"
        ) from None
