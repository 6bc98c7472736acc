"""The `recovery` command: validate, plan, render specs and publish their schema.

`validate` renders each spec as the DAG loader does (importing Airflow, a second or two), so its
verdict is the loader's; the other commands stay Airflow-free and answer in well under a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from recovery_provider.check import CheckedSpec, check_file, check_files
from recovery_provider.cli import output
from recovery_provider.exceptions import RecoveryError
from recovery_provider.plan.estimate import Estimate
from recovery_provider.spec.loader import find_spec_files

app = typer.Typer(
    name="recovery",
    help="Recovery workflows for Airflow: validate, plan and render recovery specs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = output.wide_console()
errors = output.wide_console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
LedgerOption = Annotated[str | None, typer.Option(
    envvar="AIRFLOW__RECOVERY__LEDGER_LOCATION",
    help="Where the ledger is: a folder, file:// or s3://conn@bucket/prefix. Default: $AIRFLOW_HOME/recovery-ledger.",
)]


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Spec files or folders (searched for *.yaml, *.yml).")],
    strict: Annotated[bool, typer.Option(help="Warnings fail too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Check specs as the DAG loader does: YAML, schema, references, rendering, ids; lint and RTO. Exit 1 on errors."""
    missing = [p for p in paths if not p.exists()]
    files = find_spec_files([p for p in paths if p.exists()])
    _import_like_airflow()
    results = check_files(files)
    failed = [r for r in results if r.errors or (strict and r.warnings)]
    if as_json:
        _emit_json({
            "files": [{"file": r.file, "ok": r.ok, "diagnostics": [d.to_json() for d in r.diagnostics]} for r in results],
            "missing": [str(p) for p in missing],
            "ok": not failed and not missing and bool(results),
        })
    else:
        output.print_validation(console, results, missing, strict)
    if failed or missing or not results:
        raise typer.Exit(1)


def _import_like_airflow() -> None:
    """Let specs import a team's operators from where Airflow finds them: the dags and plugins folders."""
    with contextlib.suppress(Exception):
        from airflow.configuration import conf

        for option in ("dags_folder", "plugins_folder"):
            folder = conf.get("core", option, fallback=None)
            if folder and os.path.isdir(folder) and folder not in sys.path:
                sys.path.append(folder)


def _checked_or_exit(spec: Path, as_json: bool) -> CheckedSpec:
    checked = check_file(spec, render=False)  # plan and render explain a spec; validate judges it
    if checked.errors or checked.plan is None or checked.estimate is None:
        if as_json:
            _emit_json({"file": checked.file, "ok": False, "diagnostics": [d.to_json() for d in checked.diagnostics]})
        else:
            output.print_validation(console, [checked], [], strict=False)
        raise typer.Exit(1)
    return checked


@app.command()
def plan(
    spec: Annotated[Path, typer.Argument(help="The spec file.")],
    as_json: JsonFlag = False,
    width: Annotated[int, typer.Option(help="Width of the Gantt bars.")] = 48,
    calibrate: Annotated[bool, typer.Option(
        "--calibrate", help="Also the time to expect on this deployment: the overheads and step durations the run ledger measured.",
    )] = False,
    ledger: LedgerOption = None,
) -> None:
    """Phases, steps, critical path and estimates (sequential vs planned vs RTO), with a text Gantt."""
    checked = _checked_or_exit(spec, as_json)
    assert checked.plan is not None and checked.estimate is not None
    calibrated = _calibrated(checked, ledger) if calibrate else None
    if as_json:
        found = output.plan_json(checked.plan, checked.estimate, checked.diagnostics)
        if calibrate:
            found["calibrated"] = output.calibrated_json(calibrated)
        _emit_json(found)
    else:
        output.print_plan(console, checked.plan, checked.estimate, checked.diagnostics, width, calibrated)


