"""The report's section registry: a feature contributes an HTML section by registering a function of the manifest,
so it depends on this small module and never on the page renderer (:mod:`edgeq.report.html`), which reads the
registry when it lays out the page."""

from __future__ import annotations

import html
from collections.abc import Callable

from edgeq.jsontypes import JSONObject

Section = Callable[[JSONObject], str | None]  # manifest -> HTML fragment (or None to skip)
_SECTIONS: list[tuple[str, Section]] = []


def register_section(name: str) -> Callable[[Section], Section]:
    def deco(fn: Section) -> Section:
        if any(n == name for n, _ in _SECTIONS):
            raise ValueError(f"report section {name!r} registered twice")
        _SECTIONS.append((name, fn))
        return fn

    return deco


def registered_sections() -> tuple[tuple[str, Section], ...]:
    """The sections in registration order (the order they appear on the page)."""
    return tuple(_SECTIONS)


def esc(x: object) -> str:
    """Text as HTML (every section escapes what it takes from the manifest)."""
    return html.escape(str(x))
