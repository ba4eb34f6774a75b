"""The ``edgeq`` command: a thin layer over the Python API. Each subcommand lives in ``edgeq/commands/``.

Exit codes: 0 pass · 1 budget exceeded (never anything else) · 2 usage or input error · 3 runner/tool failure or an
internal error (traceback in a log file) · 130 interrupted (Ctrl-C) · 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from edgeq.cache import cache_dir
from edgeq.commands.globalopts import add_global_flags, apply_config
from edgeq.console import configure_output, emit_json
from edgeq.errors import EdgeqError, storage_error
from edgeq.manifest import edgeq_version
from edgeq.outdir import Terminated, cleanup_scratch, install_signal_handlers

COMMANDS = ("export", "check", "validate", "demo", "targets", "inspect", "emulator", "sweep", "sign", "generate",
            "explain")

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

exit codes: 0 pass, 1 budget exceeded, 2 usage/input error, 3 runner failure or internal error,
            130 interrupted (Ctrl-C), 143 terminated (SIGTERM)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeq",
        description="PyTorch model -> INT8 ONNX / ExecuTorch artifacts for phones and boards, validated on the "
                    "ARM kernels they will run on.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)

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
    raw = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None
    install_signal_handlers()
    cleanup_scratch()  # scratch folders of runs that were killed (SIGKILL, power loss)
    try:
        args = parse_args(argv)
        return int(args.func(args) or 0)
    except EdgeqError as e:
        return _typed_error(e, raw)
    except Terminated as e:
        print("edgeq: terminated; nothing was written", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("edgeq: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: exit 3, never 1 ("budget exceeded")
        full = storage_error(e)  # a full disk deep inside a library is the user's to fix, not a bug
        if full is not None:
            return _typed_error(full, raw)
        verbose = bool(getattr(args, "verbose", 0)) if args is not None else any(a in ("-v", "--verbose", "-vv")
                                                                                  for a in raw)
        return _internal_error(e, verbose)


def _typed_error(e: EdgeqError, raw: list[str]) -> int:
    print(f"edgeq: error: {e.cause}", file=sys.stderr)
    if e.hint:
        print(f"edgeq: hint: {e.hint}", file=sys.stderr)
    if "--json" in raw:  # scripts parse stdout even on failure

        emit_json({"error": {"type": type(e).__name__, "cause": e.cause, "hint": e.hint,
                             "exit_code": e.exit_code}})
    return e.exit_code


def _internal_error(e: Exception, verbose: bool) -> int:
    """One line on stderr, the traceback in a log file (and on stderr with -v); exit 3."""
    text = "".join(traceback.format_exception(e))
    first = (str(e).splitlines() or [""])[0][:300]
    print(f"edgeq: internal error: {type(e).__name__}: {first}", file=sys.stderr)
    try:
        log = cache_dir("logs") / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        log.write_text(f"edgeq {' '.join(sys.argv[1:])}\n{text}")
        print(f"edgeq: the traceback is in {log}; please include it in a bug report", file=sys.stderr)
    except OSError:
        verbose = True  # no log file: the traceback must go somewhere
    if verbose:
        print(text, file=sys.stderr, end="")
    return 3


if __name__ == "__main__":
    sys.exit(main())
