"""An alarm's page: what fired (rule, clause, severity, counts, evidence of ids and counts), and the
three decisions a person with alarms:manage takes on it, each the API's call with a note."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ._pages import AlarmId, page, run, run_form
from ._render import PREFIX, error_page, render
from ._session import ConsoleWork

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# The console's verbs and the states they move an alarm to (POST /api/v1/alarms/{id}/ack|resolve|false-positive).
CHANGES = {"acknowledge": "acknowledged", "resolve": "resolved", "false-positive": "false_positive"}
NOTE_MAX = 500


@router.get("/alarms/{alarm_id}")
async def alarm(request: Request, alarm_id: AlarmId) -> Response:
    def action(work: ConsoleWork) -> Response:
        found = work.d.monitor.get(work.conn, alarm_id, principal=work.who)  # alarms:read, as the API
        title = f"Alarm #{found.id}"
        return render("alarm.html", **page(work, title=title, alarm=found, changes=list(CHANGES), note_max=NOTE_MAX))

    return await run(request, action, read_only=True)


@router.post("/alarms/{alarm_id}/change")
async def change(request: Request, alarm_id: AlarmId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        verb, note = form.get("action", ""), form.get("note", "").strip()
        if verb not in CHANGES:
            return error_page(400, "Choose acknowledge, resolve or false positive.", signed_in=True)
        if len(note) > NOTE_MAX:
            return error_page(400, f"The note is too long: keep it under {NOTE_MAX} characters.", signed_in=True)
        work.d.monitor.change(work.conn, alarm_id, CHANGES[verb], principal=work.who, note=note)
        return RedirectResponse(f"{PREFIX}/alarms/{alarm_id}", status_code=303)

    return await run_form(request, action)
