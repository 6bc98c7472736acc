"""The provider info Airflow discovers: complete (every module listed), valid against Airflow's own
schemas, and its connection types backed by hooks that the real providers manager accepts."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import recovery_provider
from recovery_provider import get_provider_info
from recovery_provider.exceptions import RecoveryError
from recovery_provider.provider_info import CONNECTION_TYPES, INTEGRATIONS, MODULES

pytestmark = pytest.mark.unit

PACKAGE = Path(recovery_provider.__file__).parent
KINDS = ("hooks", "operators", "sensors", "triggers")


def airflow_schema(name: str) -> dict[str, Any]:
    import airflow

    found = json.loads((Path(airflow.__file__).parent / name).read_text())
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_every_module_of_each_kind_is_listed_and_imports(kind: str) -> None:
    on_disk = {
        f"recovery_provider.{kind}.{path.stem}" for path in (PACKAGE / kind).glob("*.py") if path.stem != "__init__"
    }
    listed = [module for modules in MODULES[kind].values() for module in modules]
    assert len(listed) == len(set(listed)), f"{kind}: a module is listed twice"
    missing = sorted(on_disk - set(listed))
    assert not missing, f"add {missing} to MODULES[{kind!r}] in recovery_provider/provider_info.py"
    assert not sorted(set(listed) - on_disk), f"{kind}: listed modules that do not exist"
    for module in listed:
        importlib.import_module(module)
    assert set(MODULES[kind]) <= set(INTEGRATIONS), f"{kind}: an integration is missing from INTEGRATIONS"


def test_info_is_valid_for_airflow_and_names_this_distribution() -> None:
    import jsonschema

    info = get_provider_info()
    jsonschema.validate(info, airflow_schema("provider_info.schema.json"))
    assert info["package-name"] == importlib.metadata.metadata("airflow-provider-recovery")["Name"]
    assert info["versions"] == [recovery_provider.__version__] == [importlib.metadata.version("airflow-provider-recovery")]
    used = {i["integration-name"] for kind in KINDS for i in info[kind]}
    assert used == {i["integration-name"] for i in info["integrations"]} == set(INTEGRATIONS)
    urls = importlib.metadata.metadata("airflow-provider-recovery").get_all("Project-URL") or []
    assert any(u.lower().startswith("documentation, https://") for u in urls), urls


@pytest.mark.parametrize("entry", CONNECTION_TYPES, ids=lambda e: e["connection-type"])
def test_connection_types_match_their_hook_classes(entry: dict[str, Any]) -> None:
    import jsonschema
    from airflow.sdk import BaseHook

    module, _, name = entry["hook-class-name"].rpartition(".")
    hook = getattr(importlib.import_module(module), name)
    assert issubclass(hook, BaseHook)
    assert hook.conn_type == entry["connection-type"]
    assert hook.hook_name == entry["hook-name"]
    assert hook.conn_name_attr and hook.default_conn_name
    assert callable(getattr(hook, "test_connection", None))
    behaviour = entry["ui-field-behaviour"]
    jsonschema.validate(
        {"hidden_fields": behaviour["hidden-fields"], "relabeling": behaviour["relabeling"], "placeholders": behaviour["placeholders"]},
        airflow_schema("customized_form_field_behaviours.schema.json"),
    )
    assert "get_ui_field_behaviour" not in hook.__dict__, "declared in provider info (deprecated on hooks in 3.2)"


def test_airflows_providers_manager_registers_hooks_forms_and_config() -> None:
    """The real ProvidersManager, in a fresh interpreter, as `airflow providers hooks` would see it."""
    code = """
import json
from airflow.providers_manager import ProvidersManager
pm = ProvidersManager()
info = pm.providers["airflow-provider-recovery"]
out = {"version": info.version, "docs": info.data.get("documentation-url"), "hooks": {}}
for conn_type in ("recovery_backup_store", "recovery_airflow_api"):
    hook = pm.hooks[conn_type]
    out["hooks"][conn_type] = [hook.hook_class_name, hook.hook_name, hook.connection_testable]
