"""The backup store as an Airflow connection (type ``recovery_backup_store``).

A deployment names its backup location once, in a connection whose one field is the location,
instead of repeating the URL in every spec: ``location: "{{ conn.backups.extra_dejson.location }}"``
in a step's ``with:``, or :meth:`BackupStoreHook.get_conn` in custom code. The credentials of an
``s3://`` location stay in the AWS connection the URL names (``s3://<aws conn id>@bucket/prefix``).
The connection form (one *Location* field, the unused fields hidden) is declared in
``recovery_provider.provider_info``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from recovery_provider.exceptions import RecoveryError
from recovery_provider.hooks.store import BackupStore


class BackupStoreHook(BaseHook):
    """A :class:`~recovery_provider.hooks.store.BackupStore` at the location a connection names."""

    conn_name_attr = "backup_store_conn_id"
    default_conn_name = "recovery_backups"
    conn_type = "recovery_backup_store"
    hook_name = "Recovery backup store"

    def __init__(self, backup_store_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backup_store_conn_id = backup_store_conn_id

    def location(self) -> str:
        """The connection's location: the form's field (extra ``location``)."""
        conn = self.get_connection(self.backup_store_conn_id)
        extra = conn.extra_dejson
        value = extra.get("location") or extra.get(f"extra__{self.conn_type}__location")
        if not value:
            raise RecoveryError(
                f"connection '{self.backup_store_conn_id}' has no location: set its Location field (extra "
                "'location') to s3://<aws conn id>@<bucket>/<prefix> or file:///absolute/path"
            )
        return str(value)

    def get_conn(self) -> BackupStore:
        return BackupStore(self.location())

    def test_connection(self) -> tuple[bool, str]:
        """The UI's *Test* button: is the location there and readable with these credentials?"""
        try:
            store = self.get_conn()
            if not store.root.exists():
                return False, f"{store.location} does not exist: create the bucket or folder first"
            return True, f"{store.location} is reachable ({len(store.databases())} database folder(s))"
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
