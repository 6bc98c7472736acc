"""Broken specs of every kind (tests/scheduler/specs_broken) and what the loader must say of each.

Shared by the unit tier (Airflow's DagBag), the scheduler tier (a real dag-processor) and the
demo test (beside the DAG pack).
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parents[1] / "scheduler" / "specs_broken"
GOOD_IDS = ("sched_good_neighbour", "sched_good_callable")
BROKEN_IDS = ("sched_broken", "sched_bad_yaml", "sched_bad_reference", "sched_bad_fanout", "sched_bad_callable", "sched_bad_import")
# file -> what its line of the errors file's import error says, from line:column on
EXPECTED = {
    "broken.yaml": ":5:30: error: phases[0].steps[0]: unknown key 'retires', did you mean 'retries'? [unknown-key]",
    "bad_yaml.yaml": ":5:1: error: YAML syntax:",
    "bad_reference.yaml": ":5:21: error: phase 'b' runs after 'nope', which does not exist [unknown-phase]",
    "bad_fanout.yaml": ":6:13: error: step 's': in fan-out phase 'fan' it neither takes 'target' nor uses {{ target }}",
    "bad_callable.yaml": ":6:9: error: step 's': python_callable 'json.no_such_function': module 'json' has no 'no_such_function'",
    "bad_import.yaml": ":6:9: error: step 's': cannot import operator 'no_such_package.operators:RestoreOperator'",
    "copy_of_neighbour.yaml": ":2:11: error: recovery id 'sched_good_neighbour' is already the DAG of ",
}
BROKEN_FILES = tuple(EXPECTED)


def assert_names_every_broken_spec(message: str, folder: Path) -> None:
    """The import error lists each broken spec of `folder` at file:line:column, and nothing internal."""
    assert f"{len(EXPECTED)} problem(s) in the recovery specs" in message, message
    for name, expected in EXPECTED.items():
        assert f"{folder / name}{expected}" in message, f"{name} not reported as expected in:\n{message}"
    assert "internal error" not in message


def fixed_text() -> str:
    """broken.yaml with its typo fixed (and a timeout, so it lints clean)."""
    return (FOLDER / "broken.yaml").read_text().replace("retires: 2", "retries: 2, timeout: 1m")
