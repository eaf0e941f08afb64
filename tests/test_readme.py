"""The README's library example runs as written (against a fresh deployment in a temporary
directory), so it cannot drift from the API it shows."""

from __future__ import annotations

import json
import re
import time
from importlib import resources
from pathlib import Path

import pytest

from factories import PASSWORD, People
from sagevault.config import load_settings
from sagevault.deployment import init_deployment
from sagevault.testing import ManualClock

README = Path(__file__).parents[1] / "README.md"


def test_the_library_example_of_the_readme_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = README.read_text().split("## Library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the README's library section has no python block"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAGEVAULT_DATA_DIR", raising=False)
    monkeypatch.delenv("SAGEVAULT_CONFIG", raising=False)
    clock = ManualClock()
    made = init_deployment(load_settings())  # what the example's comment says to run the first time
    carol = People(made.access, made.engine, clock).person("carol.diaz", "viewer", tenants=["*"])
    made.close()
    response = json.loads((resources.files("sagevault") / "samples" / "02-getOrderAddress.json").read_text())
    scope = {"response": response, "password": PASSWORD, "totp_code": carol.totp.at(time.time() + 30)}
    exec(compile(code.group(1), str(README), "exec"), scope)  # our own README, on purpose
    assert [f.path for f in scope["fields"]] == ["ShippingAddress.Name", "ShippingAddress.PostalCode"]
    assert [h.order_id for h in scope["hits"]] == ["902-1845936-5435065"]
    assert scope["carol"].id == carol.id
