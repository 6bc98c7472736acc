"""The RPO as a sensor: the newest verified backup of a database is younger than ``max_age``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from recovery_provider.hooks.store import default_location
from recovery_provider.operators.base import seconds
from recovery_provider.sensors.base import ProbeSensor


class BackupFreshnessSensor(ProbeSensor):
    """Wait until a backup of ``database`` at ``location`` finished less than ``max_age`` ago.

    Without ``database``, every database with backups at ``location`` must meet the RPO.

    ``verified_only`` (default) counts only backups that VerifyBackupOperator checked after they
    were written; ``False`` accepts any complete backup (one with a manifest). Use a short
    ``timeout`` to turn it into a check ("RPO met?") rather than a wait. Alias ``backup.freshness``.
    """

    template_fields: Sequence[str] = ("location", "database", "max_age", "verified_only")
    probe_name = "backup_freshness"

    def __init__(
        self,
        *,
        max_age: str | float,
        database: str | None = None,
        location: str | None = None,
        verified_only: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 60.0)
        super().__init__(**kwargs)
        self.location = location or default_location()
        self.database = database
        self.max_age = max_age
        self.verified_only = verified_only

    def probe_kwargs(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "database": self.database or None,
            "max_age_seconds": seconds(self.max_age, "max_age"),
            "verified_only": bool(self.verified_only),
        }
