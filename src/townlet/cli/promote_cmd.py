"""``townlet-train promote``: decide on an anneal summary, and keep a run's promotion state.

Subcommands:

* ``evaluate --summary F`` — PROMOTE / HOLD / FAIL for an anneal summary (exit 0 / 1 / 2;
  ``--dry-run`` always exits 0). ``-`` reads the summary from stdin.
* ``record --run DIR --summary F`` — fold the summary's status into ``DIR/promotion.json``
  (created on first use).
* ``status --run DIR`` — print the promotion state.
* ``promote --run DIR --checkpoint P`` — promote the ready candidate (exit 1 when not ready).
  The policy hash defaults to the SHA-256 of the checkpoint file's bytes (no torch needed).
* ``rollback --run DIR`` / ``swap --run DIR --checkpoint P`` — release changes.
* ``gate --run DIR --candidate-returns F --incumbent-returns F --margin M`` — the paired-return
  behaviour gate (exit 1 when it fails), recorded into the history.

Release changes are also appended to ``DIR/promotion_history.jsonl``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from townlet._input_limits import (
    MAX_TEXT_FILE_BYTES,
    decode_utf8,
    loads_json,
    read_text,
    show_path,
)
from townlet.cli._common import print_json
from townlet.errors import PromotionError
from townlet.policy.training.services import promotion as pm
from townlet.policy.training.services.behaviour_gate import paired_return_gate
from townlet.policy.training.services.promotion_commit import (
    commit_change,
    recover_pending_change,
)
from townlet.policy.training.services.promotion_decision import PromotionDecision, decide
from townlet.policy.training.services.promotion_io import (
    file_sha256,
    load_promotion_state,
    promotion_state_to_dict,
    save_promotion_state,
)

STATE_FILE = "promotion.json"
LOG_FILE = "promotion_history.jsonl"


def register(subparsers: Any) -> None:
    """Add the ``promote`` command and its subcommands."""
    parser = subparsers.add_parser(
        "promote", help="promotion gate: evaluate anneal summaries, promote, roll back"
    )
    sub = parser.add_subparsers(dest="promote_command", metavar="SUBCOMMAND", required=True)
    evaluate = _add(sub, "evaluate", "decide PROMOTE/HOLD/FAIL for an anneal summary", _evaluate)
    _summary_arg(evaluate)
    evaluate.add_argument("--dry-run", action="store_true", help="always exit 0")
    record = _add(sub, "record", "record an anneal summary's status into a run", _record)
    _run_arg(record)
    _summary_arg(record)
    record.add_argument("--required-passes", type=int, help="passes needed to be ready (1-10)")
    record.add_argument("--checkpoint", type=Path, help="the candidate's checkpoint file")
    _run_arg(_add(sub, "status", "print a run's promotion state", _status))
    promote = _add(sub, "promote", "promote the ready candidate", _promote)
    _run_arg(promote)
    _checkpoint_args(promote, required=True)
    promote.add_argument("--force", action="store_true", help="promote even if not ready")
    promote.add_argument(
        "--require-behaviour-gate", action="store_true", help="need a passing behaviour gate"
    )
    rollback = _add(sub, "rollback", "return to the release before the last promotion", _rollback)
    _run_arg(rollback)
    rollback.add_argument("--reason", help="why (recorded in the release)")
    rollback.add_argument("--checkpoint", type=Path, help="checkpoint to record in the release")
    swap = _add(sub, "swap", "record a manual policy swap", _swap)
    _run_arg(swap)
    _checkpoint_args(swap, required=True)
    _add_gate(sub)


def _add(sub: Any, name: str, text: str, handler: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
    parser.add_argument("--format", choices=("json", "human"), default="json")
    parser.set_defaults(handler=handler)
    return parser


def _run_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help=f"run directory ({STATE_FILE})")


def _summary_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--summary", "--input", required=True, help="anneal summary JSON file, '-' for stdin"
    )


def _checkpoint_args(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--checkpoint", type=Path, required=required, help="checkpoint file")
    parser.add_argument("--policy-hash", help="default: SHA-256 of the checkpoint file")


def _add_gate(sub: Any) -> None:
    gate = _add(sub, "gate", "paired-return behaviour gate against the incumbent", _gate)
    _run_arg(gate)
    for name in ("--candidate-returns", "--incumbent-returns"):
        gate.add_argument(name, type=Path, required=True, help="JSON list of episode returns")
    gate.add_argument("--margin", type=float, required=True, help="allowed loss per episode")
    gate.add_argument("--min-episodes", type=int, default=10)
    gate.add_argument("--confidence", type=float, default=0.95)


# --- helpers ------------------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _read_stdin(what: str) -> str:
    """stdin as text, at most ``MAX_TEXT_FILE_BYTES`` and strict UTF-8 when it is binary."""
    buffer = getattr(sys.stdin, "buffer", None)
    data = buffer.read(MAX_TEXT_FILE_BYTES + 1) if buffer is not None else None
    if data is None:
        text: str = sys.stdin.read(MAX_TEXT_FILE_BYTES + 1)
    else:
        text = decode_utf8(data, PromotionError, f"stdin: the {what}")
    if len(text) > MAX_TEXT_FILE_BYTES:
        raise PromotionError(f"stdin: the {what} is over the {MAX_TEXT_FILE_BYTES}-byte limit")
    return text


def _read_json(spec: str, what: str) -> tuple[Any, str]:
    source = "stdin" if spec == "-" else show_path(spec)
    if spec == "-":
        text = _read_stdin(what)
    else:
        text = read_text(spec, PromotionError, f"{source}: cannot read {what}:")
    if not text.strip():
        raise PromotionError(f"{source}: the {what} is empty")
    return loads_json(
        text, PromotionError, f"{source}: {what}", syntax=" is not valid JSON:"
    ), source


def _read_summary(spec: str) -> PromotionDecision:
    payload, source = _read_json(spec, "summary")
    if not isinstance(payload, dict):
        raise PromotionError(f"{source}: the summary must be a JSON object")
    return decide(payload, source=source)


def _checkpoint_metadata(path: Path, policy_hash: str | None) -> dict[str, Any]:
    if not path.is_file():
        raise PromotionError(f"--checkpoint: {path} is not a file")
    return {"checkpoint": str(path.resolve()), "policy_hash": policy_hash or file_sha256(path)}


def _save(run: Path, state: pm.PromotionState, *, log: bool) -> None:
    # A logged change writes the state and its history line together or not at all.
    if log:
        commit_change(run / STATE_FILE, run / LOG_FILE, state)
    else:
        save_promotion_state(run / STATE_FILE, state)


def _load(run: Path) -> pm.PromotionState:
    recover_pending_change(run / STATE_FILE, run / LOG_FILE)
    return load_promotion_state(run / STATE_FILE)


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: str) -> None:
    if args.format == "human":
        sys.stdout.write(human + "\n")
    else:
        print_json(payload)


def _yes(flag: Any) -> str:
    return "yes" if flag else "no"


def _release_text(release: Any) -> str:
    if not release:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in release.items())


def format_decision(decision: PromotionDecision) -> str:
    """The human form of a decision (the reference's lines plus a stage table)."""
    lines = [
        f"Decision: {decision.decision}",
        f"Status:   {decision.status}",
        f"Ready?:   {_yes(decision.candidate_ready)}",
    ]
    block = decision.promotion
    if block:
        streak = f"{block.get('pass_streak')}/{block.get('required_passes')}"
        lines.append(f"Pass streak: {streak} (last result: {block.get('last_result')})")
    if decision.results:
        lines.append(f"{'cycle':>7}  {'mode':<4}  result")
        for stage in decision.results:
            lines.append(f"{stage.get('cycle')!s:>7}  {stage.get('mode')!s:<4}  {_stage(stage)}")
    lines.append("Reasons:" + ("" if decision.reasons else " none"))
    lines.extend(f"  - {reason}" for reason in decision.reasons)
    return "\n".join(lines)


def _stage(stage: Any) -> str:
    if stage.get("mode") == "bc":
        verdict = "failed" if not stage.get("passed", True) else "passed"
        acc, thr = stage.get("accuracy"), stage.get("threshold")
        if isinstance(acc, int | float) and isinstance(thr, int | float):
            return f"{verdict} (accuracy {acc:.3f}, threshold {thr:.3f})"
        return verdict
    raised = [n for n in ("loss", "queue", "intensity") if stage.get(f"anneal_{n}_flag")]
    return "flags: " + ", ".join(raised) if raised else "no flags"


def format_state(state: pm.PromotionState) -> str:
    """The human form of a promotion state: one ``name: value`` row per field."""
    since = (
        "" if state.candidate_ready_tick is None else f" (since tick {state.candidate_ready_tick})"
    )
    latest = state.history[-1] if state.history else None
    rows = [
        ("State", state.state),
        ("Pass streak", f"{state.pass_streak}/{state.required_passes}"),
        ("Last result", f"{state.last_result or '-'} (evaluations: {state.evaluations})"),
        ("Candidate ready", _yes(state.candidate_ready) + since),
        ("Candidate", _release_text(state.candidate)),
        ("Current release", _release_text(state.current_release)),
        ("Initial release", _release_text(state.initial_release)),
        (
            "History",
            f"{len(state.history)} events"
            + ("" if latest is None else f" (latest: {latest.event} at tick {latest.tick})"),
        ),
    ]
    return "\n".join(f"{name + ':':<17}{value}" for name, value in rows)


# --- handlers -----------------------------------------------------------------------------------


def _evaluate(args: argparse.Namespace) -> int:
    decision = _read_summary(args.summary)
    _emit(args, decision.to_dict(), format_decision(decision))
    return 0 if args.dry_run else decision.exit_code


def _load_or_init(run: Path, required_passes: int | None) -> pm.PromotionState:
    recover_pending_change(run / STATE_FILE, run / LOG_FILE)
    if (run / STATE_FILE).exists():
        return load_promotion_state(run / STATE_FILE)
    if not run.is_dir():
        raise PromotionError(f"--run: {run} is not a directory")
    return pm.init_promotion_state(required_passes=required_passes or 2)


def _record(args: argparse.Namespace) -> int:
    if args.required_passes is not None and not 1 <= args.required_passes <= 10:
        raise PromotionError(f"--required-passes: expected 1..10, got {args.required_passes}")
    decision = _read_summary(args.summary)
    state = _load_or_init(args.run, args.required_passes)
    candidate = None if args.checkpoint is None else _checkpoint_metadata(args.checkpoint, None)
    state = pm.record_evaluation(
        state,
        decision.status,
        decision.results,
        required_passes=args.required_passes,
        candidate=candidate,
    )
    _save(args.run, state, log=False)
    payload = {"recorded": decision.status.upper(), "promotion": promotion_state_to_dict(state)}
    _emit(args, payload, f"Recorded:        {decision.status.upper()}\n{format_state(state)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = _load(args.run)
    _emit(args, {"promotion": promotion_state_to_dict(state)}, format_state(state))
    return 0


def _promote(args: argparse.Namespace) -> int:
    state = _load(args.run)
    metadata = _checkpoint_metadata(args.checkpoint, args.policy_hash)
    refusal = None
    if not (state.candidate_ready or args.force):
        refusal = "promotion_not_ready"
    elif args.require_behaviour_gate and not (pm.latest_behaviour_gate(state) or {}).get("passed"):
        refusal = "behaviour_gate_not_passed"
    if refusal is not None:
        payload = {"error": refusal, "promotion": promotion_state_to_dict(state)}
        _emit(args, payload, f"Refused: {refusal}\n{format_state(state)}")
        return 1
    state = pm.promote(
        state,
        metadata,
        timestamp=_now(),
        require_ready=not args.force,
        require_behaviour_gate=args.require_behaviour_gate,
    )
    _save(args.run, state, log=True)
    _emit(
        args, {"promoted": True, "promotion": promotion_state_to_dict(state)}, format_state(state)
    )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    state = _load(args.run)
    metadata = {"reason": args.reason}
    if args.checkpoint is not None:
        metadata["checkpoint"] = str(args.checkpoint.resolve())
    state = pm.rollback(state, metadata, timestamp=_now())
    _save(args.run, state, log=True)
    payload = {"rolled_back": True, "promotion": promotion_state_to_dict(state)}
    _emit(args, payload, format_state(state))
    return 0


def _swap(args: argparse.Namespace) -> int:
    state = _load(args.run)
    metadata = _checkpoint_metadata(args.checkpoint, args.policy_hash)
    state = pm.swap(state, metadata, timestamp=_now())
    _save(args.run, state, log=True)
    payload = {"swapped": True, "release": metadata, "promotion": promotion_state_to_dict(state)}
    _emit(args, payload, format_state(state))
    return 0


def _returns(path: Path) -> list[float]:
    values, source = _read_json(str(path), "returns file")
    ok = isinstance(values, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in values
    )
    if not ok:
        raise PromotionError(f"{source}: expected a JSON list of numbers (episode returns)")
    return [float(x) for x in values]


def _gate(args: argparse.Namespace) -> int:
    state = _load(args.run)
    result = paired_return_gate(
        _returns(args.candidate_returns),
        _returns(args.incumbent_returns),
        margin=args.margin,
        min_episodes=args.min_episodes,
        confidence=args.confidence,
    )
    state = pm.record_behaviour_gate(state, result, timestamp=_now())
    _save(args.run, state, log=False)
    human = "\n".join(f"{name + ':':<18}{value}" for name, value in result.to_dict().items())
    _emit(args, {"behaviour_gate": result.to_dict()}, human)
    return 0 if result.passed else 1
