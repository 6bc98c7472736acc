"""What Airflow's providers manager learns about this package (entry point ``apache_airflow_provider``).

Plain data, no Airflow import: Airflow calls :func:`get_provider_info` in every process that
discovers providers (CLI, scheduler, api-server, workers), so it must stay cheap.

To add a module (a new hook, operator, sensor or trigger file), add one line to :data:`MODULES`
under its integration; a new integration also gets one entry in :data:`INTEGRATIONS`.
``tests/unit/test_provider_info.py`` fails while a module under ``hooks/``, ``operators/``,
``sensors/`` or ``triggers/`` is not listed here, or a listed one does not import.

Connection forms are declared here too (``ui-field-behaviour``, ``conn-fields``), as Airflow 3.2+
wants them: the UI reads them without importing the hook classes (a hook's own
``get_ui_field_behaviour()`` is deprecated there). The hook classes carry ``conn_type``,
``conn_name_attr``, ``default_conn_name`` and ``hook_name``, which the manager checks against
these entries.
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "airflow-provider-recovery"

#: Integration names (Airflow groups modules by them). Every name used in MODULES must be here.
INTEGRATIONS: list[str] = [
    "Recovery workflows",  # specs rendered as DAGs: gates, probes, approvals, the run ledger
    "PostgreSQL recovery",  # pg_dump / pg_restore backups, restores, drills, promotion, replica lag
    "Backup storage",  # backups with manifests and checksums in S3 or a file:// location
    "Airflow REST API",  # pools and run notes through Airflow's public API (connection airflow_api)
    "pgBackRest",  # physical backups, WAL archive, point-in-time restores
]

#: kind -> integration -> modules. One line per module; keep each list sorted.
MODULES: dict[str, dict[str, list[str]]] = {
    "hooks": {
        "PostgreSQL recovery": [
            "recovery_provider.hooks.dump",
            "recovery_provider.hooks.dump_stream",
            "recovery_provider.hooks.pg",
            "recovery_provider.hooks.restore",
            "recovery_provider.hooks.stats",
        ],
        "Backup storage": [
            "recovery_provider.hooks.backup_store",
            "recovery_provider.hooks.store",
            "recovery_provider.hooks.streams",
        ],
        "Recovery workflows": [
            "recovery_provider.hooks.probes",
        ],
        "Airflow REST API": [
            "recovery_provider.hooks.airflow_api",
        ],
        "pgBackRest": [
            "recovery_provider.hooks.pgbackrest",
            "recovery_provider.hooks.pgbackrest_report",
            "recovery_provider.hooks.pgbackrest_restore",
            "recovery_provider.hooks.pitr_drill",
        ],
    },
    "operators": {
        "Recovery workflows": [
            "recovery_provider.operators.base",
            "recovery_provider.operators.http",
        ],
        "PostgreSQL recovery": [
            "recovery_provider.operators.postgres",
            "recovery_provider.operators.restore",
        ],
        "Backup storage": [
            "recovery_provider.operators.backup",
        ],
        "pgBackRest": [
            "recovery_provider.operators.pgbackrest",
            "recovery_provider.operators.pgbackrest_drill",
        ],
    },
    "sensors": {
        "Recovery workflows": [
            "recovery_provider.sensors.base",
        ],
        "PostgreSQL recovery": [
            "recovery_provider.sensors.postgres",
        ],
        "Backup storage": [
            "recovery_provider.sensors.backup",
        ],
        "pgBackRest": [
            "recovery_provider.sensors.pgbackrest",
        ],
    },
    "triggers": {
        "Recovery workflows": [
            "recovery_provider.triggers.probe",
        ],
    },
}

#: The connection types this package defines (PostgreSQL, S3 and HTTP connections are the
#: official providers' own). Field names in ``conn-fields`` are stored in the connection's extra.
CONNECTION_TYPES: list[dict[str, Any]] = [
    {
        "connection-type": "recovery_backup_store",
        "hook-class-name": "recovery_provider.hooks.backup_store.BackupStoreHook",
        "hook-name": "Recovery backup store",
        "ui-field-behaviour": {
            "hidden-fields": ["host", "schema", "port", "login", "password", "extra"],
            "relabeling": {},
            "placeholders": {},
        },
        "conn-fields": {
            "location": {
                "label": "Location",
                "description": (
                    "Where backups live: s3://<aws conn id>@<bucket>/<prefix> (credentials come from "
                    "that AWS connection; needs the [s3] extra) or file:///absolute/path. "
                    "In a spec: location: \"{{ conn.<this conn id>.extra_dejson.location }}\"."
                ),
                "schema": {"type": "string", "default": ""},
            },
        },
    },
    {
        "connection-type": "recovery_airflow_api",
        "hook-class-name": "recovery_provider.hooks.airflow_api.AirflowApiHook",
        "hook-name": "Airflow REST API (recovery)",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port", "extra"],
            "relabeling": {"host": "API server URL", "login": "User"},
            "placeholders": {
                "host": "http://airflow-apiserver:8080",
                "login": "a user who may read pools and edit DAG run notes",
            },
        },
    },
]

#: Options of the ``[recovery]`` section (``airflow config list`` shows them).
CONFIG: dict[str, Any] = {
    "recovery": {
        "description": "Recovery workflows: where the run ledger (evidence of every recovery run) lives.",
        "options": {
            "ledger_location": {
                "description": (
                    "Folder, file:// URL or s3://<conn id>@<bucket>/<prefix> of the run ledger. The "
                    "scheduler writes it and the api-server reads it: both must see the same place. "
                    "Empty: $AIRFLOW_HOME/recovery-ledger."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "s3://aws_default@recovery/ledger",
                "default": "",
            },
            "plan_cache": {
                "description": (
                    "Folder where the dag-processor and tasks keep the compiled plans of recovery specs, "
                    "keyed by each spec's text and the provider's code, so a task start renders its DAG "
                    "without validating the spec again. Local to each machine; must be writable by "
                    "Airflow's user alone. Empty: $AIRFLOW_HOME/recovery-plan-cache; off: no cache."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "/var/cache/airflow/recovery-plans",
                "default": "",
            },
            "alert_callback": {
                "description": (
                    "module:function that receives every alert of every recovery DAG (a missed RTO, a "
                    "slow step) as a recovery_provider.alerts.Alert, after it is logged; importable by "
                    "the triggerer and the workers. Empty: alerts are only logged."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "my_team.alerting:notify",
                "default": "",
            },
        },
    },
}


def _by_integration(kind: str) -> list[dict[str, Any]]:
    return [
        {"integration-name": integration, "python-modules": list(modules)}
        for integration, modules in MODULES[kind].items()
    ]


def provider_info(version: str) -> dict[str, Any]:
    """The full provider info, in the shape of the official providers' ``get_provider_info()``."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Recovery",
        "description": (
            "Declarative recovery and backup workflows for Apache Airflow 3: spec language, "
            "DAG factory, PostgreSQL backup and restore operators, sensors, run evidence."
        ),
        "versions": [version],
        "integrations": [
            {"integration-name": name, "tags": ["software"]} for name in INTEGRATIONS
        ],
        "hooks": _by_integration("hooks"),
        "operators": _by_integration("operators"),
        "sensors": _by_integration("sensors"),
        "triggers": _by_integration("triggers"),
        "connection-types": [dict(entry) for entry in CONNECTION_TYPES],
        "config": CONFIG,
    }
