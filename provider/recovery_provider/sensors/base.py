"""Sensors built on the read-only checks of ``hooks.probes``: poke in a worker, or defer.

Deferrable mode (``deferrable=True``, or ``[operators] default_deferrable``) frees the worker slot:
the check runs in the triggerer through :class:`~recovery_provider.triggers.probe.ProbeTrigger`.
Both modes call the same probe function, and both check once right away, so an already healthy
system costs no deferral round trip. Sensors read and never write, so a dry run runs them as usual.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from recovery_provider.operators.base import seconds


def _default_deferrable() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


class ProbeSensor(BaseSensorOperator):
    probe_name: ClassVar[str]
    supports_dry_run: ClassVar[bool] = True  # read-only: runs in dry runs too

    def __init__(
        self,
        *,
        deferrable: bool | None = None,
        poke_interval: float | str = 30.0,
        timeout: float | str = "10m",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            poke_interval=seconds(poke_interval, "poke_interval"), timeout=seconds(timeout, "timeout"), **kwargs
        )
        self.deferrable = _default_deferrable() if deferrable is None else bool(deferrable)
        self.last_result: dict[str, Any] | None = None

    def probe_kwargs(self) -> dict[str, Any]:
        """JSON-serialisable arguments of the probe (connection ids, never secrets)."""
        raise NotImplementedError

    def check(self) -> dict[str, Any]:
        from recovery_provider.triggers.probe import load_probe

        result = load_probe(f"recovery_provider.hooks.probes:{self.probe_name}")(**self.probe_kwargs())
        self.last_result = result
        self.log.info("%s: %s", "ok" if result.get("ok") else "not yet", result.get("message"))
        return result

    def poke(self, context: Any) -> bool | PokeReturnValue:
        result = self.check()
        return PokeReturnValue(is_done=bool(result.get("ok")), xcom_value=result)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            try:
                return super().execute(context)
            except Exception as exc:
                if type(exc).__name__ in {"AirflowSensorTimeout", "AirflowPokeFailException"} and self.last_result:
                    from airflow.sdk.exceptions import AirflowSensorTimeout

                    raise AirflowSensorTimeout(self.timeout_message(self.last_result)) from None
                raise
        result = self.check()
        if result.get("ok"):
            return result
        from recovery_provider.triggers.probe import ProbeTrigger

        self.defer(
            trigger=ProbeTrigger(
                probe=f"recovery_provider.hooks.probes:{self.probe_name}",
                probe_kwargs=self.probe_kwargs(),
                poke_interval=self.poke_interval,
                timeout=self.timeout,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout + self.poke_interval * 2),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        result = event.get("result") or {}
        if event.get("status") == "success":
            self.log.info("ok: %s", result.get("message"))
            return result
        from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

        if event.get("status") == "timeout":
            raise AirflowSensorTimeout(self.timeout_message(result))
        raise AirflowException(f"{self.task_id}: the check could not run: {result.get('message')}")

    def timeout_message(self, result: dict[str, Any]) -> str:
        return f"{self.task_id}: still not ok after {self.timeout:.0f}s: {result.get('message')}"
