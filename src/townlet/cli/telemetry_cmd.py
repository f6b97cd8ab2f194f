"""``townlet-train telemetry``: validate and convert PPO telemetry logs (torch-free).

* ``telemetry validate LOG... [--baseline F] [--drift-threshold X] [--relative]`` — the
  reference validator's rules; exit 0 when every log passes, 1 when one fails, 2 when a log or
  the baseline cannot be read.
* ``telemetry convert LOG --to 1.0|1.1|1.2|1.3 [--output F]`` — rewrite a log at another version;
  the JSONL goes to stdout unless ``--output`` is given (written atomically).
* ``telemetry table LOG [--keys K,...]`` — chosen keys per line as an aligned text table.
* ``telemetry plot LOG --out PNG [--keys K,...]`` — one panel per key (needs matplotlib).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from townlet.cli import UsageError
from townlet.cli._common import check_out_file, print_json
from townlet.dto.convert import to_dict
from townlet.dto.telemetry import convert_telemetry, dumps_line
from townlet.dto.telemetry_table import DEFAULT_KEYS, format_telemetry_table, telemetry_columns
from townlet.dto.telemetry_validate import format_validation, validate_telemetry


def _keys(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise argparse.ArgumentTypeError("expected comma-separated telemetry keys")
    return keys


def register(subparsers: Any) -> None:
    """Add the ``telemetry`` command with its ``validate`` and ``convert`` subcommands."""
    parser = subparsers.add_parser(
        "telemetry",
        help="validate, convert, tabulate or plot PPO telemetry logs",
        description="Validate, convert (1.0-1.3), tabulate or plot PPO telemetry logs.",
    )
    actions = parser.add_subparsers(dest="telemetry_command", metavar="ACTION")
    actions.required = True

    validate = actions.add_parser(
        "validate",
        help="check logs against the telemetry schema (exit 1 on a failure)",
        description="Check each log against the PPO telemetry rules of its version.",
    )
    validate.add_argument("logs", nargs="+", metavar="LOG", help="telemetry JSONL files")
    validate.add_argument("--baseline", help="JSON object with baseline_* values to compare")
    validate.add_argument(
        "--drift-threshold",
        type=float,
        help="fail when any |record - baseline| exceeds this value",
    )
    validate.add_argument(
        "--relative", action="store_true", help="also show drift in %% of the baseline"
    )
    validate.add_argument("--format", choices=("json", "human"), default="json")
    validate.set_defaults(handler=run_validate)

    convert = actions.add_parser(
        "convert",
        help="rewrite a log at another telemetry version",
        description="Rewrite a log at another telemetry version (newer keys dropped or null).",
    )
    convert.add_argument("log", metavar="LOG", help="telemetry JSONL file (any version)")
    convert.add_argument(
        "--to", required=True, choices=("1.0", "1.1", "1.2", "1.3"), dest="version"
    )
    convert.add_argument("--output", help="write here (atomically) instead of stdout")
    convert.set_defaults(handler=run_convert)

    table = actions.add_parser(
        "table",
        help="print chosen keys of a log as a text table",
        description="Print chosen telemetry keys, one row per line of the log (any version).",
    )
    table.add_argument("log", metavar="LOG", help="telemetry JSONL file (any version)")
    table.add_argument(
        "--keys", type=_keys, default=DEFAULT_KEYS, help="comma-separated keys (default: losses)"
    )
    table.set_defaults(handler=run_table)

    plot = actions.add_parser(
        "plot",
        help="plot chosen keys of a log into a PNG",
        description="Plot telemetry keys per line of a log into a PNG (needs matplotlib).",
    )
    plot.add_argument("log", metavar="LOG", help="telemetry JSONL file (any version)")
    plot.add_argument("--out", required=True, help="PNG file to write (atomically)")
    plot.add_argument("--keys", type=_keys, help="comma-separated keys (default: four losses)")
    plot.set_defaults(handler=run_plot)


def run_validate(args: argparse.Namespace) -> int:
    """Validate every log; print JSON (or text with ``--format human``); 0 ok, 1 failed."""
    threshold = args.drift_threshold
    if threshold is not None and not (math.isfinite(threshold) and threshold >= 0):
        # NaN compares false with every drift: the check would pass whatever the log holds.
        raise UsageError(f"--drift-threshold must be a finite number >= 0, got {threshold}")
    reports = [
        validate_telemetry(
            log,
            baseline=args.baseline,
            drift_threshold=args.drift_threshold,
            relative=args.relative,
        )
        for log in args.logs
    ]
    ok = all(report.ok for report in reports)
    if args.format == "human":
        for report in reports:
            sys.stdout.write(format_validation(report, relative=args.relative) + "\n")
    else:
        print_json({"ok": ok, "logs": [{**to_dict(r), "ok": r.ok} for r in reports]})
    return 0 if ok else 1


def run_convert(args: argparse.Namespace) -> int:
    """Convert one log; JSONL to stdout, or a JSON summary when ``--output`` is given."""
    check_out_file(args.output, "--output")
    lines = convert_telemetry(args.log, version=args.version, output=args.output)
    if args.output is None:
        sys.stdout.write("".join(dumps_line(line) for line in lines))
    else:
        print_json(
            {
                "input": args.log,
                "output": args.output,
                "version": args.version,
                "records": len(lines),
            }
        )
    return 0


def run_table(args: argparse.Namespace) -> int:
    """Print the chosen keys of one log as a text table."""
    sys.stdout.write(format_telemetry_table(telemetry_columns(args.log, args.keys)) + "\n")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    """Plot one log into a PNG; print ``{log, out, keys}``."""
    from townlet.plots import PLOT_KEYS, plot_telemetry

    check_out_file(args.out)
    keys = args.keys or PLOT_KEYS
    out = plot_telemetry(args.log, args.out, keys=keys)
    print_json({"log": args.log, "out": str(out), "keys": list(keys)})
    return 0
