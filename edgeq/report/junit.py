"""JUnit XML for CI systems: one test case per (artifact, runner), failed when over budget."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from edgeq.jsontypes import JSONObject, get_strs
from edgeq.manifest import Artifact


def write_junit(path: Path, artifacts: list[Artifact], suite: str, extra_failures: list[str] | None = None,
                properties: JSONObject | None = None, boards: Sequence[JSONObject] | None = None) -> None:
    """``boards`` (a fleet run's manifest entries): one more case per board, an ``error`` when it did not answer."""
    cases = []
    for a in artifacts:
        for v in a.validations:
            cases.append((f"{a.name} on {v.runner}" + (f" ({v.cpu_model})" if v.emulated else ""), v))
    boards = boards or []
    failures = (sum(1 for _, v in cases if not v.budget_check["passed"]) + len(extra_failures or [])
                + sum(b["status"] == "failed" for b in boards))
    errors = sum(b["status"] in ("unreachable", "error") for b in boards)
    ts = ET.Element("testsuite", name=suite, tests=str(len(cases) + len(extra_failures or []) + len(boards)),
                    failures=str(failures), errors=str(errors))
    if properties:
        props = ET.SubElement(ts, "properties")
        for k, val in properties.items():
            ET.SubElement(props, "property", name=str(k), value=str(val))
    for name, v in cases:
        tc = ET.SubElement(ts, "testcase", classname=f"edgeq.{suite}", name=name)
        m = v.metrics
        ET.SubElement(tc, "system-out").text = ", ".join(f"{k}={m[k]}" for k in sorted(m))
        if not v.budget_check["passed"]:
            messages = get_strs(v.budget_check, "failures")
            f = ET.SubElement(tc, "failure", message="; ".join(messages))
            f.text = "\n".join(messages)
    for b in boards:
        tc = ET.SubElement(ts, "testcase", classname=f"edgeq.{suite}.boards", name=f"board {b['name']} ({b['runner']})")
        ET.SubElement(tc, "system-out").text = f"status={b['status']} validations={b['validations']}"
        if b["status"] == "failed":
            ET.SubElement(tc, "failure", message="over budget on this board")
        elif b["status"] != "passed":
            ET.SubElement(tc, "error", message=f"{b['status']}: {b.get('reason', '')}").text = str(b.get("reason", ""))
    for i, msg in enumerate(extra_failures or []):
        tc = ET.SubElement(ts, "testcase", classname=f"edgeq.{suite}", name=f"check {i}")
        ET.SubElement(tc, "failure", message=msg).text = msg
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(ts).write(path, encoding="utf-8", xml_declaration=True)
