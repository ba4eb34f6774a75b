"""Reports rendered from the manifest: terminal summary, Markdown, HTML, JUnit XML."""

from __future__ import annotations

from pathlib import Path

from edgeq.jsontypes import JSONObject
from edgeq.report.html import render_html
from edgeq.report.markdown import render_markdown


def write_reports(manifest: JSONObject, outdir: Path) -> None:
    (outdir / "report.md").write_text(render_markdown(manifest))
    (outdir / "report.html").write_text(render_html(manifest))
