"""The boards of a fleet run (edgeq.validate.fleet_run), one row each, in the terminal summary and report.md."""

from __future__ import annotations

from edgeq.jsontypes import JSONObject, get_object_or_none, get_objects

BOARD_HEAD = ("board", "runner", "profile", "status", "artifacts", "seconds", "reason")


def board_rows(manifest: JSONObject) -> list[tuple[str, ...]]:
    fleet = get_object_or_none(manifest, "fleet") or {}
    return [(str(b["name"]), str(b["runner"]), str(b.get("target") or "–"),
             str(b["status"]).upper() if b["status"] != "passed" else "pass",
             str(b["validations"]), f"{b['seconds']:.1f}", str(b.get("reason") or ""))
            for b in get_objects(fleet, "boards")]


def summary_line(manifest: JSONObject) -> str | None:
    """``boards: 4 passed, 0 failed, 1 unreachable, 0 error · 4 of 5 answered (--min-boards 5: NOT met)``"""
    f = get_object_or_none(get_object_or_none(manifest, "verdict") or {}, "fleet")
    if not f:
        return None
    return (f"boards: {f['passed']} passed, {f['failed']} failed, {f['unreachable']} unreachable, {f['error']} error"
            f" · {f['answered']} of {f['boards']} answered (--min-boards {f['min_boards']}: "
            f"{'met' if f['quorum_met'] else 'NOT met'})")


def terminal_lines(manifest: JSONObject) -> list[str]:
    line = summary_line(manifest)
    if line is None:
        return []
    out = [line]
    for name, runner, profile, status, n, secs, reason in board_rows(manifest):
        out.append(f"  {name:<16} {status:<11} {n:>2} artifact(s) {secs:>7} s  {runner} [{profile}]"
                   + (f"\n    {reason[:180]}" if reason else ""))
    return out


def markdown_lines(manifest: JSONObject) -> list[str]:
    line = summary_line(manifest)
    if line is None:
        return []
    out = ["## Boards", "", line, "", "| " + " | ".join(BOARD_HEAD) + " |", "|" + "---|" * len(BOARD_HEAD)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in board_rows(manifest)]
    return [*out, ""]
