"""Enrolment: a new person (or one an admin reset) sets their first password and TOTP with the
one-time enrolment secret an admin gave them, and receives ten recovery codes.

The costly part, the new password's Argon2 hash and history check, is `prepare_password`, run
before the write transaction of `finish` (on SQLite a write transaction holds the database's
write lock, for every writer).
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

import pyotp
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Row

from sagevault.audit import EventName
from sagevault.errors import AccessError, AuthenticationFailed, Conflict, CredentialExpired
from sagevault.identity import normalise_login

from ._core import AccessCore, encodable
from ._login import totp_step
from ._passwords import NewPassword, PasswordHasher, prepare_new_password, still_current
from ._policy import as_utc
from ._schema import password_history, principals, recovery_codes

_RECOVERY_CODES = 10


@dataclass(frozen=True, slots=True)
class TotpSetup:
    secret: str = field(repr=False)
    uri: str = field(repr=False)


class Enrolments:
    def __init__(self, core: AccessCore, hasher: PasswordHasher) -> None:
        self._core = core
        self._hasher = hasher

    def _check_secret(self, conn: Connection, login: str, secret: str) -> Row[Any]:
        core = self._core
        if not (encodable(login) and encodable(secret)):
            raise AuthenticationFailed("that login and enrolment secret do not match an open enrolment")
        row = conn.execute(select(principals).where(principals.c.login == normalise_login(login))).first()
        expires = as_utc(row.enrolment_expires_at) if row is not None else None
        if (
            row is None
            or row.enrolment_hash is None
            or row.status != "enrolling"
            or expires is None
            or not hmac.compare_digest(bytes(row.enrolment_hash), core.keyed(conn, "enrol", secret))
        ):
            raise core.refuse(
                conn,
                EventName.ACCESS_ACCOUNT_ENROL,
                row.id if row else None,
                AuthenticationFailed(
                    "that login and enrolment secret do not match an open enrolment; ask an admin for a new one "
                    "(`sagevault users reset`)"
                ),
            )
        if expires <= core.now():
            raise core.refuse(
                conn,
                EventName.ACCESS_ACCOUNT_ENROL,
                row.id,
                CredentialExpired(
                    "this enrolment secret has expired; ask an admin for a new one (`sagevault users reset`)"
                ),
            )
        return row

    def begin(self, conn: Connection, login: str, secret: str) -> TotpSetup:
        """Check the enrolment secret and make the person's TOTP secret (to put in an authenticator)."""
        row = self._check_secret(conn, login, secret)
        totp_secret = pyotp.random_base32()
        wrapped = self._core.keys.wrap(totp_secret.encode(), {"purpose": "totp", "principal": row.id})
        conn.execute(update(principals).where(principals.c.id == row.id).values(totp_secret=wrapped))
        uri = pyotp.TOTP(totp_secret).provisioning_uri(name=row.id, issuer_name="SageVault")
        return TotpSetup(totp_secret, uri)

    def prepare_password(self, conn: Connection, login: str, secret: str, password: str) -> NewPassword:
        """The first password, checked (rules, the history a reset keeps) and hashed, for `finish`:
        reads only. A refusal is recorded as access:password:change."""
        row = self._check_secret(conn, login, secret)
        try:
            return prepare_new_password(conn, self._hasher, self._core.profile, row.id, row.login, password)
        except AccessError as exc:
            raise self._core.refuse(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, exc) from None

    def finish(
        self,
        conn: Connection,
        login: str,
        secret: str,
        password: str,
        code: str,
        *,
        prepared: NewPassword | None = None,
    ) -> list[str]:
        """Set the first password, confirm TOTP with a code, and hand out recovery codes (once).
        `prepared` is what `prepare_password` made for this person in a transaction before this
        one; without it (or if a password was set meanwhile) it is made here."""
        core = self._core
        row = self._check_secret(conn, login, secret)
        if row.totp_secret is None:
            raise Conflict(
                "start with `begin_enrolment` (POST /api/v1/enrolment/begin, `sagevault users enrol`) "
                "to get a TOTP secret first"
            )
        if prepared is None or prepared.principal_id != row.id or not still_current(conn, prepared):
            prepared = self.prepare_password(conn, login, secret, password)
        step = totp_step(core, row, code)
        if step is None:
            raise core.refuse(
                conn,
                EventName.ACCESS_ACCOUNT_ENROL,
                row.id,
                AuthenticationFailed(
                    "that TOTP code is wrong; check the authenticator's clock and try the current code",
                    reason="bad_totp",
                ),
            )
        now = core.now()
        conn.execute(
            update(principals)
            .where(principals.c.id == row.id)
            .values(
                status="active",
                password_hash=prepared.password_hash,
                password_set_at=now,
                totp_last_step=step,
                enrolment_hash=None,
                enrolment_expires_at=None,
                last_active_at=now,
            )
        )
        conn.execute(
            insert(password_history).values(principal_id=row.id, set_at=now, password_hash=prepared.password_hash)
        )
        codes = self._new_recovery_codes(conn, row.id)
        core.changed(conn)
        core.event(conn, EventName.ACCESS_ACCOUNT_ENROL, row.id)
        return codes

    def _new_recovery_codes(self, conn: Connection, principal_id: str) -> list[str]:
        conn.execute(delete(recovery_codes).where(recovery_codes.c.principal_id == principal_id))
        codes = []
        for _ in range(_RECOVERY_CODES):
            raw = base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]
            codes.append(f"{raw[:5]}-{raw[5:]}")
            conn.execute(
                insert(recovery_codes).values(
                    principal_id=principal_id, code_hash=self._core.keyed(conn, "recovery", raw)
                )
            )
        return codes
