"""The compiled-plan cache of task starts: a hit renders the same DAG as compiling, and an entry is
never used for other text, other code, or from a folder someone else can write."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from recovery_provider.check import check_file
from recovery_provider.plan.cache import MAX_ENTRIES, PlanCache
from recovery_provider.plan.model import Plan
from tests.spec.test_layout_corpus import CORPUS, shape

pytestmark = pytest.mark.unit

PACK = Path(__file__).resolve().parents[2] / "dags" / "specs"


def restore_drill() -> tuple[str, Plan]:
    """A pack spec's text and its compiled plan."""
    checked = check_file(PACK / "restore_drill.yaml", lint=False, serialize=False)
    assert checked.plan is not None and checked.loaded is not None
    return checked.loaded.source.text, checked.plan


def dag_description(dag: Any) -> tuple[Any, ...]:
    """What a task start needs identical: tasks, kinds, edges, trigger rules, mapping, the carried layout."""
    kinds, edges = shape(dag)
    tasks = {t.task_id: (type(t).__name__, str(t.trigger_rule), t.retries, t.execution_timeout, t.pool,
                         t.get_closest_mapped_task_group() is not None, t.doc_json) for t in dag.tasks}
    return kinds, edges, tasks, dag.params.dump(), dag.max_active_tasks, dag.doc_md


@pytest.mark.parametrize("spec", CORPUS, ids=lambda p: p.stem)
def test_a_cached_plan_renders_the_dag_a_compiled_one_does(spec: Path, tmp_path: Path) -> None:
    writer, reader = PlanCache(tmp_path, read=False), PlanCache(tmp_path)
    compiled = check_file(spec, lint=False, serialize=False, cache=writer)
    assert compiled.dag is not None and compiled.loaded is not None
    assert writer.get(compiled.loaded.source.text) is None  # a writer never reads
    cached = check_file(spec, lint=False, serialize=False, cache=reader)
    assert cached.loaded is None, "the plan came from the cache, not from loading the spec"
    assert cached.plan == compiled.plan
    assert dag_description(cached.dag) == dag_description(compiled.dag)


def test_an_entry_is_used_only_for_the_same_text_and_the_same_code(tmp_path: Path) -> None:
    text, plan = restore_drill()
    cache = PlanCache(tmp_path / "plans")
    cache.put(text, plan)
    assert cache.get(text) == plan
    assert cache.get(text + "\n# edited\n") is None
    upgraded = PlanCache(tmp_path / "plans")
    upgraded._fingerprint = "another version of the provider"
    assert upgraded.get(text) is None


def test_an_edited_spec_is_compiled_again_at_task_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recovery_provider.loader as loader

    monkeypatch.setenv("AIRFLOW__RECOVERY__PLAN_CACHE", str(tmp_path / "plans"))
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copyfile(PACK / "restore_drill.yaml", specs / "restore_drill.yaml")
    assert "restore_drill" in loader.load_dags(str(tmp_path / "dags.py"), "specs", {})  # the dag-processor stores
    assert len(list((tmp_path / "plans").glob("*.pickle"))) == 1

    monkeypatch.setattr(loader, "_running_dag_id", lambda: "restore_drill")
    import recovery_provider.spec.loader as spec_loader

    def no_loading(*args: Any) -> Any:
        raise AssertionError("a task start with a cached plan loads no spec")

    with monkeypatch.context() as patched:
        patched.setattr(spec_loader, "load_spec", no_loading)
        assert loader.load_dags(str(tmp_path / "dags.py"), "specs", {})["restore_drill"].dag_id == "restore_drill"

    spec = specs / "restore_drill.yaml"
    spec.write_text(spec.read_text().replace("description: Restore the newest", "description: Edited since. Restore the newest"))
    assert loader.load_dags(str(tmp_path / "dags.py"), "specs", {})["restore_drill"].description.startswith("Edited since.")
    assert len(list((tmp_path / "plans").glob("*.pickle"))) == 2


def test_a_folder_others_can_write_is_neither_read_nor_written(tmp_path: Path) -> None:
    text, plan = restore_drill()
    cache = PlanCache(tmp_path / "plans")
    cache.put(text, plan)
    os.chmod(tmp_path / "plans", 0o777)
    assert cache.get(text) is None
    shared = PlanCache(tmp_path / "plans")
    shared._fingerprint = "other"
    shared.put(text, plan)
    assert len(list((tmp_path / "plans").glob("*.pickle"))) == 1


def test_a_damaged_entry_is_a_miss_not_an_error(tmp_path: Path) -> None:
    text = (PACK / "restore_drill.yaml").read_text()
    cache = PlanCache(tmp_path / "plans")
    (tmp_path / "plans").mkdir(mode=0o700)
    (tmp_path / "plans" / f"{cache.key(text)}.pickle").write_bytes(b"not a pickle")
    assert cache.get(text) is None
    checked = check_file(PACK / "restore_drill.yaml", lint=False, serialize=False, cache=cache)
    assert checked.dag is not None and checked.loaded is not None  # compiled instead


def test_the_cache_keeps_a_bounded_number_of_entries(tmp_path: Path) -> None:
    _, plan = restore_drill()
    cache = PlanCache(tmp_path / "plans")
    for i in range(MAX_ENTRIES + 1):
        cache.put(f"# version {i}", plan)
    assert len(list((tmp_path / "plans").glob("*.pickle"))) <= MAX_ENTRIES // 2 + 1
    assert cache.get(f"# version {MAX_ENTRIES}") == plan  # the newest is kept


def test_off_turns_the_cache_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from recovery_provider.loader import plan_cache

    monkeypatch.setenv("AIRFLOW__RECOVERY__PLAN_CACHE", "off")
    assert plan_cache(read=True) is None
