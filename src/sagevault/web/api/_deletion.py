"""Being built."""

from __future__ import annotations

from fastapi import APIRouter

from .._deps import API

router = APIRouter(prefix=API)