def _calibrated(checked: CheckedSpec, location: str | None) -> Estimate | None:
    """The plan estimated with what the ledger measured; None (and a warning) when it measured nothing."""
    from recovery_provider.evidence.calibration import load_calibration
    from recovery_provider.evidence.ledger import Ledger
    from recovery_provider.plan.estimate import estimate_plan

    assert checked.plan is not None
    with _stdout_to_stderr():  # Airflow logs to stdout when it opens an s3:// ledger
        store = Ledger(location)
        calibration = load_calibration(store, checked.plan.id)
    if not calibration.latency:
        errors.print(f"[yellow]warning:[/] no run in the ledger at {store.location} to calibrate from: run a recovery DAG "
                     "on this deployment first (or point --ledger at its ledger); showing the spec's own estimate", soft_wrap=True)
        return None
    return estimate_plan(checked.plan, calibration=calibration)


@app.command()
def render(
    spec: Annotated[Path, typer.Argument(help="The spec file.")],
    as_json: JsonFlag = False,
) -> None:
    """The resolved spec: every default applied, every inherited setting and dependency spelled out."""
    checked = _checked_or_exit(spec, as_json)
    assert checked.plan is not None
    resolved = output.resolved_spec(checked.plan)
    if as_json:
        _emit_json(resolved)
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="The spec reference as markdown instead.")] = False,
) -> None:
    """The JSON Schema of the spec language, for editors (yaml-language-server) and CI checks."""
    from recovery_provider.spec.schema import reference_markdown, schema_json

    text = reference_markdown() if markdown else schema_json()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        errors.print(f"wrote {out}")


pools_app = typer.Typer(help="Pools that specs declare.", no_args_is_help=True)
app.add_typer(pools_app, name="pools")


@pools_app.command("sync")
def pools_sync(
    paths: Annotated[list[Path], typer.Argument(help="Spec files or folders.")],
    url: Annotated[str, typer.Option(envvar="RECOVERY_AIRFLOW_URL", help="Airflow api-server URL.")] = "http://localhost:8080",
    username: Annotated[str, typer.Option(envvar="RECOVERY_AIRFLOW_USERNAME", help="Airflow user.")] = "admin",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")] = False,
) -> None:
    """Create or resize the pools the specs declare, through Airflow's REST API.

    The password comes from RECOVERY_AIRFLOW_PASSWORD, never from the command line.
    """
    from recovery_provider.airflow_api import AirflowApi

    # A broken spec never blocks the pools of the others (its DAG is not loaded either): sync the
    # good specs' pools, name the broken ones, and exit 1 at the end.
    wanted, problems = declared_pools(find_spec_files(paths))
    for problem in problems:
        errors.print(f"[red]error:[/] {problem}", soft_wrap=True)
    api = AirflowApi(url, username, os.environ.get("RECOVERY_AIRFLOW_PASSWORD"))
    for name, (slots, description, source) in sorted(wanted.items()):
        if dry_run:
            current = api.pool(name)
            change = "create" if current is None else ("unchanged" if current.get("slots") == slots else f"resize {current.get('slots')} -> {slots}")
            console.print(f"{name}: {change} ({slots} slots, from {source}) [dry run]")
        else:
            console.print(f"{name}: {api.ensure_pool(name, slots, description)} ({slots} slots, from {source})")
    if not wanted:
        console.print("no pools declared")
    if problems:
        raise typer.Exit(1)


