"""Return bundles: the scope's records as received, re-encrypted to the recipient's age public key
(X25519, the `age` file format through `pyrage`: a standard format a recipient opens with the
`age` tool or any age library, with no secret shared beforehand), and a manifest of counts and
SHA-256 hashes signed like a certificate."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519

from sagevault.config import make_private_dir
from sagevault.errors import PayloadError
from sagevault.vault import Exported

FORMAT = "age-encryption.org/v1 (X25519), JSON lines"


def recipient_of(text: str) -> x25519.Recipient:
    """An age X25519 public key (`age1...`); PayloadError says what one looks like otherwise."""
    try:
        return x25519.Recipient.from_str(text.strip())
    except Exception:  # pyrage raises its own error types
        raise PayloadError(
            "the recipient must be an age X25519 public key (age1... as `age-keygen` prints it)"
        ) from None


@dataclass(frozen=True)
class Bundle:
    path: Path
    sha256: str  # of the encrypted file
    size: int
    manifest: dict[str, Any]


def write_bundle(
    exported: list[Exported],
    *,
    recipient: str,
    directory: Path,
    request_id: int,
    tenant_id: str,
    withheld: int,
    now: datetime,
) -> Bundle:
    """Encrypt the records to `recipient` into `<directory>/return-<request>-<tenant>.jsonl.age`
    (0600, never overwriting) and return it with its manifest (no PII: counts and hashes)."""
    lines = [
        json.dumps(
            {
                "record_id": e.record_id,
                "order_id": e.order_id,
                "document": e.document,
                "operation": e.operation,
                "retrieved_at": e.retrieved_at,
                "body": e.body,
                **({"unknown_fields": e.unknown} if e.unknown else {}),
            },
            ensure_ascii=False,
            sort_keys=True,
        )
        for e in exported
    ]
    plain = ("\n".join(lines) + "\n").encode() if lines else b""
    sealed = pyrage.encrypt(plain, [recipient_of(recipient)])
    make_private_dir(directory)
    path = directory / f"return-{request_id}-{tenant_id}.jsonl.age"
    # Written beside and renamed into place: a step that was interrupted after writing it (and
    # rolled back, so the bundle was never registered) writes it again when it goes on.
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(sealed)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    digest = hashlib.sha256(sealed).hexdigest()
    manifest = {
        "request": request_id,
        "tenant": tenant_id,
        "created_at": now.isoformat(),
        "format": FORMAT,
        "recipient": recipient.strip(),
        "file": path.name,
        "file_sha256": digest,
        "file_size": len(sealed),
        "plaintext_sha256": hashlib.sha256(plain).hexdigest(),
        "records": len(exported),
        "orders": len({e.order_id for e in exported}),
        "documents": dict(sorted(Counter(e.document for e in exported).items())),
        "withheld_restricted": withheld,
    }
    return Bundle(path, digest, len(sealed), manifest)
