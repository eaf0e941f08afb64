"""Schemathesis against the OpenAPI document the real TLS server serves: every operation, with data
that fits the document and data that does not, answers without a 5xx and as its document says
(status, content type, body schema: problem details for every refusal).

Run as a client three ways: nobody, a person's session holding every role on every tenant, and a
service's API key carrying every scope, so that requests get past authentication into the
handlers. Path parameters are generated freely and also pinned to the served tenant and one of
its orders, so that handlers get past "no such tenant" too. Generation is derandomised: CI runs
the same cases each time (set SAGEVAULT_CONFORMANCE_EXAMPLES higher to search wider locally).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from commands import run
from conftest import OPERATOR, TENANT
from sagevault.access import ALL_TENANTS, ROLES
from sagevault.config import Settings
from sagevault.identity import Scope
from webapi import Api

DOCUMENT = Path(__file__).parents[2] / "docs" / "openapi.json"
EXAMPLES = int(os.environ.get("SAGEVAULT_CONFORMANCE_EXAMPLES", "12"))
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture
def api(served_api: Api) -> Api:
    """The API over a real socket and TLS: what this module proves is about the wire."""
    return served_api


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Rates high enough that the run measures the handlers, not the rate limiter (429 is
    declared on every route, so a limit reached would pass unseen)."""
    return settings.model_copy(update={"api_rate_per_principal": "100000 per minute", "api_route_rates": {}})


@pytest.fixture
def session(api: Api) -> Iterator[requests.Session]:
    """One TLS connection pool for the run (schemathesis sends with requests)."""
    with requests.Session() as s:
        s.verify = str(api.d.settings.tls_dir / "ca.pem")
        yield s


def everything_person(api: Api) -> dict[str, str]:
    """A session of a person holding every role on every tenant."""
    totp = api.person("conf.everyone", "viewer", [ALL_TENANTS])
    with api.d.engine.begin() as conn:
        for role in ROLES:
            if role != "viewer":
                grant = api.d.access.grants.grant(conn, "conf.everyone", role, [ALL_TENANTS], actor=OPERATOR)
                if grant.status == "pending":
                    api.d.access.grants.approve(conn, grant.id, actor=api.admin)
    return api.login("conf.everyone", totp)


def everything_service(api: Api) -> dict[str, str]:
    """An API key carrying every scope, of a service holding every role on every tenant."""
    with api.d.engine.begin() as conn:
        api.d.access.accounts.add_service(
            conn, "conf-sync", owner="alice.ng", purpose="conformance run", actor=api.admin
        )
        for role in ROLES:
            api.d.access.grants.grant(conn, "conf-sync", role, [ALL_TENANTS], actor=OPERATOR)
        key = api.d.access.api_keys.issue(conn, "conf-sync", scopes=[s.value for s in Scope], actor=OPERATOR)
        for grant in api.d.access.grants.list(conn, actor=api.admin, login="conf-sync", pending=True):
            api.d.access.grants.approve(conn, grant.id, actor=api.admin)
    return {"Authorization": f"Bearer {key.token}"}


def run_operation(
    session: requests.Session,
    operation: Any,
    auth: dict[str, str],
    pinned: dict[str, str] | None,
    examples: int,
    statuses: Counter[int],
) -> list[str]:
    """Hypothesis over one operation, each mode; the failures found, as text (counting the answers'
    statuses into `statuses`)."""
    failures: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=pinned)

        @given(case=strategy)
        @hypothesis_settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: a bounded run
            suppress_health_check=list(HealthCheck),
        )
        def probe(case: Case) -> None:
            headers = dict(auth)
            if case.method.upper() == "DELETE" and case.path.endswith("/sessions") and auth:
                headers = {"Authorization": "Bearer svs_not-this-runs-session"}  # keep the run's session alive
            response = case.call(session=session, headers=headers, verify=session.verify, timeout=30)
            statuses[response.status_code] += 1
            case.validate_response(
                response,
                checks=CHECKS,
                headers=headers,
                transport_kwargs={"session": session, "verify": session.verify},
            )

        try:
            probe()
        except Unsatisfiable:
            continue  # nothing in this operation can be made invalid (no input, or only free strings)
        except (Exception, BaseExceptionGroup) as exc:
            pin = "pinned" if pinned else "generated"
            failures.append(f"{operation.label} [{mode.value}, {pin} path]: {type(exc).__name__}: {str(exc)[:1500]}")
    return failures


# The person searches widest; nobody and the service meet mostly the same handlers (or a 401).
@pytest.mark.parametrize(
    ("who", "examples"), [("nobody", max(EXAMPLES // 3, 1)), ("person", EXAMPLES), ("service", max(EXAMPLES // 3, 1))]
)
def test_every_operation_answers_as_its_openapi_document_says(
    api: Api, session: requests.Session, who: str, examples: int
) -> None:
    auth = {"nobody": lambda _: {}, "person": everything_person, "service": everything_service}[who](api)
    ca = str(api.d.settings.tls_dir / "ca.pem")
    schema = schemathesis.openapi.from_url(f"{api.base}/openapi.json", verify=ca, timeout=30)
    real = {"tenant_id": TENANT, "order_id": api.order_id}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        names = {p.name for p in operation.path_parameters}
        failures += run_operation(session, operation, auth, None, examples, statuses)
        if names & real.keys():
            pinned = {k: v for k, v in real.items() if k in names}
            failures += run_operation(session, operation, auth, pinned, examples, statuses)
    assert not failures, "\n\n".join(failures)
    assert operations >= 7  # the document was read, and holds at least the first slice's routes
    # The run reached what it was meant to: handlers that answered, or for nobody the refusal.
    assert statuses[401] if who == "nobody" else sum(n for s, n in statuses.items() if 200 <= s < 300), statuses


def test_docs_openapi_json_is_the_document_the_cli_writes_and_the_server_serves(api: Api, tmp_path: Path) -> None:
    made = tmp_path / "openapi.json"
    cli = run(tmp_path, "openapi", "--out", str(made))
    assert cli.returncode == 0, cli.stderr
    assert made.read_text() == DOCUMENT.read_text(), (
        "docs/openapi.json is not the API's document any more: run `sagevault openapi --out docs/openapi.json`"
    )
    served = api.client.get(f"{api.base}/openapi.json")
    assert served.status_code == 200 and served.json() == json.loads(DOCUMENT.read_text())
