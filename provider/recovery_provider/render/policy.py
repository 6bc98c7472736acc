"""Run-time decisions of generated DAGs, as plain functions of task states.

The gate task of each phase, the fan-out resolver and the run's outcome task call these; keeping
them free of Airflow makes every failure-policy case testable in microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from recovery_provider.plan.targets import mentions_target as mentions_target
from recovery_provider.plan.targets import substitute_target as substitute_target
from recovery_provider.spec.models import FailurePolicy

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


def run_outcome(gates: Mapping[str, Mapping[str, Any] | None], gate_states: Mapping[str, str | None]) -> dict[str, Any]:
    """The run's verdict from its phase gates: failed if any gate failed, partial if any was partial."""
    failed = sorted(p for p, s in gate_states.items() if s in FAILED)
    partial = sorted(p for p, v in gates.items() if v and v.get("outcome") == "partial")
    outcome = "failed" if failed else ("partial" if partial else "ok")
    return {"outcome": outcome, "failed_phases": failed, "partial_phases": partial}
