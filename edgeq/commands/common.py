"""Flags shared by several subcommands, and their conversion to typed config objects."""

from __future__ import annotations

import argparse

from edgeq.config import CALIBRATION_METHODS, DEFAULT_FLEET_FILE, Budget, FleetOptions
from edgeq.progress import Progress


def add_budget_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("accuracy budget (defaults come from the target profile)")
    g.add_argument("--max-accuracy-drop", type=float, metavar="PTS",
                   help="max drop in task accuracy (with labels) or top-1 agreement, in percentage points")
    g.add_argument("--min-cosine", type=float, metavar="C", help="min mean cosine similarity to the float outputs")
    g.add_argument("--min-sqnr", type=float, metavar="DB", help="min signal-to-quantization-noise ratio, dB")
    g.add_argument("--min-top1-agreement", type=float, metavar="F", help="min fraction of argmax matches (0-1)")
    g.add_argument("--min-nn-agreement", type=float, metavar="F",
                   help="embeddings: min fraction of evaluation samples that keep their nearest neighbour (0-1)")


def add_runner_timeout_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runner-timeout", type=float, default=None, metavar="SECONDS",
                   help="kill one artifact run (host, emulator, C++ runner) after this many seconds: exit 3 instead "
                        "of a hung job (default: the target profile's runner_timeout_s)")


def budget_from(args: argparse.Namespace) -> Budget:
    return Budget(max_accuracy_drop=args.max_accuracy_drop, min_cosine=args.min_cosine, min_sqnr=args.min_sqnr,
                  min_top1_agreement=args.min_top1_agreement,
                  min_nn_agreement=getattr(args, "min_nn_agreement", None))


def add_quant_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("quantization (defaults come from the target profile)")
    g.add_argument("--dynamic", action="store_true",
                   help="dynamic INT8 (weights offline, activations at run time) instead of static QDQ")
    g.add_argument("--per-token", action="store_true",
                   help="dynamic INT8 with one activation scale per token (row) instead of one per tensor: what "
                        "encoders with outlier tokens need (implies --dynamic; a .pte's dynamic INT8 is always per "
                        "token)")
    g.add_argument("--calibration", choices=CALIBRATION_METHODS, help="activation range calibration method")
    pc = g.add_mutually_exclusive_group()
    pc.add_argument("--per-channel", dest="per_channel", action="store_true", default=None,
                    help="per-channel weight scales")
    pc.add_argument("--per-tensor", dest="per_channel", action="store_false", help="per-tensor weight scales")
    g.add_argument("--activation-type", choices=("int8", "uint8", "int16", "uint16"))
    g.add_argument("--weight-type", choices=("int8", "uint8"))
    rr = g.add_mutually_exclusive_group()
    rr.add_argument("--reduce-range", dest="reduce_range", action="store_true", default=None,
                    help="7-bit weights (x86 without VNNI saturation workaround)")
    rr.add_argument("--no-reduce-range", dest="reduce_range", action="store_false")
    g.add_argument("--exclude-node", action="append", default=[], metavar="NAME",
                   help="keep this ONNX node in float (repeatable)")
    g.add_argument("--exclude-op-type", action="append", default=[], metavar="OP",
                   help="keep every node of this ONNX op type in float, e.g. Softmax (repeatable)")
    g.add_argument("--calib-samples", type=int, default=256, metavar="N",
                   help="max calibration samples used (default 256)")


def progress_from(args: argparse.Namespace) -> Progress:
    return Progress(enabled=not getattr(args, "quiet", False))


FLEET_HELP = ("Boards run in parallel when the runners name a fleet: selector, two or more ssh:// boards, or "
              "--min-boards. Selectors: fleet:board=NAME, fleet:target=PROFILE, fleet:group=GROUP, fleet:all, or "
              "fleet:NAME (a board, group or profile of the fleet file; the file keeps these names distinct). "
              "Each board is passed, failed (over budget), unreachable (no connection, dropped, or out of "
              "--board-timeout) or error (answered but could not run); only passed and failed boards answered. "
              "Exit 1 when an answering board is over budget; else exit 3 when fewer than --min-boards answered.")


def add_fleet_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("SSH board fleets (see docs/how-to/fleets.md)", FLEET_HELP)
    g.add_argument("--fleet", metavar="FILE", help=f"fleet file of named boards (default ./{DEFAULT_FLEET_FILE})")
    g.add_argument("--jobs", type=int, default=FleetOptions.jobs, metavar="N",
                   help=f"boards validated at the same time (default {FleetOptions.jobs})")
    g.add_argument("--board-timeout", type=float, default=FleetOptions.board_timeout, metavar="SECONDS",
                   help=f"time limit for one board's whole share of the run; past it the board is unreachable "
                        f"(default {FleetOptions.board_timeout:g})")
    g.add_argument("--min-boards", type=int, metavar="K",
                   help="boards that must answer (passed or failed) for the run to count; fewer: exit 3 "
                        "(default: every selected board)")


def fleet_from(args: argparse.Namespace) -> FleetOptions:
    return FleetOptions(file=args.fleet, jobs=args.jobs, board_timeout=args.board_timeout, min_boards=args.min_boards)
