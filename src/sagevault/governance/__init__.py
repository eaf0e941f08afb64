"""Governance: the asset inventory, the record of processing (generated), access-review
campaigns, and the vulnerability and policy registers (DPP 1 and 6). Read-only over the other
packages, except that a review decision revokes access through `access`.

`Governance` holds the parts; `MIGRATIONS` creates their tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._assets import KINDS, METHODS, Asset, AssetPart, Assets, deployment_parts
from ._policies import Policies, Policy
from ._reviews import Campaigns
from ._ropa import Ropa
from ._schema import assets, governance_metadata, policies, review_campaigns, review_items, vulnerabilities
from ._vulns import Vulnerabilities

MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class Governance:
    """`Deployment.governance`: one of each part."""

    assets: Assets
    policies: Policies
    ropa: Ropa
    reviews: Campaigns
    vulns: Vulnerabilities


__all__ = [
    "KINDS",
    "METHODS",
    "MIGRATIONS",
    "Asset",
    "AssetPart",
    "Assets",
    "Campaigns",
    "Governance",
    "Policies",
    "Policy",
    "Ropa",
    "Vulnerabilities",
    "assets",
    "deployment_parts",
    "governance_metadata",
    "policies",
    "review_campaigns",
    "review_items",
    "vulnerabilities",
]
