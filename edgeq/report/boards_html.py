"""The HTML report's Boards section: one row per board of a fleet run (rows from edgeq.report.boards)."""

from __future__ import annotations

from edgeq.jsontypes import JSONObject
from edgeq.report.boards import BOARD_HEAD, board_rows, summary_line
from edgeq.report.sections import esc, register_section


@register_section("fleet")
def fleet_section(manifest: JSONObject) -> str | None:
    line = summary_line(manifest)
    if line is None:
        return None
    parts = [f"<h2>Boards</h2><p>{esc(line)}</p><table><tr>" + "".join(f"<th>{h}</th>" for h in BOARD_HEAD) + "</tr>"]
    for row in board_rows(manifest):
        parts.append(f"<tr class='{'' if row[3] == 'pass' else 'bad'}'>" + "".join(f"<td>{esc(c)}</td>" for c in row)
                     + "</tr>")
    parts.append("</table><p class='muted'>Unreachable: no connection, the connection dropped, or the board ran out "
                 "of its time limit; error: the board answered but could not run the artifacts. Neither counts as a "
                 "pass, and their partial results are not recorded.</p>")
    return "".join(parts)
