"""`sagevault irp|incidents` from the shell (in process): the plan's versions and review dates
(a master key rotation marks it for review), an incident from `open` to `report`, and bad input
refused with one line that says what to do."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import tomli_w

from commands import run
from sagevault.incidents import default_plan_text, parse_plan

SUMMARY_KEYS = {"id", "type", "severity", "state", "detected_at", "amazon_involved", "notify_amazon_due", "notified_at"}


def test_the_plan_is_edited_approved_diffed_and_marked_for_review_by_a_master_key_rotation(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    shown = run(tmp_path, "irp", "show")
    assert "NOT APPROVED" in shown.stdout and "canary-access [critical, Amazon involved: possible]" in shown.stdout
    assert "within 24 h, impoc:" in shown.stdout
    impoc = run(tmp_path, "irp", "set-impoc", "--name", "Dana Smith", "--email", "ir-lead@seller-tools.example")
    assert impoc.returncode == 0, impoc.stderr
    assert run(tmp_path, "irp", "approve").returncode == 0
    data = parse_plan(default_plan_text(), "t").data
    data["types"][0]["procedure"].append("Tell the data protection officer")
    new = tmp_path / "plan.toml"
    new.write_text(tomli_w.dumps(data))
    edited = run(tmp_path, "irp", "edit", "--file", str(new), "--note", "DPO step")
    assert edited.returncode == 0 and "saved plan version 2" in edited.stdout
    diff = run(tmp_path, "irp", "diff")
    assert '+    "Tell the data protection officer",' in diff.stdout
    approved = run(tmp_path, "irp", "approve")
    assert approved.returncode == 0 and "plan version 2 approved" in approved.stdout
    plan = json.loads(run(tmp_path, "irp", "show", "--json").stdout)
    assert plan["version"] == 2 and plan["review_due"] is False and plan["impoc"]["name"] == "Dana Smith"
    assert plan["next_review_due"] and plan["plan"]["types"][0]["procedure"][-1] == "Tell the data protection officer"
    versions = json.loads(run(tmp_path, "irp", "show", "--versions", "--json").stdout)
    assert [v["version"] for v in versions] == [1, 2]

    rotated = run(tmp_path, "keys", "rotate-master")
    assert rotated.returncode == 0, rotated.stderr
    after = json.loads(run(tmp_path, "irp", "show", "--json").stdout)
    assert after["review_due"] is True and any("master key changed" in r for r in after["review_reasons"])
    assert "REVIEW DUE: the master key changed" in run(tmp_path, "irp", "show").stdout
    assert run(tmp_path, "jobs", "run", "incident-clocks").returncode == 0
    assert run(tmp_path, "monitor", "run", "--once").returncode == 0
    alarms = json.loads(run(tmp_path, "alarms", "list", "--json").stdout)
    assert any(a["rule"] == "irp-review-due" and a["state"] == "open" for a in alarms)

    bad = tmp_path / "bad.toml"
    bad.write_text('organisation = "x"\n')
    refused = run(tmp_path, "irp", "edit", "--file", str(bad))
    assert refused.returncode == 2 and "[[roles]]" in refused.stderr


def test_an_incident_from_open_to_report_on_the_command_line(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "tenants", "add", "A1TESTSELLER01", "--marketplace", "ATVPDKIKX0DER").returncode == 0
    naive = run(tmp_path, "incidents", "open", "--type", "lost-device", "--detected-at", "2026-12-06T08:00:00")
    assert naive.returncode == 2 and "no UTC offset" in naive.stderr
    opened = run(
        tmp_path, "incidents", "open", "--type", "lost-device", "--tenant", "A1TESTSELLER01", "--category", "user.name"
    )
    assert opened.returncode == 0 and "incident 1 opened" in opened.stdout and "h " in opened.stdout
    [listed] = json.loads(run(tmp_path, "incidents", "list", "--json").stdout)
    assert listed.keys() >= SUMMARY_KEYS and listed["amazon_involved"] is True and listed["state"] == "new"

    refused = run(tmp_path, "incidents", "update", "1", "--state", "recovery")
    assert refused.returncode == 2 and "it can move to triage" in refused.stderr
    worked = run(tmp_path, "incidents", "update", "1", "--state", "triage", "--role", "investigator=Lee Park")
    assert worked.returncode == 0, worked.stderr
    assert run(tmp_path, "incidents", "task", "1", "1", "done").returncode == 0
    item = tmp_path / "laptop-image.txt"
    item.write_bytes(b"disk image summary")
    digest = hashlib.sha256(b"disk image summary").hexdigest()
    wrong = run(
        tmp_path,
        "incidents",
        "evidence",
        "add",
        "1",
        str(item),
        "--sha256",
        "0" * 64,
        "--label",
        "image",
        "--location",
        "locker",
        "--collected-by",
        "Lee Park",
    )
    assert wrong.returncode == 2 and "not the item that was collected" in wrong.stderr
    added = run(
        tmp_path,
        "incidents",
        "evidence",
        "add",
        "1",
        str(item),
        "--label",
        "image",
        "--location",
        "locker",
        "--collected-by",
        "Lee Park",
    )
    assert added.returncode == 0 and digest in added.stdout
    handed = run(
        tmp_path,
        "incidents",
        "evidence",
        "handover",
        "1",
        "1",
        "--from",
        "Lee Park",
        "--to",
        "Counsel Ito",
        "--purpose",
        "legal hold",
    )
    assert handed.returncode == 0 and "held by Counsel Ito" in handed.stdout
    assert run(tmp_path, "incidents", "evidence", "verify", "1", "1", str(item)).returncode == 0
    item.write_bytes(b"tampered")
    assert run(tmp_path, "incidents", "evidence", "verify", "1", "1", str(item)).returncode == 1

    no_impoc = run(tmp_path, "incidents", "notify-draft", "1")
    assert no_impoc.returncode == 2 and "irp set-impoc" in no_impoc.stderr
    impoc = run(tmp_path, "irp", "set-impoc", "--name", "Dana Smith", "--email", "ir-lead@seller-tools.example")
    assert impoc.returncode == 0
    draft = run(tmp_path, "incidents", "notify-draft", "1", "--out", str(tmp_path / "draft.txt"))
    assert draft.returncode == 0 and (tmp_path / "draft.txt").read_text().startswith("To: security@amazon.com")
    late = run(tmp_path, "incidents", "notified", "1", "--at", "2026-12-06 10:00", "--reference", "r")
    assert late.returncode == 2 and "UTC offset" in late.stderr
    [now] = [json.loads(run(tmp_path, "incidents", "show", "1", "--json").stdout)["detected_at"]]
    sent = run(tmp_path, "incidents", "notified", "1", "--at", now, "--reference", "AMZ-77")
    assert sent.returncode == 0 and "notified in time" in sent.stdout

    for state in ("containment", "eradication", "recovery", "post-incident"):
        assert run(tmp_path, "incidents", "update", "1", "--state", state).returncode == 0
    missing = run(tmp_path, "incidents", "close", "1", "--description", "Laptop lost on a train.")
    assert (
        missing.returncode == 2
        and "cannot close without root cause, remediation, corrective controls" in missing.stderr
    )
    closed = run(
        tmp_path,
        "incidents",
        "close",
        "1",
        "--description",
        "Laptop lost on a train.",
        "--root-cause",
        "Laptop left unattended.",
        "--remediation",
        "Remote wipe confirmed; sessions ended.",
        "--corrective-controls",
        "Full-disk encryption enforced by MDM.",
        "--out",
        str(tmp_path),
    )
    assert closed.returncode == 0, closed.stderr
    report = json.loads((tmp_path / "incident-1-report.json").read_text())
    assert report["incident"]["evidence"][0]["custody"][0]["to"] == "Counsel Ito"
    md = (tmp_path / "incident-1-report.md").read_text()
    assert "Full-disk encryption enforced by MDM." in md
    printed = run(tmp_path, "incidents", "report", "1", "--format", "json").stdout
    assert json.loads(printed) == report
    shown = run(tmp_path, "incidents", "show", "1").stdout
    assert "state closed" in shown and "notified in time" in shown


def test_close_with_a_report_file_in_the_way_changes_nothing(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "incidents", "open", "--type", "malware", "--amazon", "no").returncode == 0
    for state in ("triage", "containment", "eradication", "recovery", "post-incident"):
        assert run(tmp_path, "incidents", "update", "1", "--state", state).returncode == 0
    (tmp_path / "incident-1-report.md").write_text("someone else's file")
    docs = ["--description", "d", "--root-cause", "r", "--remediation", "m", "--corrective-controls", "c"]
    refused = run(tmp_path, "incidents", "close", "1", *docs, "--out", str(tmp_path))
    assert refused.returncode == 2 and "exists" in refused.stderr
    assert json.loads(run(tmp_path, "incidents", "show", "1", "--json").stdout)["state"] == "post-incident"
    events = run(tmp_path, "audit", "search", "--event", "incident:case:close")
    assert events.returncode == 0 and "incident:case:close" not in events.stdout
    opened = run(tmp_path, "audit", "search", "--event", "incident:case:open")
    assert "incident:case:open" in opened.stdout  # the search does find incident events
    assert not (tmp_path / "incident-1-report.json").exists()
