"""`AccessService`: the parts of access wired to one core, as a deployment holds them.

    d.access.authn      log-in, sessions, password changes
    d.access.enrolment  a new person's first password and TOTP
    d.access.accounts   people and service accounts, resets, leavers, locks
    d.access.api_keys   service credentials
    d.access.grants     roles on tenants, the two-person rule
    d.access.allowlists IP allow-lists
    d.access.switches   kill switches
    d.access.reviews    the access review
    d.access.core       the decision (`authorize`), keyed hashes, the client address

Every method takes the caller's connection inside a transaction the edge owns (it never commits)
and, for administration, the acting principal; it asks `decide` first and records the security
event. Mistakes that change nothing (an unknown grant id, a switch name that does not exist) are
plain errors.
"""

from __future__ import annotations

from ._accounts import Accounts
from ._controls import AllowLists, KillSwitches
from ._core import AccessCore
from ._enrolment import Enrolments
from ._grants import Grants
from ._keys import ApiKeys
from ._login import Authentication
from ._passwords import Argon2Hashing, PasswordHasher
from ._policy import AccessControl
from ._review import Reviews
from ._throttle import LoginThrottle


class AccessService:
    def __init__(self, core: AccessCore, *, hasher: PasswordHasher | None = None) -> None:
        self.core = core
        hasher = hasher or Argon2Hashing.from_settings(core.settings)
        self.authn = Authentication(core, hasher)
        self.enrolment = Enrolments(core, hasher)
        self.accounts = Accounts(core)
        self.api_keys = ApiKeys(core)
        self.grants = Grants(core)
        self.allowlists = AllowLists(core)
        self.switches = KillSwitches(core)
        self.reviews = Reviews(core)

    @property
    def control(self) -> AccessControl:
        return self.core.control

    @property
    def throttle(self) -> LoginThrottle:
        return self.core.throttle

    def __repr__(self) -> str:
        return "AccessService()"
