"""Run-time decisions of generated DAGs, as plain functions of task states.

The gate task of each phase, the fan-out resolver and the run's outcome task call these; keeping
them free of Airflow makes every failure-policy case testable in microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from recovery_provider.spec.phase_kinds import FailurePolicy

FAILED = frozenset({"failed", "upstream_failed"})


@dataclass(frozen=True)
class PhaseVerdict:
    """What a phase's gate decides: ``ok``, ``partial`` (failures accepted), ``failed`` or ``skipped``."""

    outcome: str
    units: int
    failed_units: tuple[str, ...] = field(default=())
    reason: str = ""

    def as_xcom(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "units": self.units, "failed": list(self.failed_units), "reason": self.reason}


def state_key(task_id: str, map_index: int = -1) -> str:
    """How the execution API keys a task instance's state: ``task_id``, or ``task_id_<map index>``."""
    return task_id if map_index < 0 else f"{task_id}_{map_index}"


def unit_of(task_key: str, phase_id: str, fan_out: bool) -> str:
    """The unit a failure counts against: the step, or for fan-outs the target.

    Task keys come from the execution API: ``phase.step``, or ``phase.each.step_3`` for map index 3
    (``phase.wave2.step_3`` in waves, where indexes restart each wave). A target is
    ``each[3]`` / ``wave2[3]``; a mapped task that never expanded counts as its whole group.
    """
    if fan_out:
        group = task_key.removeprefix(f"{phase_id}.").split(".")[0]
        match = re.search(r"_(\d+)$", task_key)
        return f"{group}[{match.group(1)}]" if match else group
    return task_key.removeprefix(f"{phase_id}.")


def judge_phase(
    policy: FailurePolicy,
    states: Mapping[str, str | None],
    *,
    phase_id: str,
    fan_out: bool,
    units_total: int | None = None,
    non_critical: Iterable[str] = (),
) -> PhaseVerdict:
    """Apply a phase's failure policy to the states of its work tasks.

    `states` maps task keys (see :func:`unit_of`) to states; `non_critical` names steps whose
    failure never counts. Gates, resolvers and helper tasks must be left out by the caller.
    """
    ignored = set(non_critical)
    units: dict[str, bool] = {}
    for key, state in states.items():
        unit = unit_of(key, phase_id, fan_out)
        step = key.removeprefix(f"{phase_id}.").split(".")[-1]
        step = re.sub(r"_\d+$", "", step) if fan_out else step
        failed = state in FAILED and step not in ignored
        units[unit] = units.get(unit, False) or failed
    total = units_total if units_total is not None else len(units)
    if states and all(s == "skipped" for s in states.values()):
        return PhaseVerdict("skipped", total, reason="every task of the phase was skipped")
    failed_units = tuple(sorted(u for u, failed in units.items() if failed))
    count = len(failed_units)
    if count == 0:
        return PhaseVerdict("ok", total)
    if policy.mode == "continue":
        return PhaseVerdict("partial", total, failed_units, f"{count} of {total} failed; on_failure: continue")
    if policy.mode == "tolerate":
        allowed = policy.max_failures if policy.max_failures is not None else _percent_allowed(policy, total)
        if count <= allowed:
            return PhaseVerdict("partial", total, failed_units, f"{count} of {total} failed, tolerated ({policy.describe()})")
        return PhaseVerdict("failed", total, failed_units, f"{count} of {total} failed, more than tolerated ({policy.describe()})")
    return PhaseVerdict("failed", total, failed_units, f"{count} of {total} failed; on_failure: fail_fast")


def _percent_allowed(policy: FailurePolicy, total: int) -> int:
    percent = policy.max_failure_percent or 0.0
    return int(total * percent / 100 + 1e-9)


def run_outcome(
    gates: Mapping[str, Mapping[str, Any] | None],
    gate_states: Mapping[str, str | None],
    task_states: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """The run's verdict from its phase gates: failed if any gate failed, partial if any was partial.

    With the states of every task of the run (keys as the execution API gives them), a phase whose
    gate failed although none of its own tasks did never ran (a phase before it failed): it goes to
    ``not_run_phases``, not ``failed_phases``. Failed tasks outside every phase (the preflight, a
    `finally` step) are named in ``failed_tasks``.
    """
    failed = sorted(p for p, s in gate_states.items() if s in FAILED)
    partial = sorted(p for p, v in gates.items() if v and v.get("outcome") == "partial")
    not_run: list[str] = []
    failed_tasks: list[str] = []
    if task_states is not None:
        failed_inside = {key.split(".", 1)[0] for key, state in task_states.items()
                         if "." in key and state == "failed" and key.split(".", 1)[0] + ".gate" != key}
        not_run = [p for p in failed if p not in failed_inside]
        failed = [p for p in failed if p in failed_inside]
        failed_tasks = sorted(k for k, s in task_states.items() if "." not in k and s == "failed")
    outcome = "failed" if failed or not_run else ("partial" if partial else "ok")
    return {"outcome": outcome, "failed_phases": failed, "partial_phases": partial, "not_run_phases": not_run,
            "failed_tasks": failed_tasks}


def run_note(result: Mapping[str, Any], attempt: int = 1, details: str = "", before: str | None = None) -> str | None:
    """The run's note (where the UI shows it) for the verdict of :func:`run_outcome`: names only the
    phases that failed; after a successful re-run, on which attempt the recovery succeeded and, from
    the note an earlier attempt left (``before``, when it is one of ours), how that attempt failed."""
    again = f" on attempt {attempt}" if attempt > 1 else ""
    if attempt > 1 and result["outcome"] != "failed" and before and before.startswith("FAILED"):
        note = run_note(result, attempt, details)
        return f"{note} (before: {before[:200]})" if note else None
    if result["outcome"] == "failed":
        where = [f"phase(s) {', '.join(result['failed_phases'])}"] if result["failed_phases"] else []
        where += [", ".join(result.get("failed_tasks") or [])] if result.get("failed_tasks") else []
        note = f"FAILED{again} in {'; '.join(where)}" if where else f"FAILED{again}"
        if result.get("not_run_phases"):
            note += f"; not run: {', '.join(result['not_run_phases'])}"
        return note
    if result["outcome"] == "partial":
        head = f"RECOVERED{again}, PARTIAL" if attempt > 1 else "PARTIAL recovery"
        return f"{head} - failures accepted in {details}"
    return f"RECOVERED on attempt {attempt}: every phase succeeded after the re-run" if attempt > 1 else None
