"""One call from a spec file to everything known about it: spec, plan, diagnostics, estimate, DAG.

The single verdict on a spec: `recovery validate` and the DAG loader both call `check_files`, so a
spec that validates is a spec the loader turns into a DAG, and the other way round. Never raises
for bad input: problems come back as located diagnostics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recovery_provider.exceptions import RenderError, SpecError
from recovery_provider.plan.model import Plan
from recovery_provider.spec.diagnostics import Diagnostic, Location
from recovery_provider.spec.durations import format_duration

if TYPE_CHECKING:  # loading, lint and estimates are off a task's start when its plan is cached
    from recovery_provider.plan.cache import PlanCache
    from recovery_provider.plan.estimate import Estimate
    from recovery_provider.spec.loader import LoadedSpec


@dataclass
class CheckedSpec:
    file: str
    loaded: LoadedSpec | None = None
    plan: Plan | None = None
    estimate: Estimate | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    dag: Any = None  # the Airflow DAG, when rendered and accepted

    @property
    def spec_id(self) -> str | None:
        if self.loaded is not None:
            return self.loaded.spec.id
        return self.plan.id if self.plan is not None else None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


def check_loaded(loaded: LoadedSpec, *, lint: bool = True, render: bool = True, serialize: bool = True) -> CheckedSpec:
    """Compile a spec that loaded; lint and estimate it; render it as the loader does.

    Every finding is located in its file. Lint and estimates only warn, so the loader skips them;
    `render` (importing Airflow) is what makes this the loader's own verdict.
    """
    from recovery_provider.plan.compiler import compile_plan

    checked = CheckedSpec(loaded.file, loaded)
    plan, problems = compile_plan(loaded.spec)
    if plan is not None and not any(p.severity == "error" for p in problems):
        checked.plan = plan
        if lint:
            from recovery_provider.plan.estimate import estimate_plan
            from recovery_provider.plan.lint import lint_plan

            problems += lint_plan(plan)
            checked.estimate = estimate_plan(plan)
            problems += _rto_findings(checked.estimate, plan)
        if render:
            from recovery_provider.render.accept import accepted_dag

            try:
                checked.dag = accepted_dag(plan, loaded.file, serialize=serialize, spec_text=loaded.source.text)
            except RenderError as exc:
                problems.append(Diagnostic("error", "render", exc.message, path=exc.path))
    checked.diagnostics = sorted(
        (loaded.locate(p) for p in problems),
        key=lambda d: (d.location.line, d.location.column) if d.location else (0, 0),
    )
    return checked


def _rto_findings(estimate: Estimate, plan: Plan) -> list[Diagnostic]:
    rto = plan.spec.objectives.rto
    if rto is None or estimate.verdict != "exceeds":
        return []
    worst = estimate.worst
    found = [Diagnostic(
        "warning", "plan-beyond-rto",
        f"the planned time {format_duration(worst.planned)} ({worst.label}) exceeds the RTO of "
        f"{format_duration(rto)}: run `recovery plan` to see the critical path and what a cap costs",
        path=("objectives", "rto"),
    )]
    for phase in plan.phases:
        window = worst.phase_windows.get(phase.id)
        if window and window[1] - window[0] > rto.total_seconds():
            found.append(Diagnostic(
                "warning", "phase-beyond-rto",
                f"phase '{phase.id}' alone is planned to take {format_duration(window[1] - window[0])}, beyond the RTO of {format_duration(rto)}",
                path=phase.path,
            ))
    return found


def check_file(
    path: str | Path, *, lint: bool = True, render: bool = True, serialize: bool = True, cache: PlanCache | None = None,
) -> CheckedSpec:
    """`check_loaded` of one file. With `cache` (the DAG loader), a plan compiled before from the
    same text and code is rendered without loading the spec again, and a new good plan is kept."""
    from recovery_provider.spec.loader import load_spec

    if cache is not None and cache.read and render and not lint:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass  # load_spec says what is wrong
        else:
            cached = _render_cached(str(path), text, cache, serialize)
            if cached is not None:
                return cached
    try:
        checked = check_loaded(load_spec(path), lint=lint, render=render, serialize=serialize)
    except SpecError as exc:
        return CheckedSpec(str(path), diagnostics=exc.diagnostics)
    if cache is not None and checked.dag is not None and checked.plan is not None and checked.ok:
        assert checked.loaded is not None
        cache.put(checked.loaded.source.text, checked.plan)
    return checked


def _render_cached(file: str, text: str, cache: PlanCache, serialize: bool) -> CheckedSpec | None:
    """The spec's DAG from its cached plan; None (compile it) on a miss or if it no longer renders."""
    from recovery_provider.render.accept import accepted_dag

    plan = cache.get(text)
    if plan is None:
        return None
    try:
        dag = accepted_dag(plan, file, serialize=serialize, spec_text=text)
    except RenderError:
        return None  # e.g. an operator's code changed: the full path locates the problem
    return CheckedSpec(file, plan=plan, dag=dag)


def _check_guarded(path: Path, **options: Any) -> CheckedSpec:
    """check_file, with a bug of ours reported against this spec alone (never a traceback)."""
    try:
        return check_file(path, **options)
    except Exception as exc:
        return CheckedSpec(str(path), diagnostics=[Diagnostic(
            "error", "internal", f"internal error of the recovery provider, please report it: {type(exc).__name__}: {exc}",
            location=Location(str(path), 1, 1),
        )])


def check_files(
    paths: Sequence[Path], *, lint: bool = True, render: bool = True, serialize: bool = True, cache: PlanCache | None = None,
) -> list[CheckedSpec]:
    """`check_file` for each, then one owner per recovery id: a DAG id names one DAG.

    The owner is the spec whose file is named after its id (dags/specs/database_failover.yaml for
    `recovery: database_failover`), else the first by path, so a copy saved beside a pack spec
    never takes that DAG offline. The other claimants are refused with an error naming the owner.
    """
    results = [_check_guarded(p, lint=lint, render=render, serialize=serialize, cache=cache) for p in paths]
    claims: dict[str, list[tuple[Path, CheckedSpec]]] = defaultdict(list)
    for path, result in zip(paths, results, strict=True):
        if result.ok and result.spec_id is not None:
            claims[result.spec_id].append((Path(path), result))
    for spec_id, claimants in claims.items():
        if len(claimants) < 2:
            continue
        claimants.sort(key=lambda claim: (claim[0].stem != spec_id, str(claim[0])))
        owner = claimants[0][0]
        for _, result in claimants[1:]:
            result.dag = None
            refused = Diagnostic(
                "error", "duplicate-id",
                f"recovery id '{spec_id}' is already the DAG of {owner}: give this spec its own `recovery:` id",
                path=("recovery",),
            )
            # a plan from the cache (task processes only) has no source map: point at the file
            located = result.loaded.locate(refused) if result.loaded else replace(refused, location=Location(result.file, 1, 1))
            result.diagnostics.insert(0, located)
    return results


def check_text(text: str, file: str = "<spec>") -> CheckedSpec:
    from recovery_provider.spec.loader import load_spec_text

    try:
        return check_loaded(load_spec_text(text, file))
    except SpecError as exc:
        return CheckedSpec(file, diagnostics=exc.diagnostics)
