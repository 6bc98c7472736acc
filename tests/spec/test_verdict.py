"""One verdict: `recovery validate` says OK for a spec exactly when the loader gives it a DAG.

The loader side is Airflow's own: a DagBag over a dags folder holding the two loader files and
the one spec, then serialization as the dag-processor does it. Checked over the golden corpus,
the DAG pack and 300 mutants of the valid corpus.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from typer.testing import CliRunner

from recovery_provider.cli.main import app
from tests.unit.test_fuzz import mutated_texts

pytestmark = pytest.mark.spec

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CORPUS = sorted([*HERE.glob("valid/*.yaml"), *HERE.glob("invalid/*.yaml"), *HERE.glob("warnings/*.yaml"),
                 *(REPO / "dags" / "specs").glob("*.yaml")])
runner = CliRunner()


def validate_says_ok(spec: Path) -> bool:
    result = runner.invoke(app, ["validate", "--json", str(spec)], catch_exceptions=False)
    assert "Traceback" not in result.output
    return bool(json.loads(result.stdout)["ok"])


def loader_dags(spec: Path) -> tuple[list[Any], dict[str, str]]:
    """The DAGs Airflow's DagBag bags (and serializes) from a dags folder holding just this spec."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    with tempfile.TemporaryDirectory() as folder:
        dags = Path(folder)
        for name in ("recovery_dags.py", "recovery_spec_errors.py"):
            shutil.copyfile(REPO / "dags" / name, dags / name)
        (dags / "specs").mkdir()
        shutil.copyfile(spec, dags / "specs" / spec.name)
        bag = DagBag(str(dags), safe_mode=True, bundle_path=dags, bundle_name="dags-folder")
        for dag in bag.dags.values():
            DagSerialization.to_dict(dag)  # what the dag-processor does next; a failure would stale the file
        errors = dict(bag.import_errors)
        found = list(bag.dags.values())
    assert "recovery_dags.py" not in errors, errors["recovery_dags.py"]  # the DAG file never fails
    return found, errors


def assert_one_verdict(spec: Path) -> bool:
    ok = validate_says_ok(spec)
    dags, errors = loader_dags(spec)
    assert ok == bool(dags), f"validate says {'OK' if ok else 'refused'}, the loader made {len(dags)} DAG(s): {errors}"
    assert ok == (not errors), errors
    if not ok:
        assert "internal error" not in errors["recovery_spec_errors.py"], errors["recovery_spec_errors.py"]
        assert f"{spec.name}:" in errors["recovery_spec_errors.py"]  # located in the spec file
    return ok


@pytest.mark.parametrize("spec", CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_validate_and_the_loader_agree_on_the_corpus_and_the_pack(spec: Path) -> None:
    assert_one_verdict(spec)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mutated_texts())
def test_validate_and_the_loader_agree_on_mutants(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    spec = tmp_path_factory.mktemp("mutant") / "mutant.yaml"
    spec.write_text(text, encoding="utf-8", errors="surrogatepass")
    # about one mutant in eight still validates: both sides are exercised (--hypothesis-show-statistics)
    event("validate: OK" if assert_one_verdict(spec) else "validate: refused")
