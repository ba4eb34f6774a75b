"""Reference pages generated from the code, so they cannot drift from it.

Used as a mkdocs hook (``hooks: [scripts/gen_docs.py]`` in mkdocs.yml): every ``<!-- gen:NAME -->`` marker in a
page is replaced at build time by the section NAME renders from the live code:

- ``cli``: every command, subcommand and flag, from edgeq's own argparse parsers (edgeq.cli.build_parser);
- ``exit-codes``: the exit codes of edgeq.cli and the typed errors of edgeq.errors with the code each maps to;
- ``targets`` / ``stages``: the packaged target profiles (edgeq/profiles/*.toml, parsed by edgeq.targets) and the
  registered pipeline stages (kind, phase, formats, description);
- ``manifest``: the manifest schema documented in edgeq.manifest (keys, roles, required top-level keys).

``python scripts/gen_docs.py NAME`` prints one section (to look at it without building the site).
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the checkout's edgeq, when mkdocs runs from a checkout
    sys.path.insert(0, str(ROOT))

import edgeq.cli as cli  # noqa: E402 - after the sys.path entry above
import edgeq.errors as errors  # noqa: E402
import edgeq.manifest as manifest  # noqa: E402
from edgeq.pipeline.stage import get_stage, stage_names  # noqa: E402
from edgeq.targets import list_targets, load_target  # noqa: E402
from edgeq.targetspec import ExecutorchSpec, OnnxScheme  # noqa: E402

MARKER = re.compile(r"<!-- gen:([a-z-]+) -->")
WIDTH = 100  # usage lines are wrapped at a fixed width, so the page does not depend on the terminal


def _cell(text: object) -> str:
    """One markdown table cell: no newlines, no bare pipes."""
    return " ".join(str(text).split()).replace("``", "`").replace("|", "\\|")


def _code(text: object) -> str:
    return f"`{text}`" if text not in ("", None) else ""


# --- CLI ---------------------------------------------------------------------------------------------------------

def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _sub_help(p: argparse.ArgumentParser) -> dict[str, str]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return {c.dest: c.help or "" for c in a._choices_actions}
    return {}


def _usage(p: argparse.ArgumentParser) -> str:
    f = argparse.HelpFormatter(p.prog, width=WIDTH)
    f.add_usage(p.usage, p._actions, p._mutually_exclusive_groups, prefix="")
    return f.format_help().strip()


def _value(a: argparse.Action) -> str:
    if a.nargs == 0:
        return ""
    if a.choices is not None and not isinstance(a, argparse._SubParsersAction):
        return " \\| ".join(f"`{c}`" for c in a.choices)
    meta = a.metavar if isinstance(a.metavar, str) else (a.dest.upper() if a.option_strings else a.dest)
    return f"`{meta}`"


def _default(a: argparse.Action) -> str:
    if a.nargs == 0 or a.default in (None, argparse.SUPPRESS, False, [], ()) or a.required:
        return ""
    return _code(a.default if not isinstance(a.default, Path) else str(a.default))


def _help(p: argparse.ArgumentParser, a: argparse.Action) -> str:
    if not a.help:
        return ""
    # brackets escaped: mkdocs-autorefs would read "[:port][/dir]" as a cross-reference
    return _cell(argparse.HelpFormatter(p.prog)._expand_help(a)).replace("[", "\\[").replace("]", "\\]")


def _arg_table(p: argparse.ArgumentParser, skip_groups: Iterable[str]) -> list[str]:
    out: list[str] = []
    for g in p._action_groups:
        acts = [a for a in g._group_actions if a.help != argparse.SUPPRESS and a.dest != "help"
                and not isinstance(a, argparse._SubParsersAction)]
        if not acts or (g.title or "") in skip_groups:
            continue
        out += [f"*{g.title}*", "", "| argument | value | default | what it does |", "|---|---|---|---|"]
        for a in acts:
            name = ", ".join(f"`{s}`" for s in a.option_strings) or f"`{a.dest}`"
            out.append(f"| {name} | {_value(a)} | {_default(a)} | {_help(p, a)} |")
        out.append("")
    return out


def _command(name: str, p: argparse.ArgumentParser, summary: str, level: int, skip: tuple[str, ...]) -> list[str]:
    out = [f"{'#' * level} `{name}`", ""]
    if summary:
        out += [_cell(summary[:1].upper() + summary[1:]) + ".", ""]
    if p.description:
        out += [p.description.strip(), ""]
    out += ["```text", f"{name} {_usage(p).removeprefix(p.prog).strip()}".strip(), "```", ""]
    out += _arg_table(p, skip)
    helps = _sub_help(p)
    for sub_name, sub in _subparsers(p).items():
        out += _command(f"{name} {sub_name}", sub, helps.get(sub_name, ""), level + 1, skip)
    return out


def render_cli(parser: argparse.ArgumentParser | None = None) -> str:
    p = parser or cli.build_parser()  # looked up on the module at call time: a test can patch it
    global_group = next(g.title for g in p._action_groups if g.title and g.title.startswith("global options"))
    out = ["```text", f"usage: {_usage(p)}", "```", "", (p.description or "").strip(), ""]
    out += ["## Global options", "", f"Accepted {global_group.removeprefix('global options').strip(' ()')}.", ""]
    out += _arg_table(p, skip_groups=("positional arguments",))
    if p.epilog:
        out += ["```text", p.epilog.rstrip(), "```", ""]
    helps = _sub_help(p)
    for name, sub in _subparsers(p).items():
        out += _command(f"edgeq {name}", sub, helps.get(name, ""), 2, (global_group,))
    return "\n".join(out)


# --- exit codes --------------------------------------------------------------------------------------------------

def render_exit_codes() -> str:
    doc = inspect.getdoc(cli) or ""
    codes = doc[doc.index("Exit codes:"):].split("\n\n")[0] if "Exit codes:" in doc else ""
    out = ["From `edgeq.cli`:", "", "> " + " ".join(codes.split()), "",
           "Every typed error (`edgeq.errors`) carries a one-line `cause` and a `hint`; the CLI prints both on "
           "stderr (`edgeq: error: ...`, `edgeq: hint: ...`), and with `--json` also "
           '`{"error": {"type", "cause", "hint", "exit_code"}}` on stdout. The exit code is the class\'s:', "",
           "| error | subclass of | exit code | raised when |", "|---|---|---|---|"]
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.EdgeqError) and c.__module__ == errors.__name__]
    for c in sorted(classes, key=lambda c: (c.exit_code, len(c.__mro__), c.__name__)):
        parent = c.__mro__[1].__name__ if c is not errors.EdgeqError else "Exception"
        out.append(f"| `{c.__name__}` | `{parent}` | {c.exit_code} | {_cell(inspect.getdoc(c) or '')} |")
    return "\n".join(out)


# --- targets and stages --------------------------------------------------------------------------------------------

def _scheme(t: Any) -> str:
    o = t.spec(OnnxScheme)
    s = (f"A:{o.activation_type} W:{o.weight_type}, {'per-channel' if o.per_channel else 'per-tensor'}"
         f"{', reduce_range' if o.reduce_range else ''}, {o.calibration}")
    if o.if_host_has:
        s += f"; with host flag {' / '.join(o.if_host_has)}: reduce_range={o.if_host_reduce_range}"
    return s


def render_targets() -> str:
    out = ["| target | ABI | CPU (ISA) | qemu `-cpu` | cores | RAM / storage budget (MB) | ONNX scheme | EPs checked "
           "| GPU (fp16 variant) | default runner | default budget | passes |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    details: list[str] = []
    for name in list_targets():
        t = load_target(name)
        b, et = t.validation, t.spec(ExecutorchSpec)
        budget = ", ".join(f"{k} {v}" for k, v in vars(b).items() if v is not None)
        out.append(f"| `{t.name}` | {t.abi} | {t.cpu.name} ({t.cpu.isa}) | {_code(t.cpu.qemu_model) or '–'} | "
                   f"{t.cpu.cores} | {t.ram_mb} / {t.storage_mb} | {_cell(_scheme(t))} | "
                   f"{', '.join(t.spec(OnnxScheme).execution_providers)} | {t.gpu_delegate or '–'} | {t.default_runner} | "
                   f"{_cell(budget)} | {', '.join(f'`{p}`' for p in t.passes)} |")
        details += [f"### `{t.name}`", "", _cell(t.description), "",
                    f"- CPU features: {', '.join(f'`{f}`' for f in t.cpu.features) or '–'}",
                    f"- ONNX scheme: {_cell(t.spec(OnnxScheme).reason)}",
                    f"- ExecuTorch: partitioner `{et.partitioner}`, "
                    f"{'per-channel' if et.per_channel else 'per-tensor'} weights"
                    + (f", segment alignment {et.segment_alignment} bytes" if et.segment_alignment else ""),
                    "- Sources: " + ("; ".join(_cell(s) for s in t.sources) or "–"), ""]
    return "\n".join(out + [""] + details)


def render_stages() -> str:
    out = ["| stage | kind | phase | formats | what it does |", "|---|---|---|---|---|"]
    for name in stage_names():
        s = get_stage(name)
        out.append(f"| `{s.name}` | {s.kind} | {s.phase} | {', '.join(s.formats)} | {_cell(s.description)} |")
    return "\n".join(out)


# --- manifest ------------------------------------------------------------------------------------------------------

def render_manifest() -> str:
    m = manifest
    doc = inspect.getdoc(m) or ""
    schema = doc.split("\n", 1)[1].strip() if "\n" in doc else doc
    return "\n".join([
        f"File name `{m.MANIFEST_NAME}`, `schema` = `{m.SCHEMA}`, `schema_version` = {m.SCHEMA_VERSION}. "
        "A manifest with another schema or version is refused (`ManifestError`, exit 2).", "",
        "Required top-level keys (a manifest missing one is refused): "
        + ", ".join(f"`{k}`" for k in m._REQUIRED) + ".", "",
        "Artifact roles: " + ", ".join(f"`{r}`" for r in m.ROLES)
        + " (baseline: the float artifacts; candidate: quantized, validated; auxiliary: derived, not validated).",
        "", "From `edgeq.manifest`:", "", "```text", schema, "```"])


RENDERERS: dict[str, Callable[[], str]] = {
    "cli": render_cli, "exit-codes": render_exit_codes, "targets": render_targets, "stages": render_stages,
    "manifest": render_manifest,
}


def expand(markdown: str, where: str = "") -> str:
    """Replace every ``<!-- gen:NAME -->`` marker; an unknown NAME is an error naming the page."""
    def sub(mo: re.Match[str]) -> str:
        name = mo.group(1)
        if name not in RENDERERS:
            raise ValueError(f"{where}: unknown generated section {name!r} (known: {', '.join(RENDERERS)})")
        return RENDERERS[name]()
    return MARKER.sub(sub, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:  # mkdocs hook
    return expand(markdown, page.file.src_uri)


if __name__ == "__main__":
    print(RENDERERS[sys.argv[1]]())
