"""Keys, shredding and the security event log: key status and rotation, crypto-shredding with
its certificate, audit search and export."""

from __future__ import annotations

from fastapi import APIRouter

from ._deps import API

router = APIRouter(prefix=API)
