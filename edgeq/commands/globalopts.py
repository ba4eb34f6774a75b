"""Global flags (``-v``, ``-q``, ``--json``, ``--config``) accepted before or after the subcommand, and the
``--config edgeq.toml`` file whose keys are spelled like the long flags (``calib = "calib.npz"``).

Precedence: command line > ``[COMMAND]`` table of the file > top-level keys of the file > built-in defaults.
A top-level key that no subcommand knows is an error naming the key; one that only other subcommands know
(``calib`` while running ``check``) is skipped, so one file can serve ``export`` and ``check`` alike.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject

GLOBAL_DESTS = ("verbose", "quiet", "json", "config")


class _FlagSpec(TypedDict, total=False):
    """The ``add_argument`` keywords the global flags use."""

    action: str
    type: Callable[[str], Path]
    metavar: str
    help: str
    default: object


def add_global_flags(p: argparse.ArgumentParser, *, on_subcommand: bool) -> None:
    """On the main parser the flags get real defaults; on a subparser they default to SUPPRESS so an absent
    flag after the subcommand does not reset one given before it."""
    d: _FlagSpec = {"default": argparse.SUPPRESS} if on_subcommand else {}
    taken = {s for a in p._actions for s in a.option_strings}
    g = p.add_argument_group("global options (before or after the subcommand)")
    specs: list[tuple[tuple[str, ...], _FlagSpec]] = [
        (("-v", "--verbose"), {"action": "count", "help": "more detail: library warnings (-vv: info lines)",
                               "default": argparse.SUPPRESS if on_subcommand else 0}),
        (("-q", "--quiet"), {"action": "store_true", "help": "no progress output (errors and the verdict only)", **d}),
        (("--json",), {"action": "store_true",
                       "help": "print one machine-readable JSON result on stdout (human output goes to stderr)", **d}),
        (("--config",), {"type": Path, "metavar": "FILE.toml",
                         "help": "read flags from a TOML file, keys spelled as the long flags "
                                 "(max-accuracy-drop = 1.0); the command line overrides the file", **d}),
    ]
    for flags, kw in specs:
        if not taken.intersection(flags):  # a subcommand that already defines the flag keeps its own
            g.add_argument(*flags, **kw)
    if on_subcommand:
        for a in p._actions:
            if a.dest in GLOBAL_DESTS:  # its own copy must not reset the flag given before the subcommand
                a.default = argparse.SUPPRESS
            if isinstance(a, argparse._SubParsersAction):  # e.g. `edgeq emulator status`
                for nested in a.choices.values():
                    add_global_flags(nested, on_subcommand=True)


def _flag_actions(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Config key -> action: each long flag without its dashes, and positionals by their dest."""
    out: dict[str, argparse.Action] = {}
    for a in p._actions:
        if a.dest in GLOBAL_DESTS or a.dest == "help" or isinstance(a, argparse._SubParsersAction):
            continue
        if not a.option_strings:
            out[a.dest] = a
            continue
        for s in a.option_strings:
            if s.startswith("--"):
                out[s[2:]] = a
    return out


def _convert(path: Path, key: str, action: argparse.Action, value: object) -> object:
    where = f"{path}: key {key!r}"
    if isinstance(action, argparse._StoreConstAction):  # store_true / store_false / store_const
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        if value:
            return action.const
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            return not action.const
        raise UsageError(f"{where} can only be set to true", "remove the key to keep the default")
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_convert_one(where, action, v) for v in items]
    if isinstance(value, list):
        if action.type is None or action.type is str:
            return ",".join(str(v) for v in value)  # `format = ["onnx", "pte"]` means --format onnx,pte
        raise UsageError(f"{where} takes one value, got a list")
    return _convert_one(where, action, value)


def _convert_one(where: str, action: argparse.Action, value: object) -> object:
    if isinstance(value, dict):
        raise UsageError(f"{where} is a table; expected a value")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        out = action.type(text) if callable(action.type) else text
    except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
        raise UsageError(f"{where}: {e}") from e
    if action.choices is not None and out not in action.choices:
        raise UsageError(f"{where}: {out!r} is not one of {', '.join(map(str, action.choices))}")
    return out


def read_config(path: Path) -> JSONObject:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise UsageError(f"config file not found: {path}", "pass --config path/to/edgeq.toml") from e
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path} is not valid TOML: {e}", "see docs/how-to/config-and-json.md (the --config file)") from e


def apply_config(path: Path, command: str, subparsers: dict[str, argparse.ArgumentParser]) -> None:
    """Turn the file's keys into defaults of the ``command`` subparser (so the command line still wins)."""
    raw = read_config(path)
    sub = subparsers[command]
    actions = _flag_actions(sub)
    everywhere = {k for p in subparsers.values() for k in _flag_actions(p)}
    merged: dict[str, object] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key in subparsers:
            continue
        if key in actions:
            merged[key] = value
        elif key not in everywhere:
            raise UsageError(f"{path}: unknown key {key!r}",
                             f"keys are the long flags without dashes, e.g. calib, max-accuracy-drop; "
                             f"see `edgeq {command} --help`")
    section = raw.get(command)
    for key, value in section.items() if isinstance(section, dict) else ():
        if key not in actions:
            raise UsageError(f"{path}: unknown key {key!r} in [{command}]", f"see `edgeq {command} --help`")
        merged[key] = value
    for key, given in merged.items():
        action = actions[key]
        # set_defaults reaches every action sharing the dest (--per-channel / --per-tensor)
        sub.set_defaults(**{action.dest: _convert(path, key, action, given)})
        action.required = False
        if not action.option_strings:
            action.nargs = "?"  # a positional given in the file may be left out on the command line
