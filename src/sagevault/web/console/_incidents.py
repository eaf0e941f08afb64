"""The console's incidents pages (to be written)."""

from __future__ import annotations

from fastapi import APIRouter

from ._render import PREFIX

router = APIRouter(prefix=PREFIX, include_in_schema=False)
