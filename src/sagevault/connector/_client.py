"""The SP-API client: LWA tokens, Restricted Data Tokens and the orders operations, over httpx
with Amazon's models as the contract (see docs/connector.md for why no client library).

Tokens live in this process's memory only (`Token`: never in a repr), keyed by tenant, and are
renewed five minutes before they expire. Every call waits for its operation's token bucket, and
429s, 5xx answers and timeouts are retried with backoff; a 403 makes the client drop the seller's
tokens (`Forbidden`), and the connector decides when repeated 403s mean a revoked authorisation
(`Connector.fetch`); LWA's `invalid_grant` is one at once. No token, secret or answer body reaches
a log or an exception."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from sagevault.errors import AuthorizationRevoked, ConfigError, PayloadError, UpstreamError

from ._credentials import AppCredentials
from ._rate import DEFAULT_PLANS, Backoff, TokenBucket, header_rate

RENEW_BEFORE = 300.0  # seconds: a token this close to its expiry is renewed first
RETRIED = frozenset({429, 500, 502, 503, 504})
ORDERS_V0 = "/orders/v0/orders"
ORDERS_2026 = "/orders/2026-01-01/orders"
RESTRICTED_ELEMENTS = ("buyerInfo", "shippingAddress")


@dataclass
class Token:
    value: str = field(repr=False)
    expires: float  # time.monotonic() at which it expires

    def fresh(self, now: float) -> bool:
        return now < self.expires - RENEW_BEFORE


@dataclass(frozen=True)
class Answer:
    """A JSON answer of SP-API and the rate Amazon says applies to it."""

    body: dict[str, Any] = field(repr=False)  # buyers' PII
    rate: float | None


Event = Callable[[str, str, Mapping[str, int]], None]  # (event name, tenant, counts)


def _ssl_context(app: AppCredentials) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(app.ca_file) if app.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SpApiClient:
    """One application's client: its LWA credentials, an HTTP connection pool, the token buckets
    per (tenant, operation) and the in-memory tokens of every seller it serves."""

    def __init__(
        self,
        app: AppCredentials,
        *,
        timeout: float = 30.0,
        rate_limits: bool = True,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.rate_limits = rate_limits
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._clock = clock
        try:
            self._http = httpx.Client(verify=_ssl_context(app), timeout=timeout, follow_redirects=False)
        except (OSError, ssl.SSLError):
            raise ConfigError(f"the CA file {app.ca_file} for the SP-API endpoint cannot be read") from None
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._tokens: dict[tuple[str, str], Token] = {}  # (tenant, "access" | RDT path) -> token
        self._lock = threading.Lock()
        self.retries = 0  # answers retried (429, 5xx, timeouts), for status and tests
        self.throttled = 0  # 429s among them

    def wait(self, attempt: int) -> None:
        """Back off before try number `attempt` + 1 of a call (full jitter)."""
        self.retries += 1
        self._sleep(self._backoff.delay(attempt))

    def close(self) -> None:
        self._http.close()
        with self._lock:
            self._tokens.clear()

    # --- rate ---------------------------------------------------------------------------

    def _bucket(self, tenant_id: str, operation: str) -> TokenBucket:
        with self._lock:
            bucket = self._buckets.get((tenant_id, operation))
            if bucket is None:
                rate, burst = DEFAULT_PLANS[operation]
                bucket = TokenBucket(rate, burst, clock=self._clock, sleep=self._sleep)
                self._buckets[(tenant_id, operation)] = bucket
            return bucket

    def _send(
        self, tenant_id: str, operation: str, request: Callable[[], httpx.Response], *, tries: int | None = None
    ) -> httpx.Response:
        """Send with the operation's bucket and retries (`tries` in all; default the backoff's);
        the last answer (any status) or an UpstreamError when the endpoint could not be reached."""
        bucket = self._bucket(tenant_id, operation)
        response: httpx.Response | None = None
        tries = tries or self._backoff.attempts
        for attempt in range(tries):
            if attempt:
                self.wait(attempt)
            if self.rate_limits:
                bucket.take()
            try:
                response = request()
            except (httpx.InvalidURL, httpx.UnsupportedProtocol):
                raise ConfigError(f"{operation}: the endpoint URL is not one httpx can call; fix it") from None
            except httpx.TimeoutException:
                response = None
                continue
            except httpx.TransportError as exc:  # refused, reset, TLS failure: the type says which
                if isinstance(exc.__cause__ or exc.__context__, ssl.SSLCertVerificationError):
                    raise ConfigError(
                        f"the SP-API endpoint's TLS certificate is not trusted ({operation}); set the CA "
                        "(ca_file in the application file) or fix the endpoint"
                    ) from None
                response = None
                continue
            rate = header_rate(response.headers.get("x-amzn-ratelimit-limit"))
            if rate is not None:
                bucket.set_rate(rate)
            if response.status_code == 429:
                self.throttled += 1
                bucket.drain()
            if response.status_code not in RETRIED:
                return response
        if response is None:
            raise UpstreamError(f"{operation}: the SP-API endpoint did not answer after {tries} tries")
        return response

    # --- LWA ----------------------------------------------------------------------------

    def _lwa(self, tenant_id: str, form: dict[str, str]) -> dict[str, Any]:
        code_grant = form["grant_type"] == "authorization_code"
        form = {**form, "client_id": self.app.client_id, "client_secret": self.app.client_secret}
        response = self._send(
            tenant_id,
            "lwaToken",
            lambda: self._http.post(self.app.token_url, data=form),
            tries=1 if code_grant else None,  # a code is good once: a retry could only be refused
        )
        body = _json(response, "LWA token")
        if response.status_code == 200 and isinstance(body.get("access_token"), str):
            return body
        error = body.get("error") if isinstance(body.get("error"), str) else None
        if error == "invalid_grant" and code_grant:
            raise PayloadError(
                "LWA refused the authorisation code (invalid_grant: used already, older than five minutes, or "
                "issued for another redirect URI); ask the seller to authorise again (`sagevault connect url`)"
            )
        if error == "invalid_grant":
            raise AuthorizationRevoked(
                f"Amazon refused tenant {tenant_id}'s authorisation (invalid_grant: the refresh token was revoked "
                "or has expired); the seller must authorise the application again (`sagevault connect`)"
            )
        if error in ("invalid_client", "unauthorized_client"):
            raise ConfigError(
                f"LWA refused the application's credentials ({error}); check the client id and secret "
                "(`sagevault connect app`)"
            )
        raise UpstreamError(f"the LWA token endpoint answered {response.status_code} ({error or 'no error code'})")

    def access_token(self, tenant_id: str, refresh_token: str, on_event: Event | None = None) -> Token:
        """The seller's LWA access token, from memory while it is fresh, else renewed."""
        now = self._clock()
        with self._lock:
            token = self._tokens.get((tenant_id, "access"))
        if token is not None and token.fresh(now):
            return token
        body = self._lwa(tenant_id, {"grant_type": "refresh_token", "refresh_token": refresh_token})
        token = Token(body["access_token"], now + _seconds(body.get("expires_in"), "expires_in"))
        with self._lock:
            self._tokens[(tenant_id, "access")] = token
        if on_event:
            on_event("connector:token:refresh", tenant_id, {})
        return token

    def exchange_code(self, tenant_id: str, code: str, redirect_uri: str | None) -> str:
        """The website authorisation flow's last step: the refresh token for `code`."""
        form = {"grant_type": "authorization_code", "code": code}
        if redirect_uri:
            form["redirect_uri"] = redirect_uri
        body = self._lwa(tenant_id, form)
        refresh = body.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise UpstreamError("the LWA token endpoint gave no refresh token for the authorisation code")
        return refresh

    def forget(self, tenant_id: str) -> None:
        """Drop the seller's tokens (a 403, a revoked authorisation, a disconnect)."""
        with self._lock:
            for key in [k for k in self._tokens if k[0] == tenant_id]:
                del self._tokens[key]

    # --- RDT ----------------------------------------------------------------------------

    def restricted_token(
        self, tenant_id: str, region: str, path: str, access: Token, on_event: Event | None = None
    ) -> Token:
        """A Restricted Data Token for GET `path` with the buyer's data elements, from memory
        while it is fresh."""
        now = self._clock()
        with self._lock:
            token = self._tokens.get((tenant_id, path))
        if token is not None and token.fresh(now):
            return token
        resources = {
            "restrictedResources": [{"method": "GET", "path": path, "dataElements": list(RESTRICTED_ELEMENTS)}]
        }
        url = self.app.endpoint_for(region) + "/tokens/2021-03-01/restrictedDataToken"
        response = self._send(
            tenant_id,
            "createRestrictedDataToken",
            lambda: self._http.post(url, json=resources, headers={"x-amz-access-token": access.value}),
        )
        body = self._checked(tenant_id, response, "createRestrictedDataToken")
        value = body.get("restrictedDataToken")
        if not isinstance(value, str) or not value:
            raise UpstreamError("createRestrictedDataToken answered without a token")
        token = Token(value, now + _seconds(body.get("expiresIn"), "expiresIn"))
        with self._lock:
            self._tokens[(tenant_id, path)] = token
        if on_event:
            on_event("connector:rdt:create", tenant_id, {"data_elements": len(RESTRICTED_ELEMENTS)})
        return token

    # --- operations ---------------------------------------------------------------------

    def get(
        self, tenant_id: str, region: str, operation: str, path: str, params: Mapping[str, str], token: Token
    ) -> Answer:
        url = self.app.endpoint_for(region) + path
        response = self._send(
            tenant_id,
            operation,
            lambda: self._http.get(url, params=dict(params), headers={"x-amz-access-token": token.value}),
        )
        return Answer(
            self._checked(tenant_id, response, operation), header_rate(response.headers.get("x-amzn-ratelimit-limit"))
        )

    def _checked(self, tenant_id: str, response: httpx.Response, operation: str) -> dict[str, Any]:
        if response.status_code == 403:
            self.forget(tenant_id)
            raise Forbidden(operation)
        body = _json(response, operation)
        if response.status_code == 200:
            return body
        code = _error_code(body)
        if response.status_code == 400:
            raise BadRequest(operation, code)
        if response.status_code == 429:
            raise UpstreamError(f"{operation}: Amazon kept answering 429 (QuotaExceeded) after every retry")
        raise UpstreamError(f"{operation}: SP-API answered {response.status_code} ({code})")


