"""Fleet files: named SSH boards with their target profile, and the selectors that pick boards from them.

``edgeq-fleet.toml`` (found by ``--fleet FILE``, default ``./edgeq-fleet.toml``)::

    [boards.pi5-a]
    ssh = "ci@10.0.0.5"            # user@host[:port][/workdir], or the same with ssh:// in front
    target = "raspberry-pi-5"      # a packaged target profile (`edgeq targets`)
    groups = ["shelf-1"]           # optional

Selectors, one item of ``--validate-on`` / ``--on`` (comma-separated with host, emulator, ssh://...):

- ``fleet:board=NAME``, ``fleet:target=PROFILE``, ``fleet:group=GROUP``: by one namespace, explicitly;
- ``fleet:all``: every board of the file;
- ``fleet:NAME``: shorthand for whichever of board / group / profile NAME is. It is never ambiguous because the
  loader refuses a group or board named like a packaged profile, a group named like a board, and ``all``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgeq.config import DEFAULT_FLEET_FILE
from edgeq.errors import FleetError, UsageError
from edgeq.jsontypes import JSONObject
from edgeq.targets import list_targets
from edgeq.validate.runners.ssh_spec import SshSpec, parse_spec

SELECTOR_PREFIX = "fleet:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KINDS = ("board", "target", "group")
_BOARD_KEYS = {"ssh", "target", "groups"}
SELECTOR_HELP = ("fleet:board=NAME, fleet:target=PROFILE, fleet:group=GROUP, fleet:all, or fleet:NAME (a board, "
                 "group or profile name; the fleet file keeps these names distinct)")


@dataclass(frozen=True)
class Board:
    """One device: ``name`` is the fleet file's (or the ssh address for a board given as ssh://...)."""

    name: str
    spec: str  # the ssh:// runner spec
    runner: str  # SshSpec.name: what the manifest's validations record as their runner
    target: str | None = None
    groups: tuple[str, ...] = ()

    def to_dict(self) -> JSONObject:
        return {"name": self.name, "runner": self.runner, "target": self.target, "groups": list(self.groups)}


@dataclass(frozen=True)
class Fleet:
    path: str
    boards: tuple[Board, ...]

    def select(self, selector: str) -> list[Board]:
        """The boards a ``fleet:...`` selector names, in file order; a selector that names nothing is an error."""
        body = selector[len(SELECTOR_PREFIX):]
        if body == "all":
            return list(self.boards)
        kind, sep, value = body.partition("=")
        if not sep:
            kind, value = _kind_of(self, body), body
        if kind not in _KINDS or not value:
            raise FleetError(f"bad fleet selector {selector!r}", f"use {SELECTOR_HELP}")
        picked = [b for b in self.boards if (kind == "board" and b.name == value)
                  or (kind == "target" and b.target == value) or (kind == "group" and value in b.groups)]
        if not picked:
            raise FleetError(f"fleet selector {selector!r} matches no board of {self.path}",
                             f"boards: {', '.join(b.name for b in self.boards)}; groups: "
                             f"{', '.join(sorted({g for b in self.boards for g in b.groups})) or 'none'}; profiles: "
                             f"{', '.join(sorted({b.target or '' for b in self.boards}))}")
        return picked


def _kind_of(fleet: Fleet, name: str) -> str:
    if any(b.name == name for b in fleet.boards):
        return "board"
    if any(name in b.groups for b in fleet.boards):
        return "group"
    if name in list_targets():
        return "target"
    raise FleetError(f"fleet:{name}: no board, group or target profile called {name!r} in {fleet.path}",
                     f"use {SELECTOR_HELP}")


def ssh_spec_of(text: object, where: str) -> SshSpec:
    """``user@host[:port][/workdir]`` with or without ``ssh://``; a FleetError naming the board otherwise."""
    if not isinstance(text, str) or not text:
        raise FleetError(f"{where}: 'ssh' must be a string like \"ci@10.0.0.5\"", "user@host[:port][/workdir]")
    try:
        return parse_spec(text if text.startswith("ssh://") else f"ssh://{text}")
    except UsageError as e:
        raise FleetError(f"{where}: bad ssh spec {text!r} ({e.cause})", "use user@host[:port][/workdir], e.g. "
                         "ci@10.0.0.5 or pi@raspberrypi.local:2222/home/pi/edgeq") from None


