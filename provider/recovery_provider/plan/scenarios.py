"""The scenarios of a plan: which phases run for one combination of branch choices, and every
combination. Plain Python over the Plan (no Airflow)."""

from __future__ import annotations

from collections.abc import Iterator

from recovery_provider.plan.model import Plan


def active_phases(plan: Plan, choices: dict[str, str]) -> set[str]:
    """Phases that run: a root, or one with a running upstream; a branch target only if chosen."""
    active: set[str] = set()
    for phase in plan.phases:
        reached = not phase.upstream or any(up in active for up in phase.upstream)
        chosen = phase.chosen_by is None or (phase.chosen_by in active and choices.get(phase.chosen_by) == phase.id)
        if reached and chosen:
            active.add(phase.id)
    return active


def choice_sets(plan: Plan) -> Iterator[dict[str, str]]:
    """Every combination of choices of the branches that run, in phase and case order."""

    def walk(start: int, choices: dict[str, str]) -> Iterator[dict[str, str]]:
        for position in range(start, len(plan.phases)):
            phase = plan.phases[position]
            if phase.kind == "branch" and phase.id in active_phases(plan, choices):
                for target in dict.fromkeys(c.target for c in phase.choices):
                    yield from walk(position + 1, {**choices, phase.id: target})
                return
        yield choices

    return walk(0, {})
