"""The stand-in's refusals, in the shapes Amazon answers with. Messages never hold a token, a
secret or PII."""

from __future__ import annotations

from typing import Any


class SpApiError(Exception):
    """An SP-API refusal: HTTP `status` with Amazon's error `code` and `message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"errors": [{"code": self.code, "message": self.message, "details": ""}]}


class LwaError(Exception):
    """An LWA token endpoint refusal (RFC 6749's error shape)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def invalid(message: str) -> SpApiError:
    return SpApiError(400, "InvalidInput", message)
