"""FastAPI's own OpenTelemetry stays off: with a tracer provider in the process (an embedding
application's, an instrumentation agent's), requests still leave no span, so no request path,
query, address or exception reaches an exporter outside the security log's rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_PROBE = """
import asyncio, json, sys
from pathlib import Path

import httpx
from opentelemetry import trace

spans = []


class Tracer(trace.NoOpTracer):
    def start_span(self, name, *args, **kwargs):
        spans.append([name, sorted(kwargs.get("attributes") or {})])
        return super().start_span(name, *args, **kwargs)


class Provider(trace.TracerProvider):
    def get_tracer(self, *args, **kwargs):
        return Tracer()


trace.set_tracer_provider(Provider())
from sagevault.config import load_settings
from sagevault.crypto import InMemoryKeyProvider
from sagevault.deployment import init_deployment
from sagevault.web import create_app

settings = load_settings(
    data_dir=Path(sys.argv[1]), password_hash_memory_kib=19456, password_hash_time_cost=2, password_hash_parallelism=1
)
d = init_deployment(settings, keys=InMemoryKeyProvider())


async def requests():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(d)), base_url="https://127.0.0.1") as c:
        reveal = await c.post(
            "/api/v1/tenants/A1B2C3D4E5/orders/111-2222222-3333333/reveal?note=x",
            json={"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"},
            headers={"authorization": "Bearer svs_not_a_session"},
        )
        document = await c.get("/api/v1/openapi.json")
        return [reveal.status_code, document.status_code]


statuses = asyncio.run(requests())
d.close()
print(json.dumps({"statuses": statuses, "spans": spans}))
"""


def test_requests_leave_no_span_even_with_a_tracer_provider_in_the_process(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE)
    done = subprocess.run(
        [sys.executable, str(probe), str(tmp_path / "var")], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == '{"statuses": [401, 200], "spans": []}'
