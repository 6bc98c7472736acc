"""Operators from plan items: imported once per DAG, built with the settings every step task gets.

A failure here is the step's own problem, located in the spec (file:line:col), never the loader's.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from airflow.sdk import TriggerRule
from airflow.sdk.bases.operator import BaseOperator

from recovery_provider.exceptions import RenderError
from recovery_provider.plan.model import PlanAction, PlanStep
from recovery_provider.render import runtime
from recovery_provider.render.hooks import skip_when_done, step_hook
from recovery_provider.spec.alerts import Alerts


class Operators:
    def __init__(self, alerts: Alerts | None = None) -> None:
        self.classes: dict[str, type[BaseOperator]] = {}  # operator path -> class, once per DAG
        self.alerts = alerts or Alerts()  # the spec's slow-step settings, for every step task

    def fail(self, item: PlanStep | PlanAction, message: str) -> RenderError:
        """A render error located at the step (or action) in the spec, shown as file:line:col."""
        where = f"step '{item.id}': " if isinstance(item, PlanStep) else ""
        return RenderError(f"{where}{' '.join(message.split())}", item.path)  # one line, as every diagnostic

    def operator_class(self, item: PlanStep | PlanAction) -> type[BaseOperator]:
        cached = self.classes.get(item.operator)
        if cached is not None:
            return cached
        module_name, _, attribute = item.operator.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attribute)
        except Exception as exc:  # a module that fails to import fails this step, not the loader
            raise self.fail(item, f"cannot import operator '{item.uses}' ({item.operator}): {type(exc).__name__}: {exc}") from None
        if not (isinstance(found, type) and issubclass(found, BaseOperator)):
            raise self.fail(item, f"'{item.uses}' ({item.operator}) is not an Airflow operator class")
        self.classes[item.operator] = found
        return found

    def construct(self, item: PlanStep | PlanAction, task_id: str, extra: dict[str, Any]) -> BaseOperator:
        cls = self.operator_class(item)
        kwargs = {**item.args, **extra, "task_id": task_id}
        if isinstance(kwargs.get("python_callable"), str):
            kwargs["python_callable"] = self.python_callable(item, kwargs["python_callable"])
        if not getattr(cls, "supports_dry_run", False):
            kwargs.setdefault("pre_execute", runtime.skip_in_dry_run)
        try:
            return cls(**kwargs)
        except Exception as exc:  # whatever an operator raises about its arguments is this step's problem
            raise self.fail(item, f"{cls.__name__} rejected its arguments: {type(exc).__name__}: {exc}") from None

    def python_callable(self, item: PlanStep | PlanAction, path: str) -> Callable[..., Any]:
        """`package.module:function` (or `package.module.function`) from YAML, imported and checked."""
        module_name, colon, attribute = path.partition(":")
        if not colon:
            module_name, _, attribute = path.rpartition(".")
        hint = "give python_callable as an import path such as 'my_package.tasks:restore_index'"
        if not module_name or not attribute:
            raise self.fail(item, f"python_callable '{path}' is not an import path: {hint}")
        try:
            found = getattr(importlib.import_module(module_name), attribute)
        except AttributeError:
            raise self.fail(item, f"python_callable '{path}': module '{module_name}' has no '{attribute}': {hint}") from None
        except Exception as exc:
            raise self.fail(item, f"python_callable '{path}': cannot import module '{module_name}' ({type(exc).__name__}: {exc}): {hint}") from None
        if not callable(found):
            raise self.fail(item, f"python_callable '{path}' is a {type(found).__name__}, not a function: {hint}")
        return found  # type: ignore[no-any-return]

    def step_task(self, step: PlanStep, task_id: str, trigger_rule: str = TriggerRule.ALL_SUCCESS,
                  overrides: dict[str, Any] | None = None, max_active: int | None = None,
                  skip_when: str | None = None) -> BaseOperator:
        extra: dict[str, Any] = {
            "retries": step.retries,
            "retry_delay": step.retry_delay,
            "execution_timeout": step.timeout,
            "task_display_name": step.display_name,
            "trigger_rule": trigger_rule,
            "pool_slots": step.pool_slots,
        }
        if overrides:
            extra.update(overrides)
        if step.description:
            extra["doc_md"] = step.description
        if step.backoff > 1:
            extra["retry_exponential_backoff"] = step.backoff
            extra["max_retry_delay"] = step.max_retry_delay
        if step.pool:
            extra["pool"] = step.pool
        if step.queue:
            extra["queue"] = step.queue
        if max_active:
            extra["max_active_tis_per_dagrun"] = max_active
        if step.retry_on or step.no_retry_on:  # our operators have the permanent-error policy anyway
            from recovery_provider.operators.base import ErrorRulesPolicy

            extra["retry_policy"] = ErrorRulesPolicy(step.retry_on, step.no_retry_on)
        dry_run_aware = getattr(self.operator_class(step), "supports_dry_run", False)
        inner = skip_when_done(skip_when, dry_run_aware) if skip_when is not None else (
            None if dry_run_aware else runtime.skip_in_dry_run)
        factor = self.alerts.slow_step_factor
        if factor is not None or step.breaker is not None:
            extra["pre_execute"] = step_hook(
                inner, step.key, factor=factor, min_samples=self.alerts.min_samples,
                breaker=step.breaker.model_dump() if step.breaker else None,
            )
        elif inner is not None:
            extra["pre_execute"] = inner
        return self.construct(step, task_id, extra)