def declared_pools(files: list[Path]) -> tuple[dict[str, tuple[int, str, str]], list[str]]:
    """Every pool the specs declare; two specs that disagree on a pool's slots are an error."""
    wanted: dict[str, tuple[int, str, str]] = {}
    problems: list[str] = []
    for checked in (check_file(f, lint=False, render=False) for f in files):
        if checked.loaded is None or checked.errors:
            problems += [d.format() for d in checked.errors]
            continue
        for name, pool in checked.loaded.spec.pools.items():
            previous = wanted.get(name)
            if previous is not None and previous[0] != pool.slots:
                problems.append(f"pool '{name}' is declared with {previous[0]} slots in {previous[2]} and {pool.slots} in {checked.file}: make them agree")
            wanted.setdefault(name, (pool.slots, pool.description, checked.file))
    return wanted, problems


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send whatever writes to file descriptor 1 (loggers that kept a handle on it) to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@app.command()
def report(
    dag_id: Annotated[str, typer.Argument(help="The recovery DAG (the spec's `recovery` id).")],
    run_id: Annotated[str | None, typer.Argument(help="One run; without it, every recorded run and the trend.")] = None,
    ledger: LedgerOption = None,
    as_json: JsonFlag = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the run's report page to this file.")] = None,
) -> None:
    """Show what a recovery run did against its RTO/RPO, from the run ledger the plugin keeps."""
    from recovery_provider.cli.evidence_output import print_report, print_trend
    from recovery_provider.evidence.calibration import load_calibration
    from recovery_provider.evidence.ledger import Ledger
    from recovery_provider.evidence.report import build_report, build_trend

    with _stdout_to_stderr():  # Airflow logs to stdout when it opens an s3:// ledger; stdout is the report's
        store = Ledger(ledger)
        records = store.runs(dag_id) if run_id is None else [store.read(dag_id, run_id)]
        calibration = load_calibration(store, dag_id, exclude=run_id) if run_id is not None else None
    if run_id is None:
        if not records:
            known = ", ".join(store.dag_ids()) or "none"
            raise RecoveryError(f"no recorded runs of '{dag_id}' in the ledger at {store.location} (DAGs recorded: {known})")
        trend = build_trend(dag_id, records)
        if as_json:
            _emit_json(trend.model_dump(mode="json"))
        else:
            print_trend(console, trend)
        return
    result = build_report(records[0], calibration)
    if html is not None:
        from recovery_provider.evidence.html import report_html

        html.write_text(report_html(result))
    if as_json:
        _emit_json(result.model_dump(mode="json"))
    else:
        print_report(console, result)


breaker_app = typer.Typer(help="Circuit breakers of recovery DAGs (spec: circuit_breaker), from the ledger's history.",
                          no_args_is_help=True)
app.add_typer(breaker_app, name="breaker")


@breaker_app.command("reset")
def breaker_reset(
    dag_id: Annotated[str, typer.Argument(help="The recovery DAG.")],
    name: Annotated[str, typer.Argument(help="The breaker: a branch case's phase, or a step as phase.step.")],
    ledger: LedgerOption = None,
) -> None:
    """Close a circuit breaker: failures recorded before now no longer count."""
    from recovery_provider.evidence.history import known_paths, reset_breaker
    from recovery_provider.evidence.ledger import Ledger

    with _stdout_to_stderr():
        store = Ledger(ledger)
        known = known_paths(store.read_history(dag_id))
        if name not in known:
            raise RecoveryError(f"'{name}' has no history in '{dag_id}' at {store.location}: "
                                f"known phases and steps: {', '.join(known) or 'none (no run recorded yet)'}")
        reset_breaker(store, dag_id, name)
    console.print(f"circuit breaker '{name}' of {dag_id} reset: earlier failures no longer count", markup=False)


@breaker_app.command("status")
def breaker_status(dag_id: Annotated[str, typer.Argument(help="The recovery DAG.")], ledger: LedgerOption = None,
                   as_json: JsonFlag = False) -> None:
    """Recent results of each phase and step of a DAG, newest last, with the failures that count."""
    from recovery_provider.evidence.history import recent_results
    from recovery_provider.evidence.ledger import Ledger

    with _stdout_to_stderr():
        rows = recent_results(Ledger(ledger).read_history(dag_id))
    if as_json:
        import dataclasses

        _emit_json([dataclasses.asdict(row) for row in rows])
        return
    for row in rows:
        console.print(f"{row.name}: {' '.join(row.results) or '-'}; failures since the last success {row.streak}"
                      + (f" (reset {row.reset_at})" if row.reset_at else ""), markup=False)


def main() -> None:
    """Console entry point: user errors are one clear line, never a traceback."""
    try:
        app()
    except RecoveryError as exc:
        errors.print(f"[red]error:[/] {exc}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug of ours: say so plainly, keep the traceback behind a switch
        if os.environ.get("RECOVERY_DEBUG"):
            raise
        errors.print(f"[red]internal error:[/] {type(exc).__name__}: {exc}\nRe-run with RECOVERY_DEBUG=1 for details and report it.")
        sys.exit(70)


if __name__ == "__main__":
    main()
