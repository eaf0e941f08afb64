"""Deletion certificates: a record of sanitization in the shape of NIST SP 800-88 rev. 1's
(appendix G): what was sanitized, how, by whom, when, and how it was verified; signed with the
deployment's Ed25519 signing key, checked offline with the public key alone.

The file is JSON: `{"certificate": {...}, "signature": {"algorithm", "key_sha256", "value"}}`; the
signature is over the certificate's canonical JSON (sorted keys, no spaces, UTF-8). An HTML page
of the same content is for printing; the JSON is what is verified.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sagevault.audit import Signer, load_public_key
from sagevault.audit._signing import verify_signature
from sagevault.errors import IntegrityError, PayloadError
from sagevault.identity import Principal

STANDARD = "NIST SP 800-88 Rev. 1"


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_sha256(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign(certificate: dict[str, Any], signer: Signer, public: Ed25519PublicKey) -> dict[str, Any]:
    """The certificate with its signature, ready to be written as JSON."""
    value = signer.sign(canonical(certificate))
    return {
        "certificate": certificate,
        "signature": {
            "algorithm": "Ed25519",
            "key_sha256": key_sha256(public),
            "value": base64.b64encode(value).decode(),
        },
    }


def verify(document: Any, public_key_file: Path) -> dict[str, Any]:
    """The certificate, if `document` (parsed JSON) is signed by the key in `public_key_file`;
    IntegrityError otherwise (tampered, another key, not a certificate)."""
    key = load_public_key(public_key_file)
    if not isinstance(document, dict) or not isinstance(document.get("certificate"), dict):
        raise PayloadError("this is not a SageVault deletion certificate (no certificate object)")
    signature = document.get("signature")
    if not isinstance(signature, dict) or signature.get("algorithm") != "Ed25519":
        raise IntegrityError("the certificate carries no Ed25519 signature")
    if signature.get("key_sha256") != key_sha256(key):
        raise IntegrityError("the certificate was signed with another key than the one given")
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
    except ValueError:
        raise IntegrityError("the certificate's signature is not base64") from None
    if not verify_signature(key, value, canonical(document["certificate"])):
        raise IntegrityError("the certificate's signature does not verify: it was changed after it was signed")
    return dict(document["certificate"])


def _rows(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        out: list[tuple[str, str]] = []
        for key, value in data.items():
            out += _rows(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}")
        return out
    if isinstance(data, list):
        return [(prefix.rstrip("."), ", ".join(str(v) for v in data) or "-")]
    return [(prefix.rstrip("."), "-" if data is None else str(data))]


def page(signed: dict[str, Any]) -> str:
    """A printable HTML page of a signed certificate (every value escaped; no script, no link)."""
    cert = signed["certificate"]
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _rows(cert))
    sig = signed["signature"]
    algorithm, value, key = (html.escape(str(sig.get(k))) for k in ("algorithm", "value", "key_sha256"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Certificate of sanitization {html.escape(str(cert.get("certificate_id", "")))}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;color:#111}}
table{{border-collapse:collapse;width:100%}}th,td{{border:1px solid #999;padding:.3rem .5rem;text-align:left;
vertical-align:top}}th{{width:30%;background:#eee}}code{{word-break:break-all}}</style></head>
<body><h1>Certificate of sanitization</h1>
<p>In the form of a {html.escape(STANDARD)} sanitization record. The JSON file of this certificate is what
is verified: <code>sagevault deletion verify-certificate FILE</code>.</p>
<table>
{rows}
<tr><th>signature ({algorithm})</th><td><code>{value}</code></td></tr>
<tr><th>signing key (SHA-256)</th><td><code>{key}</code></td></tr>
</table></body></html>
"""


def build(request: Any, counts: dict[str, Any], principal: Principal, now: datetime) -> dict[str, Any]:
    """The certificate's content (before it is signed) for a finished request."""
    held = counts.get("tenant")
    if held == "unknown" or (counts.get("records", 0) == 0 and request.scope_kind != "tenant"):
        code, method, category = "nothing held", "none: nothing of the scope was held", "not applicable"
    elif request.scope_kind == "tenant":
        code, category = "cryptographic erase", "Purge (cryptographic erase)"
        method = "cryptographic erase (every key version destroyed), then purge of the unreadable rows"
    else:
        code, method = "logical delete", "logical delete of the rows and their blind-index tokens"
        category = "Clear"
    scope: dict[str, Any] = {"kind": request.scope_kind, "tenant": request.tenant_id}
    if request.scope_kind == "orders":
        scope["orders"] = request.scope.get("orders", [])
    if request.scope_kind == "buyer":
        scope["identified_by"] = request.scope.get("identified_by", [])
        scope["orders"] = request.scope.get("orders", [])
    return {
        "certificate_id": f"SV-DEL-{request.id}",
        "standard": STANDARD,
        "request": {
            "id": request.id,
            "kind": request.kind,
            "source": request.source,
            "received_at": request.received_at.isoformat(),
            "due_at": request.due_at.isoformat(),
            "requested_by": request.requested_by,
        },
        "scope": scope,
        "media": "SageVault vault database (records, blind-index tokens, tenant key material)",
        "method": method,
        "method_code": code,
        "sanitization_category": category,
        "keys_destroyed": counts.get("keys_destroyed", []),
        "master_key": counts.get("master_key"),
        "counts": {
            "records": counts.get("records", 0),
            "deleted": counts.get("deleted", counts.get("purged", 0)),
            "returned": counts.get("returned", 0),
        },
        "return_bundle": counts.get("bundle"),
        "verification": {**counts.get("verification", {}), "result": "pass"},
        "performed_by": request.performed_by or principal.id,
        "started_at": request.started_at.isoformat() if request.started_at else None,
        "completed_at": now.isoformat(),
        "within_deadline": now <= request.due_at,
        "issued_by": "SageVault",
    }
