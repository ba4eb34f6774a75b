"""The ``edgeq`` command: a thin layer over the Python API. Each subcommand lives in ``edgeq/commands/``.

Exit codes: 0 pass · 1 budget exceeded · 2 usage or input error · 3 runner/tool failure · 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from edgeq.commands.globalopts import add_global_flags, apply_config
from edgeq.console import configure_output
from edgeq.errors import EdgeqError

COMMANDS = ("export", "check", "validate", "demo", "targets", "inspect", "emulator", "sweep")

EPILOG = """\
examples:
  edgeq demo                                   train the digits CNN, export INT8 ONNX, validate, report
  edgeq export mypkg.models:build --calib calib.npz -o out/        static INT8 ONNX, host-validated
  edgeq export model.pt2 --calib calib/ --target raspberry-pi-5 --format onnx,pte -o out/
  edgeq check out/ --max-accuracy-drop 0.5 --junit edgeq.xml       the CI gate (exit 1 when over budget)
  edgeq targets                                list target profiles; `edgeq targets show NAME` for one
  edgeq export mymodel:build --config edgeq.toml --json    flags from a file; one JSON result on stdout

global options (-v, -q, --json, --config FILE.toml) go before or after the subcommand. In the config file each
key is a long flag without its dashes: calib = "calib.npz", max-accuracy-drop = 1.0, format = ["onnx", "pte"];
a [export] / [check] table holds keys for one subcommand; the command line overrides the file.

exit codes: 0 pass, 1 budget exceeded, 2 usage/input error, 3 runner failure, 130 interrupted
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeq",
        description="PyTorch model -> INT8 ONNX / ExecuTorch artifacts for phones and boards, validated on the "
                    "ARM kernels they will run on.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from edgeq.manifest import edgeq_version

    p.add_argument("--version", action="version", version=f"edgeq {edgeq_version()}")
    add_global_flags(p, on_subcommand=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"edgeq.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"edgeq.commands.{name}":
                continue  # a feature not installed in this build
            raise
        mod.register(sub)
    for subparser in sub.choices.values():
        add_global_flags(subparser, on_subcommand=True)
    return p


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``--config FILE`` (anywhere) supplies defaults for the subcommand's flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, rest = pre.parse_known_args(argv)
    subs = _subparsers(parser)
    command = next((t for t in rest if not t.startswith("-")), None)
    # An edgeq.json (or an export folder) is a rebuild recipe for `export`, not a file of flag defaults.
    manifest = known.config is not None and (known.config.suffix == ".json" or known.config.is_dir())
    if known.config is not None and command in subs and not manifest:
        apply_config(known.config, command, subs)
    args = parser.parse_args(argv)
    configure_output(args)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        return int(args.func(args) or 0)
    except EdgeqError as e:
        print(f"edgeq: error: {e.cause}", file=sys.stderr)
        if e.hint:
            print(f"edgeq: hint: {e.hint}", file=sys.stderr)
        if "--json" in (sys.argv[1:] if argv is None else argv):  # scripts parse stdout even on failure
            from edgeq.console import emit_json

            emit_json({"error": {"type": type(e).__name__, "cause": e.cause, "hint": e.hint,
                                 "exit_code": e.exit_code}})
        return e.exit_code
    except KeyboardInterrupt:
        print("edgeq: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
