"""The RPO under continuous archiving, as a sensor: the newest WAL in the pgBackRest repository is fresh."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from recovery_provider.operators.base import seconds
from recovery_provider.sensors.base import ProbeSensor


class PgBackRestArchiveFreshnessSensor(ProbeSensor):
    """Wait until the newest WAL segment archived for ``stanza`` in ``repository`` is younger than ``max_age``.

    Measured in the repository (``info`` for the newest segment, ``repo-ls`` for when it was stored):
    what a restore could replay, not what the server believes it pushed. An idle server writes no new
    segment: set ``archive_timeout`` on the server below the RPO so that an idle period still
    produces one when there was any write. Alias ``pgbackrest.archive_freshness``.
    """

    template_fields: Sequence[str] = ("stanza", "repository", "max_age", "run_as")
    probe_name = "pgbackrest_archive_freshness"

    def __init__(
        self,
        *,
        stanza: str,
        repository: str,
        max_age: str | float,
        verify_tls: bool | None = None,
        pgbackrest_bin: str | None = None,
        run_as: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30.0)
        super().__init__(**kwargs)
        self.stanza = stanza
        self.repository = repository
        self.max_age = max_age
        self.verify_tls = verify_tls
        self.pgbackrest_bin = pgbackrest_bin
        self.run_as = run_as

    def probe_kwargs(self) -> dict[str, Any]:
        return {
            "stanza": self.stanza,
            "repository": self.repository,
            "max_age_seconds": seconds(self.max_age, "max_age"),
            "verify_tls": self.verify_tls,
            "pgbackrest_bin": self.pgbackrest_bin,
            "run_as": self.run_as or None,
        }