def load_fleet(path: str | Path | None) -> Fleet:
    """Read and check a fleet file: every board named, reachable by a valid ssh spec, on a packaged profile."""
    p = Path(path or DEFAULT_FLEET_FILE)
    if not p.is_file():
        raise FleetError(f"fleet file {p} not found", "pass --fleet FILE, or write ./edgeq-fleet.toml "
                         "(see docs/how-to/fleets.md)")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        dup = "twice" in str(e) or "overwrite" in str(e).lower()
        raise FleetError(f"{p}: {'duplicate board' if dup else 'not valid TOML'} ({e})",
                         "each [boards.NAME] table may appear once" if dup else "check the TOML syntax") from None
    return parse_fleet(raw, str(p))


def parse_fleet(raw: Mapping[str, object], where: str) -> Fleet:
    extra = set(raw) - {"boards"}
    boards_raw = raw.get("boards")
    if extra or not isinstance(boards_raw, dict) or not boards_raw:
        raise FleetError(f"{where}: expected only [boards.NAME] tables" + (f", got {sorted(extra)}" if extra else ""),
                         '[boards.pi5-a]\nssh = "ci@10.0.0.5"\ntarget = "raspberry-pi-5"')
    profiles = set(list_targets())
    boards: list[Board] = []
    seen: dict[str, str] = {}
    for name, d in boards_raw.items():
        at = f"{where}: [boards.{name}]"
        if not _NAME.match(name) or name == "all" or name in profiles:
            raise FleetError(f"{at}: bad board name {name!r}", "letters, digits, . _ -; not 'all' and not the "
                             "name of a target profile (fleet:NAME must stay unambiguous)")
        if not isinstance(d, dict) or set(d) - _BOARD_KEYS:
            raise FleetError(f"{at}: unknown key(s) {sorted(set(d) - _BOARD_KEYS) if isinstance(d, dict) else d}",
                             "keys: ssh, target, groups")
        spec = ssh_spec_of(d.get("ssh"), at)
        target = d.get("target")
        if target not in profiles:
            raise FleetError(f"{at}: unknown target profile {target!r}", f"one of: {', '.join(sorted(profiles))}")
        groups = d.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) and _NAME.match(g) for g in groups):
            raise FleetError(f"{at}: 'groups' must be a list of names", 'e.g. groups = ["shelf-1"]')
        if spec.name in seen:
            raise FleetError(f"{at}: duplicate board: {spec.name} is also board {seen[spec.name]!r}",
                             "one board, one entry (give it several groups instead)")
        seen[spec.name] = name
        boards.append(Board(name, f"ssh://{d['ssh']}" if not d["ssh"].startswith("ssh://") else d["ssh"],
                            spec.name, target, tuple(groups)))
    names = {b.name for b in boards}
    for g in sorted({g for b in boards for g in b.groups}):
        if g in names or g in profiles or g == "all":
            raise FleetError(f"{where}: group {g!r} is also a board or profile name", "rename the group, so "
                             "fleet:NAME names one thing")
    return Fleet(where, tuple(boards))


def is_board_spec(spec: str) -> bool:
    return spec.startswith(SELECTOR_PREFIX) or spec.startswith("ssh://")


def select_boards(specs: tuple[str, ...], fleet_file: str | None) -> list[Board]:
    """Every board the ssh:// items and fleet: selectors of ``specs`` name, once each, in the order given."""
    fleet = load_fleet(fleet_file) if any(s.startswith(SELECTOR_PREFIX) for s in specs) else None
    out: dict[str, Board] = {}
    for s in specs:
        if s.startswith(SELECTOR_PREFIX) and fleet is not None:
            picked = fleet.select(s)
        elif s.startswith("ssh://"):
            sp = parse_spec(s)
            picked = [Board(sp.name, s, sp.name)]
        else:
            continue
        for b in picked:  # a device selected twice is validated once; its fleet name wins over a bare address
            if b.runner not in out or out[b.runner].name == b.runner:
                out[b.runner] = b
    return list(out.values())
