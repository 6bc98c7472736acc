"""Spec settings that learn from the run ledger's history: slow-step alerts and circuit breakers.

Kept apart from :mod:`recovery_provider.spec.models` (which imports them) so the language's core
stays readable; the run-time side is :mod:`recovery_provider.evidence.history`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from recovery_provider.spec.base import SpecModel

# How many recent runs the ledger's history keeps per step and per phase (evidence/history.py):
# a circuit breaker cannot look further back than this.
HISTORY_RUNS = 30


class Alerts(SpecModel):
    """Alerts raised while a run is under way, from what the ledger learnt of earlier runs."""

    slow_step_factor: float | None = Field(
        2.0, ge=1.0, le=100.0,
        description="Alert when a step's try runs longer than this many times the p95 of its earlier "
        "successful tries (pooled over a fan-out's targets); null turns slow-step alerts off.",
    )
    min_samples: int = Field(
        5, ge=2, le=1000,
        description="Successful tries of a step the history must hold before its usual duration counts.",
    )


class CircuitBreaker(SpecModel):
    """Stop calling a path that keeps failing: after `failures` failures among the DAG's last `within`
    runs the breaker is open. A branch case then takes the branch's fallback; a step fails its
    tries at once, without calling out. A success of the path, an explicit reset
    (`recovery breaker reset DAG NAME`) or the failures ageing out of the window close it again."""

    failures: int = Field(ge=1, le=HISTORY_RUNS, description="Failures that open the breaker.")
    within: int = Field(
        ge=1, le=HISTORY_RUNS, description=f"Among this many most recent runs of the DAG (at most {HISTORY_RUNS})."
    )

    @model_validator(mode="after")
    def _fits(self) -> CircuitBreaker:
        if self.failures > self.within:
            raise ValueError(f"failures ({self.failures}) cannot exceed within ({self.within}): "
                             "the breaker could never open")
        return self

    def describe(self) -> str:
        return f"{self.failures} failures in {self.within} runs"
