"""The ``edgeq`` command: a thin layer over the Python API. Each subcommand lives in ``edgeq/commands/``.

Exit codes: 0 pass · 1 budget exceeded (never anything else) · 2 usage or input error · 3 runner/tool failure or an
internal error (traceback in a log file) · 130 interrupted (Ctrl-C) · 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from edgeq.errors import EdgeqError

COMMANDS = ("export", "check", "validate", "demo", "targets", "inspect", "emulator", "sweep", "sign")

EPILOG = """\
examples:
  edgeq demo                                   train the digits CNN, export INT8 ONNX, validate, report
  edgeq export mypkg.models:build --calib calib.npz -o out/        static INT8 ONNX, host-validated
  edgeq export model.pt2 --calib calib/ --target raspberry-pi-5 --format onnx,pte -o out/
  edgeq check out/ --max-accuracy-drop 0.5 --junit edgeq.xml       the CI gate (exit 1 when over budget)
  edgeq targets                                list target profiles; `edgeq targets show NAME` for one

exit codes: 0 pass, 1 budget exceeded, 2 usage/input error, 3 runner failure or internal error,
            130 interrupted (Ctrl-C), 143 terminated (SIGTERM)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeq",
        description="PyTorch model -> INT8 ONNX / ExecuTorch artifacts for phones and boards, validated on the "
                    "ARM kernels they will run on.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from edgeq.manifest import edgeq_version

    p.add_argument("--version", action="version", version=f"edgeq {edgeq_version()}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output (errors and the verdict only)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print the full traceback of an internal error (it always goes to a log file)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"edgeq.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"edgeq.commands.{name}":
                continue  # a feature not installed in this build
            raise
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from edgeq.outdir import Terminated, cleanup_scratch, install_signal_handlers

    parser = build_parser()
    args = parser.parse_args(argv)
    install_signal_handlers()
    cleanup_scratch()  # scratch folders of runs that were killed (SIGKILL, power loss)
    try:
        return int(args.func(args) or 0)
    except EdgeqError as e:
        print(f"edgeq: error: {e.cause}", file=sys.stderr)
        if e.hint:
            print(f"edgeq: hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except Terminated as e:
        print("edgeq: terminated; nothing was written", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("edgeq: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: exit 3, never 1 ("budget exceeded")
        return _internal_error(e, bool(getattr(args, "verbose", False)))


def _internal_error(e: Exception, verbose: bool) -> int:
    """One line on stderr, the traceback in a log file (and on stderr with -v); exit 3."""
    import time
    import traceback

    from edgeq.cache import cache_dir

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
