"""What changed in the effective settings since the last time a process of this deployment
recorded them: an `admin:config:change` event that names who opened the deployment and which
settings differ (their names, never their values).

The per-setting fingerprints of the last recorded settings are kept beside the security log's
digests (`<data dir>/audit/settings-seen.json`, mode 0600): salted SHA-256, so the file holds no
setting's value, not even a database URL's password.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sagevault.audit import AuditEvent, AuditLog, EventName
from sagevault.config import Settings, make_private_dir
from sagevault.identity import Principal


def settings_fingerprint(settings: Settings) -> str:
    return hashlib.sha256(settings.model_dump_json().encode()).hexdigest()


def _flat(settings: Settings) -> dict[str, str]:
    """Every setting by name (`policy.lockout_threshold`), as canonical JSON text."""
    flat: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if name == "policy":
            flat.update({f"policy.{k}": json.dumps(v, sort_keys=True) for k, v in value.items()})
        else:
            flat[name] = json.dumps(value, sort_keys=True)
    return flat


def _seen_path(settings: Settings) -> Path:
    return settings.resolved_data_dir / "audit" / "settings-seen.json"


def _read_seen(path: Path) -> dict[str, Any] | None:
    try:
        seen = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return seen if isinstance(seen, dict) and isinstance(seen.get("settings"), dict) else None


def _write_seen(path: Path, seen: dict[str, Any]) -> None:
    make_private_dir(path.parent)
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(seen, fh, sort_keys=True)
    partial.replace(path)


def record_settings(
    audit: AuditLog, settings: Settings, actor: Principal | None, extra: Mapping[str, str] | None = None
) -> None:
    """An admin:config:change event when the effective settings differ from the last recorded:
    by `actor` (who opened the deployment), counting one `setting:<name>` per setting that
    changed (on a first record, `settings`: how many there are). `extra` is more configuration
    by name, as text (the detection rules in force: `rule.<id>` -> its fingerprint)."""
    more = dict(sorted((extra or {}).items()))
    fingerprint = settings_fingerprint(settings)
    if more:
        fingerprint = hashlib.sha256(f"{fingerprint}\0{json.dumps(more)}".encode()).hexdigest()
    last = next(audit.search(name=EventName.ADMIN_CONFIG_CHANGE.value, newest_first=True, limit=1), None)
    path = _seen_path(settings)
    seen = _read_seen(path)
    salt = seen["salt"] if seen is not None and isinstance(seen.get("salt"), str) else secrets.token_hex(16)
    current = {
        name: hashlib.sha256(f"{salt}\0{name}\0{value}".encode()).hexdigest()
        for name, value in {**_flat(settings), **more}.items()
    }
    if last is not None and last["fingerprint"] == fingerprint:
        if seen is None or seen["settings"] != current:
            _write_seen(path, {"salt": salt, "settings": current})
        return
    if seen is None:
        counts = {"settings": len(current)}
    else:
        before: dict[str, str] = seen["settings"]
        changed = sorted({n for n in current if before.get(n) != current[n]} | (before.keys() - current.keys()))
        counts = {f"setting:{name}": 1 for name in changed} or {"settings": len(current)}
    who = actor or Principal("sagevault", "operator")
    audit.record(
        AuditEvent(
            name=EventName.ADMIN_CONFIG_CHANGE,
            channel=who.channel,
            actor=who.id,
            fingerprint=fingerprint,
            counts=counts,
            # the first record of a deployment's settings is not a change (the config-changed rule reads this)
            operation="config recorded" if seen is None else "config change",
        )
    )
    _write_seen(path, {"salt": salt, "settings": current})
