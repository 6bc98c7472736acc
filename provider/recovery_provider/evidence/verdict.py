"""A run's verdict, its note and the plan's estimate for the path it took, decided as the run ends.

The listener that records the run decides them in the scheduler, from what Airflow stored: the
task states, the gates' verdicts (their return values), the branch choices, and the layout and
spec text the DAG carries. No task on the run's critical path does it (a worker task costs about a
second of the RTO). Nothing here imports Airflow.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recovery_provider.plan.layout import LAYOUT_DOC_KEY, OUTCOME
from recovery_provider.plan.model import Plan
from recovery_provider.render.policy import run_note, run_outcome

log = logging.getLogger(__name__)

LayoutRecord = Mapping[str, Sequence[Any]]  # plan.layout.layout_record: id -> [kind, phase, group, mapped_by, ...]
_EXIT_KINDS = ("gate", "branch", "approval")  # the task that ends each phase


@dataclass(frozen=True)
class RecordedDag:
    """What a generated DAG carries for the evidence of its runs (render/dag.py stores it)."""

    layout: LayoutRecord
    spec_text: str | None = None


def recorded_dag(dag: Any) -> RecordedDag | None:
    """The layout and spec text of the DAG version that ran: a task's doc_json, serialized with it.

    DAGs rendered before this kept the bare layout in the outcome task's doc_json.
    """
    tasks = getattr(dag, "task_dict", None) or {}
    for task in tasks.values():
        text = getattr(task, "doc_json", None)
        if isinstance(text, str) and LAYOUT_DOC_KEY in text[:40]:
            found = _json(text)
            if isinstance(found, Mapping) and isinstance(found.get(LAYOUT_DOC_KEY), Mapping):
                spec = found.get("spec")
                return RecordedDag(found[LAYOUT_DOC_KEY], spec if isinstance(spec, str) else None)
    old = _json(getattr(tasks.get(OUTCOME), "doc_json", None) or "null")
    return RecordedDag(old) if isinstance(old, Mapping) else None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Verdict:
    result: dict[str, Any]  # render.policy.run_outcome
    note: str | None  # for the DAG run's note, where the UI shows it
    plan: dict[str, Any] | None  # evidence.record.PlanEvidence fields


def judge_run(
    recorded: RecordedDag,
    states: Mapping[str, str | None],
    returns: Mapping[str, Any],
    *,
    attempt: int = 1,
    note_before: str | None = None,
) -> Verdict:
    """The verdict of an ended run.

    `states`: every task instance's state, keyed as the execution API keys them (``task_id``, or
    ``task_id_<map index>`` for a mapped one); `returns`: the return values of unmapped tasks.
    """
    exits = {str(row[1]): task_id for task_id, row in recorded.layout.items()
             if row and row[0] in _EXIT_KINDS and row[1] is not None}
    states = {k: v for k, v in states.items() if k != OUTCOME}
    verdicts: dict[str, Mapping[str, Any]] = {}
    for phase, task_id in exits.items():
        value = returns.get(task_id)
        if isinstance(value, Mapping) and "outcome" in value:  # a policy gate's (render/runtime.py gate)
            verdicts[phase] = value
    result = run_outcome(verdicts, {phase: states.get(task_id) for phase, task_id in exits.items()}, states)
    details = "; ".join(f"{phase}: {verdicts[phase].get('reason', '')}" for phase in result["partial_phases"])
    note = run_note(result, attempt, details, note_before if attempt > 1 else None)
    choices = {phase: str(next(iter(taken))).split(".", 1)[0] for phase, task_id in exits.items()
               if recorded.layout[task_id][0] == "branch" and (taken := returns.get(task_id))}
    return Verdict(result, note, _plan_evidence(recorded.spec_text, choices) if recorded.spec_text else None)


def _plan_evidence(spec_text: str, choices: Mapping[str, str]) -> dict[str, Any] | None:
    """The spec's estimate for the branch choices this run made (estimated once per run, here)."""
    from recovery_provider.exceptions import SpecError
    from recovery_provider.plan.compiler import compile_plan
    from recovery_provider.spec.loader import load_spec_text

    try:
        plan, problems = compile_plan(load_spec_text(spec_text).spec)
    except SpecError as exc:  # a DAG the loader accepted always compiles; say so if not, and go on
        log.warning("recovery evidence: the DAG's spec no longer loads: %s", exc)
        return None
    if plan is None:
        log.warning("recovery evidence: the DAG's spec no longer compiles: %s", problems)
        return None
    return plan_evidence(plan, choices)


def plan_evidence(plan: Plan, choices: Mapping[str, str]) -> dict[str, Any]:
    from recovery_provider.plan.estimate import estimate_plan

    estimate = estimate_plan(plan)
    scenario = next((s for s in estimate.scenarios if s.choices == dict(choices)), estimate.worst)
    objectives = plan.spec.objectives
    return {
        "planned_seconds": scenario.planned,
        "scenario": scenario.label,
        "critical_path": list(scenario.critical_path),
        "phase_windows": {k: list(v) for k, v in scenario.phase_windows.items()},
        "rto_seconds": objectives.rto.total_seconds() if objectives.rto else None,
        "rpo_seconds": objectives.rpo.total_seconds() if objectives.rpo else None,
        "assumptions": list(estimate.assumptions),
        "slow_step_factor": plan.spec.alerts.slow_step_factor,  # the ledger flags slow steps with these
        "min_samples": plan.spec.alerts.min_samples,
    }
