"""Branch conditions: a small, safe expression language evaluated without ``eval``.

``params.failure_type == 'replica_healthy'``, ``steps.replica_lag.output.lag_seconds < 30``,
``params.region in ['eu', 'us'] and not params.dry_run``. Only comparisons, ``and``/``or``/``not``,
literals and references to ``params.<name>`` or ``steps.<step_id>.output[...]`` are allowed, so a
spec can never run code, and every reference is known before the DAG exists.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from recovery_provider.exceptions import ArgumentError

# defined in exceptions.py, one hierarchy; still importable from here
from recovery_provider.exceptions import UnknownState as UnknownState

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_LITERAL_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


@dataclass(frozen=True)
class Condition:
    text: str
    params: frozenset[str] = field(default=frozenset())
    steps: frozenset[str] = field(default=frozenset())

    def evaluate(self, params: Mapping[str, Any], outputs: Mapping[str, Any]) -> bool:
        """Decide the condition; raise UnknownState when a referenced value is missing."""
        tree = ast.parse(self.text, mode="eval")
        try:
            return bool(_Evaluator(params, outputs).visit(tree.body))
        except UnknownState:
            raise
        except Exception as exc:  # a type clash such as None < 3 is an unknown state too
            raise UnknownState(f"cannot evaluate {self.text!r}: {exc}") from exc


def parse_condition(text: str) -> Condition:
    """Check a condition's syntax and collect its references; raise ValueError saying what is wrong."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ArgumentError(f"condition {text!r} is not a valid expression ({exc.msg})") from None
    checker = _Checker()
    checker.visit(tree.body)
    return Condition(text.strip(), frozenset(checker.params), frozenset(checker.steps))


def _reference(node: ast.expr) -> list[str | int] | None:
    """Flatten ``steps.a.output['b'].c`` into ['steps', 'a', 'output', 'b', 'c']."""
    parts: list[str | int] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            if not isinstance(node.slice.value, (str, int)) or isinstance(node.slice.value, bool):
                return None
            parts.append(node.slice.value)
            node = node.value
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            return parts[::-1]
        else:
            return None


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.params: set[str] = set()
        self.steps: set[str] = set()

    def generic_visit(self, node: ast.AST) -> None:
        raise ArgumentError(
            f"'{ast.unparse(node)}' is not allowed in a condition: use comparisons (==, !=, <, in ...), "
            "and/or/not, literals, params.<name> and steps.<step_id>.output"
        )

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for value in node.values:
            self.visit(value)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if not isinstance(node.op, (ast.Not, ast.USub)):
            self.generic_visit(node)
        self.visit(node.operand)

    def visit_Compare(self, node: ast.Compare) -> None:
        for op in node.ops:
            if type(op) not in _COMPARE:
                self.generic_visit(node)
        self.visit(node.left)
        for comparator in node.comparators:
            self.visit(comparator)

    def visit_Constant(self, node: ast.Constant) -> None:
        return None

    def visit_List(self, node: ast.List) -> None:
        for element in node.elts:
            self.visit(element)

    def visit_Tuple(self, node: ast.Tuple) -> None:
        for element in node.elts:
            self.visit(element)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id not in _LITERAL_NAMES:
            raise ArgumentError(
                f"'{node.id}' is not known in a condition: refer to params.<name> or steps.<step_id>.output"
            )

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._reference(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self._reference(node)

    def _reference(self, node: ast.expr) -> None:
        parts = _reference(node)
        if parts and parts[0] == "params" and len(parts) >= 2 and isinstance(parts[1], str):
            self.params.add(parts[1])
        elif parts and parts[0] == "steps" and len(parts) >= 3 and parts[2] == "output":
            self.steps.add(str(parts[1]))
        else:
            raise ArgumentError(
                f"'{ast.unparse(node)}' is not a reference a condition understands: "
                "use params.<name> or steps.<step_id>.output[.<key>]"
            )


class _Evaluator(ast.NodeVisitor):
    def __init__(self, params: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        self.scope = {"params": params, "steps": {k: {"output": v} for k, v in outputs.items()}}

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        values = (self.visit(v) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        return (not value) if isinstance(node.op, ast.Not) else -value

    def visit_Compare(self, node: ast.Compare) -> bool:
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.visit(comparator)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_List(self, node: ast.List) -> list[Any]:
        return [self.visit(e) for e in node.elts]

    def visit_Tuple(self, node: ast.Tuple) -> list[Any]:
        return [self.visit(e) for e in node.elts]

    def visit_Name(self, node: ast.Name) -> Any:
        return _LITERAL_NAMES[node.id]

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        return self._lookup(node)

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        return self._lookup(node)

    def _lookup(self, node: ast.expr) -> Any:
        parts = _reference(node) or []
        value: Any = self.scope
        for part in parts:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                raise UnknownState(f"{ast.unparse(node)} is not available") from None
        return value
