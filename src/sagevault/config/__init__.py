"""Typed settings and the DPP policy profile.

Settings come from `SAGEVAULT_*` environment variables and an optional TOML file
(`SAGEVAULT_CONFIG`, else `./sagevault.toml` if present). The policy profile holds every number
of `shared/reference/dpp-requirements.md`; an operator may tighten a number, never loosen it past
the policy, and SageVault refuses to start when one is loosened, or when a database, Redis or
KMS URL would send data in clear to another host.
"""

from __future__ import annotations

from ._channels import database_problem, https_problem, is_local_host, redis_problem
from ._paths import make_private_dir
from ._settings import PolicyProfile, Settings, load_settings

__all__ = [
    "PolicyProfile",
    "Settings",
    "database_problem",
    "https_problem",
    "is_local_host",
    "load_settings",
    "make_private_dir",
    "redis_problem",
]
