"""One trigger for every recovery wait: run a read-only probe until it says ok, or time out.

Why one generic trigger: the checks already exist as plain functions (``hooks.probes``) used by
the sensors' poke mode; the trigger runs the same function in a thread of the triggerer (sync
Airflow calls such as reading a connection are allowed from a thread there), so deferred and
non-deferred modes cannot drift apart. Its kwargs are stored in the metadata DB: they name
connection ids, never secrets.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

CLASSPATH = "recovery_provider.triggers.probe.ProbeTrigger"


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


def load_probe(path: str) -> Callable[..., dict[str, Any]]:
    """``module:function`` -> the function (only probes of this provider's hooks.probes module)."""
    module, _, name = path.partition(":")
    if module != "recovery_provider.hooks.probes" or not name.isidentifier():
        raise ValueError(f"unknown probe {path!r}: only recovery_provider.hooks.probes functions are allowed")
    probe: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), name)
    return probe


class ProbeTrigger(BaseTrigger):
    """Fires ``{"status": "success"|"timeout"|"error", "result": <last probe result>}``."""

    def __init__(
        self,
        probe: str,
        probe_kwargs: dict[str, Any],
        poke_interval: float = 30.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.probe = probe
        self.probe_kwargs = probe_kwargs
        self.poke_interval = poke_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "probe": self.probe,
            "probe_kwargs": self.probe_kwargs,
            "poke_interval": self.poke_interval,
            "timeout": self.timeout,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.monotonic()
        try:
            probe = load_probe(self.probe)
        except (ValueError, ImportError, AttributeError) as exc:
            yield _event({"status": "error", "result": {"ok": False, "message": str(exc)}})
            return
        result: dict[str, Any] = {"ok": False, "message": "not probed yet"}
        while True:
            try:
                result = await asyncio.to_thread(probe, **self.probe_kwargs)
            except Exception as exc:  # a probe bug must end the wait with a message, not hang it
                yield _event({"status": "error", "result": {"ok": False, "message": f"{type(exc).__name__}: {exc}"}})
                return
            if result.get("ok"):
                yield _event({"status": "success", "result": result})
                return
            if self.timeout is not None and time.monotonic() - started + self.poke_interval > self.timeout:
                yield _event({"status": "timeout", "result": result})
                return
            self.log.info("not yet: %s", result.get("message"))
            await asyncio.sleep(self.poke_interval)
