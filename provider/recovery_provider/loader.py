"""Recovery specs of a folder as Airflow DAGs, and their errors as Airflow import errors.

Two fixed files in a dags folder, and nothing else per spec (the words "airflow" and "dag" must
appear in each: with [core] dag_discovery_safe_mode on, the default, Airflow skips files without):

    # recovery_dags.py: Airflow DAGs from the recovery specs
    from recovery_provider.loader import load_dags
    load_dags(__file__, "specs")

    # recovery_spec_errors.py: Airflow import errors of broken recovery specs (holds no DAG)
    from recovery_provider.loader import report_spec_errors
    report_spec_errors(__file__, "specs")

Why two files: Airflow 3 marks *every* DAG of a file that has an import error stale (hidden, and
refused when triggered). So the DAG file never raises and holds only the specs that Airflow will
accept; the errors file holds no DAG and raises one import error naming each broken spec with
file:line:column. Its error stales nothing and clears itself the first time the folder is clean.
Both files reach their verdict through `check_files`, the same call as `recovery validate`.

Parsing reads only the spec files: no database, no network. When a task starts, Airflow's
parsing context names its DAG, and only that spec is rendered.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recovery_provider.exceptions import SpecLoadErrors
from recovery_provider.spec.loader import SPEC_SUFFIXES, find_spec_files

if TYPE_CHECKING:
    from recovery_provider.plan.cache import PlanCache

NAMESPACE_PREFIX = "recovery_dag__"


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


def _folder(anchor: str, folder: str | Path) -> Path:
    return Path(folder) if Path(folder).is_absolute() else Path(anchor).resolve().parent / folder


def _running_dag_id() -> str | None:
    """The DAG a task process is starting (Airflow's parsing context), None in the dag-processor."""
    from airflow.sdk import get_parsing_context

    return get_parsing_context().dag_id


def plan_cache(*, read: bool) -> PlanCache | None:
    """``[recovery] plan_cache`` (env ``AIRFLOW__RECOVERY__PLAN_CACHE``), default
    ``$AIRFLOW_HOME/recovery-plan-cache``; ``off`` turns it off."""
    from airflow.sdk.configuration import conf

    from recovery_provider.plan.cache import PlanCache

    folder = conf.get("recovery", "plan_cache", fallback=None)
    if folder and folder.strip().lower() == "off":
        return None
    if not folder:
        folder = str(Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow") / "recovery-plan-cache")
    return PlanCache(Path(folder).expanduser(), read=read)


def judge_folder(root: Path, wanted: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The DAGs Airflow will accept from the specs under `root`, and each problem, formatted.

    With `wanted` (a task process), only the specs that may define that DAG are read, the
    serialization check is skipped (the dag-processor has made it already), and a plan compiled
    before from the same spec text is rendered as it is (plan/cache.py). The dag-processor
    compiles every spec itself and stores the plans for the tasks.
    """
    from recovery_provider.check import check_files

    if not root.is_dir():
        return {}, [f"{root}: error: the recovery specs folder does not exist: create it, or point load_dags at it [folder]"]
    paths = [p for p in find_spec_files([root]) if p.suffix in SPEC_SUFFIXES]
    if wanted is not None:
        paths = [p for p in paths if _dag_id_hint(p) in (wanted, None)]
    dags: dict[str, Any] = {}
    problems: list[str] = []
    cache = plan_cache(read=wanted is not None)
    for result in check_files(paths, lint=False, serialize=wanted is None, cache=cache):
        if result.dag is not None:
            dags[result.dag.dag_id] = result.dag
        problems += [d.format() for d in result.errors]
    return dags, problems


def load_dags(anchor: str, folder: str | Path = "specs", namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Put the DAG of every good spec under `folder` (relative to the file `anchor`) into `namespace`.

    Never raises: a broken spec is left out here and reported by `report_spec_errors`. Returns
    the DAGs by id.
    """
    target = namespace if namespace is not None else sys._getframe(1).f_globals
    try:
        dags, _ = judge_folder(_folder(anchor, folder), _running_dag_id())
    except Exception:  # a bug of ours must not take the folder's DAGs offline: the errors file says it
        return {}
    for dag_id, dag in dags.items():
        target[f"{NAMESPACE_PREFIX}{dag_id}"] = dag
    return dags


def report_spec_errors(anchor: str, folder: str | Path = "specs") -> None:
    """Raise SpecLoadErrors naming every broken spec under `folder`: Airflow's import error of this file.

    Call it from a dags-folder file that defines no DAG, so the import error stales no DAG.
    """
    if _running_dag_id() is not None:
        return  # a task process: this file has no DAG to run
    root = _folder(anchor, folder)
    try:
        _, problems = judge_folder(root)
    except Exception as exc:
        problems = [f"{root}: error: internal error of the recovery loader, please report it: {type(exc).__name__}: {exc}"]
    if problems:
        raise SpecLoadErrors(
            f"{len(problems)} problem(s) in the recovery specs under {root}; these specs have no DAG until "
            "fixed (every other spec's DAG is loaded). Check a spec before saving it: recovery validate FILE\n"
            + "\n".join(problems)
        )