out["behaviours"] = {k: v for k, v in pm.field_behaviours.items() if k.startswith("recovery_")}
out["widgets"] = sorted(k for k in pm.connection_form_widgets if "recovery_" in k)
out["config"] = sorted(dict(pm.provider_configs).get("airflow-provider-recovery", {}))
from airflow.configuration import conf
out["ledger_location"] = conf.get("recovery", "ledger_location")
# what the UI's connection form is built from (GET /ui/connections/hook_meta)
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
out["forms"] = {h.connection_type: json.loads(h.model_dump_json()) for h in HookMetaService.hook_meta_data()
                if (h.connection_type or "").startswith("recovery_")}
print(json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["version"] == recovery_provider.__version__
    assert found["docs"].startswith("https://")
    assert found["hooks"] == {
        "recovery_backup_store": ["recovery_provider.hooks.backup_store.BackupStoreHook", "Recovery backup store", True],
        "recovery_airflow_api": ["recovery_provider.hooks.airflow_api.AirflowApiHook", "Airflow REST API (recovery)", True],
    }
    assert "host" in found["behaviours"]["recovery_backup_store"]["hidden_fields"]
    assert found["behaviours"]["recovery_airflow_api"]["relabeling"]["host"] == "API server URL"
    assert found["widgets"] == ["extra__recovery_backup_store__location"]
    assert found["config"] == ["recovery"]
    assert found["ledger_location"] == ""  # declared, empty: the ledger's own default applies
    store_form, api_form = found["forms"]["recovery_backup_store"], found["forms"]["recovery_airflow_api"]
    assert store_form["standard_fields"]["host"]["hidden"] and store_form["standard_fields"]["password"]["hidden"]
    assert store_form["extra_fields"]["location"]["schema"]["title"] == "Location"
    assert api_form["standard_fields"]["host"] == {
        "hidden": False, "title": "API server URL", "placeholder": "http://airflow-apiserver:8080",
    }
    assert api_form["standard_fields"]["port"]["hidden"]


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, document: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(document))


def test_backup_store_connection_names_the_location_and_tests_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from recovery_provider.hooks.backup_store import BackupStoreHook

    (tmp_path / "orders").mkdir()
    _connection(monkeypatch, "backups", {"conn_type": "recovery_backup_store", "extra": {"location": f"file://{tmp_path}"}})
    hook = BackupStoreHook("backups")
    assert hook.get_conn().location == f"file://{tmp_path}"
    ok, message = hook.test_connection()
    assert ok, message
    assert "1 database folder" in message

    _connection(monkeypatch, "gone", {"conn_type": "recovery_backup_store", "extra": {"location": f"file://{tmp_path}/nope"}})
    ok, message = BackupStoreHook("gone").test_connection()
    assert not ok and "does not exist" in message

    _connection(monkeypatch, "empty", {"conn_type": "recovery_backup_store"})
    with pytest.raises(RecoveryError, match="has no location"):
        BackupStoreHook("empty").location()


def test_airflow_api_connection_builds_the_client_and_reports_an_unreachable_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from recovery_provider.hooks.airflow_api import AirflowApiHook, api_base_url

    assert api_base_url("https://airflow.example.com", None, None) == "https://airflow.example.com"
    assert api_base_url("airflow", "https", 8443) == "https://airflow:8443"
    assert api_base_url(None, None, None) == "http://localhost:8080"
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _connection(
        monkeypatch,
        "airflow_api",
        {"conn_type": "recovery_airflow_api", "host": f"http://127.0.0.1:{port}", "login": "ops", "password": "s3cret"},
    )
    hook = AirflowApiHook()
    api = hook.get_conn()
    assert (api.base_url, api.username, api.password) == (f"http://127.0.0.1:{port}", "ops", "s3cret")
    ok, message = hook.test_connection()
    assert not ok and "cannot reach the Airflow API" in message