class Forbidden(UpstreamError):
    """SP-API answered 403: an expired token (fresh ones may pass) or a revoked authorisation."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"{operation}: SP-API answered 403 Unauthorized")


class SpApiRefused(UpstreamError):
    """SP-API kept answering 403 to fresh tokens LWA issued: the application's roles or region,
    not a seller's revoked consent."""


class BadRequest(UpstreamError):
    """SP-API answered 400 (InvalidInput): an expired NextToken, or a request it will never take."""

    def __init__(self, operation: str, code: str) -> None:
        super().__init__(f"{operation}: SP-API refused the request (400 {code})")
        self.code = code


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        raise UpstreamError(f"{what}: the answer ({response.status_code}) is not JSON") from None
    if not isinstance(body, dict):
        raise UpstreamError(f"{what}: the answer ({response.status_code}) is not a JSON object")
    return body


def _error_code(body: dict[str, Any]) -> str:
    found = body.get("errors")
    if isinstance(found, list) and found and isinstance(found[0], dict) and isinstance(found[0].get("code"), str):
        code: str = found[0]["code"]
        return code if code.isascii() and code.isalnum() and len(code) <= 40 else "unknown code"
    return "no error code"


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 86_400:
        return float(value)
    raise UpstreamError(f"the token answer's {name} is not a number of seconds")
