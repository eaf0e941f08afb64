"""API benchmark: reveals over TLS with authentication, authorisation and a durable audit event,
beside a floor endpoint in the same server that returns the same bytes with none of that.

    python bench/api.py [--seconds 10] [--concurrency 16]

The server runs in its own process (`sagevault serve`'s app plus one floor route), on an embedded
deployment (SQLite) in a temporary directory; the client is httpx (HTTP/1.1, keep-alive) on
asyncio in this process. Prints one JSON line: requests/s and p50/p99 latency for each, and the
ratio reveal/floor. Both share the machine's cores with the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyotp
from fastapi import Response

from sagevault.audit import Channel
from sagevault.config import load_settings
from sagevault.crypto import client_context
from sagevault.deployment import init_deployment, open_deployment
from sagevault.testing import generate_orders, get_orders_response
from sagevault.vault import Operation, Principal

TENANT = "A1BENCHSELLER"
PASSWORD = "Quartz-Fjord-7-Lantern"
OPERATOR = Principal(id="operator:bench", kind="operator")
FIELDS = {"fields": ["ShippingAddress.Name", "ShippingAddress.AddressLine1"], "purpose": "fulfilment"}


def prepare(data_dir: Path, orders: int) -> tuple[str, list[str]]:
    """A deployment with one tenant, `orders` orders, an admin and a packer; the packer's session."""
    settings = load_settings(data_dir=data_dir)
    d = init_deployment(settings)
    rows = list(generate_orders(orders, seed=3))
    with d.engine.begin() as conn:
        d.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
        d.vault.ingest(conn, TENANT, [get_orders_response(rows)], Operation.GET_ORDERS, principal=OPERATOR)
        people = {}
        for login in ("bench.admin", "bench.packer"):
            made = (d.access.bootstrap_admin(conn, login, f"{login}@seller-tools.example", actor=OPERATOR)
                    if login == "bench.admin" else
                    d.access.add_person(conn, login, f"{login}@seller-tools.example", manager=None, actor=OPERATOR))
            totp = pyotp.TOTP(d.access.begin_enrolment(conn, login, made.secret).secret)
            d.access.finish_enrolment(conn, login, made.secret, PASSWORD, totp.now())
            people[login] = (made.principal_id, totp)
        grant = d.access.grant(conn, "bench.packer", "fulfilment", [TENANT], actor=OPERATOR)
        admin = Principal(people["bench.admin"][0], "person", Channel.API, "127.0.0.1")
        d.access.approve(conn, grant.id, actor=admin)
        attempt = d.access.login(conn, "bench.packer", PASSWORD, people["bench.packer"][1].at(time.time() + 30),
                                 source="127.0.0.1")  # fmt: skip
    token = attempt.session().token
    d.close()
    return token, [o["AmazonOrderId"] for o in rows]


def serve(data_dir: Path, port: int) -> None:
    """Server process: the real app, plus /bench/floor returning a reveal's bytes as they are."""
    from sagevault.web import create_app, make_server

    d = open_deployment(load_settings(data_dir=data_dir))
    app = create_app(d)
    cached: dict[str, bytes] = {}

    @app.post("/bench/floor")
    def floor() -> Response:  # the bytes of a real reveal, written by the client before the runs
        body = cached.get("body") or cached.setdefault("body", (data_dir / "floor.json").read_bytes())
        return Response(body, media_type="application/json")

    make_server(d, "127.0.0.1", port, app=app).run()


async def load(url: str, token: str, orders: list[str], seconds: float, concurrency: int, ca: Path,
               floor: bool) -> dict[str, Any]:  # fmt: skip
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(verify=client_context(ca), limits=limits, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as client:  # fmt: skip

        async def worker(n: int) -> None:
            nonlocal errors
            i = n
            while time.perf_counter() < stop:
                order = orders[i % len(orders)]
                target = f"{url}/bench/floor" if floor else f"{url}/api/v1/tenants/{TENANT}/orders/{order}/reveal"
                start = time.perf_counter()
                r = await client.post(target, json=FIELDS)
                latencies.append(time.perf_counter() - start)
                errors += r.status_code != 200
                i += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {"per_s": round(len(latencies) / elapsed), "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1), "errors": errors}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    with tempfile.TemporaryDirectory(prefix="sv-api-bench-") as tmp:
        data_dir = Path(tmp) / "var"
        token, orders = prepare(data_dir, args.orders)
        port = 18000 + os.getpid() % 1000
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(data_dir), str(port)], cwd=tmp)
        try:
            url, ca = f"https://127.0.0.1:{port}", data_dir / "tls" / "ca.pem"
            for _ in range(100):
                try:
                    httpx.get(f"{url}/api/v1/openapi.json", verify=client_context(ca), timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            sample = httpx.post(f"{url}/api/v1/tenants/{TENANT}/orders/{orders[0]}/reveal", json=FIELDS,
                                headers={"Authorization": f"Bearer {token}"}, verify=client_context(ca))  # fmt: skip
            assert sample.status_code == 200, sample.text
            (data_dir / "floor.json").write_bytes(sample.content)  # read by the floor route on first use
            time.sleep(0.1)
            reveal = asyncio.run(load(url, token, orders, args.seconds, args.concurrency, ca, floor=False))
            floor = asyncio.run(load(url, token, orders, args.seconds, args.concurrency, ca, floor=True))
        finally:
            server.terminate()
            server.wait(timeout=20)
    print(json.dumps({"concurrency": args.concurrency, "reveal": reveal, "floor": floor,
                      "reveal_floor_ratio": round(reveal["per_s"] / floor["per_s"], 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
