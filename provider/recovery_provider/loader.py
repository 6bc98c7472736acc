"""Load every recovery spec of a folder as Airflow DAGs: one line in a dags-folder Python file.

    # Airflow DAGs from recovery specs (the words "airflow" and "dag" must appear in this file:
    # with [core] dag_discovery_safe_mode on, the default, Airflow skips files without them)
    from recovery_provider.loader import load_dags
    load_dags(__file__, "specs")          # or an absolute folder of an existing deployment

A broken spec never hides the others: it is reported as an import error of the loader file,
naming the spec file, line and column (Airflow shows it on the DAGs page), while every valid spec
still becomes a DAG. Parsing reads only the spec files: no database, no network. When a
task starts, Airflow's parsing context names its DAG, and only that spec is rendered.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from recovery_provider.exceptions import RecoveryError
from recovery_provider.spec.loader import SPEC_SUFFIXES, find_spec_files


class SpecLoadErrors(RecoveryError):
    """The broken specs of a folder, as Airflow shows them: an import error of the loader file."""


def _dag_id_hint(path: Path) -> str | None:
    """The `recovery:` id without a full parse, to skip specs the running task does not need."""
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("recovery:"):
                    return line.split(":", 1)[1].split("#", 1)[0].strip().strip("'\"") or None
    except (OSError, UnicodeDecodeError):
        return None
    return None


def load_dags(anchor: str, folder: str | Path = "specs", namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Render every spec under `folder` (relative to the file `anchor`) into `namespace`.

    Returns the DAGs by id. Raises SpecLoadErrors after registering the good DAGs when any spec
    is broken, which Airflow shows as an import error with every broken spec listed.
    """
    from airflow.sdk import get_parsing_context

    from recovery_provider.exceptions import SpecError
    from recovery_provider.plan.compiler import compile_plan
    from recovery_provider.render.dag import build_dag
    from recovery_provider.spec.loader import load_spec

    base = Path(anchor).resolve().parent
    root = (base / folder) if not Path(folder).is_absolute() else Path(folder)
    target = namespace if namespace is not None else sys._getframe(1).f_globals
    wanted = get_parsing_context().dag_id
    dags: dict[str, Any] = {}
    problems: list[str] = []
    for path in find_spec_files([root]):
        if path.suffix not in SPEC_SUFFIXES:
            continue
        if wanted is not None and _dag_id_hint(path) not in (wanted, None):
            continue
        try:
            # Parsing needs the plan only: lint and estimates belong to `recovery validate`/`plan`.
            loaded = load_spec(path)
            plan, diagnostics = compile_plan(loaded.spec)
            errors = [loaded.locate(d) for d in diagnostics if d.severity == "error"]
            if plan is None or errors:
                raise SpecError(errors)
            dag = build_dag(plan, str(path))
        except SpecError as exc:
            problems += [d.format() for d in exc.diagnostics if d.severity == "error"]
            continue
        except RecoveryError as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:  # a bug of ours in one spec must not hide the other DAGs
            problems.append(f"{path}: internal error while rendering: {type(exc).__name__}: {exc}")
            continue
        dags[dag.dag_id] = dag
        target[f"recovery_dag__{dag.dag_id}"] = dag
    if problems:
        message = f"{len(problems)} problem(s) in recovery specs under {root}:\n" + "\n".join(problems)
        target["recovery_dag__broken_specs"] = _broken_specs_sentinel(message)
    return dags


def _broken_specs_sentinel(message: str) -> Any:
    """A DAG that fails Airflow's validation with `message`.

    Airflow records a DAG that fails `validate()` as an import error of the loader file and still
    bags every other DAG of that file; raising from the file itself would drop them all.
    """
    from airflow.sdk import DAG

    class BrokenRecoverySpecs(DAG):
        def validate(self) -> None:
            raise SpecLoadErrors(message)

    return BrokenRecoverySpecs(dag_id="recovery_broken_specs", schedule=None, description=message.splitlines()[0])
