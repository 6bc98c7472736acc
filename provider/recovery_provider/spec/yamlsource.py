"""Safe YAML loading that remembers where every key and value came from.

PyYAML's safe composer builds the node tree (no Python objects are ever constructed from tags);
we turn it into plain dicts and lists ourselves so that we can record line and column per path,
reject duplicate keys (YAML silently keeps the last one) and refuse alias bombs.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml

from recovery_provider.spec.diagnostics import Diagnostic, Location, Path

try:
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Base = yaml.SafeLoader


@functools.lru_cache(maxsize=8192)
def _resolve(kind: type[yaml.Node], value: str | None, implicit: bool | tuple[bool, bool]) -> str:
    return str(yaml.SafeLoader.resolve(_RESOLVER, kind, value, implicit))  # type: ignore[no-untyped-call]


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """The safe loader with a memo of implicit tags: a spec repeats the same keys and values on
    every step, and the tag of a scalar depends on nothing else (the safe loader has no path
    resolvers, so the per-node descend/ascend bookkeeping is skipped too)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # implicit: a (plain, quoted) pair for scalars, a bool for collections
        return _resolve(kind, value, implicit if isinstance(implicit, bool) else tuple(implicit))

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None


_RESOLVER = yaml.SafeLoader("")  # only its resolve() tables are used
assert not yaml.SafeLoader.yaml_path_resolvers, "path resolvers would make tags depend on the path"

_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
MAX_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000


class SourceMap:
    """Line/column of each key and value, by path in the loaded document.

    Positions matter only when something is wrong, so they are computed on first use (composing
    the text again) instead of on every parse.
    """

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self._text = text

    @functools.cached_property
    def _tables(self) -> tuple[dict[Path, Location], dict[Path, Location]]:
        keys: dict[Path, Location] = {}
        values: dict[Path, Location] = {}
        with _no_gc():
            node = yaml.compose(self._text, Loader=_Loader)  # parsed once already: cannot fail
            if node is not None:
                converter = _Converter(self.file, keys, values)
                converter.convert(node, ())
                converter.loader.dispose()
        return keys, values

    @property
    def text(self) -> str:
        """The file's text, as loaded (the DAG keeps it for the evidence of its runs)."""
        return self._text

    @property
    def keys(self) -> dict[Path, Location]:
        return self._tables[0]

    @property
    def values(self) -> dict[Path, Location]:
        return self._tables[1]

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """The closest known location of `path`: the path itself, else its nearest parent."""
        table = (self.keys, self.values) if key else (self.values, self.keys)
        for end in range(len(path), -1, -1):
            for positions in table:
                if path[:end] in positions:
                    return positions[path[:end]]
        return Location(self.file, 1, 1)


@dataclass
class YamlDocument:
    data: Any
    source: SourceMap


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a node tree is built and walked.

    The tree is acyclic and freed by reference counting on return, so collections during it
    would only scan it and promote it to older generations (which then triggers a full
    collection of the whole process later in the parse). The previous state is restored.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Converter:
    """Node tree -> plain data; records positions into `keys`/`values` when given them."""

    def __init__(self, file: str, keys: dict[Path, Location] | None = None, values: dict[Path, Location] | None = None) -> None:
        self.file = file
        self.keys = keys
        self.values = values
        self.count = 0
        self.errors: list[Diagnostic] = []
        self.loader = _Loader("")  # constructs scalars only; never dispatches on Python tags

    def _loc(self, node: yaml.Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def convert(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge
        if self.values is not None:
            self.values.setdefault(path, self._loc(node))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            self.errors.append(Diagnostic("error", "yaml-tag", f"YAML tag {node.tag} is not allowed in a spec: remove it", self._loc(node), path))
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.errors.append(Diagnostic("error", "yaml-merge-key", "merge keys (<<) are not supported: write the keys out", self._loc(key_node), path))
                    continue
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str) or key_node.tag != "tag:yaml.org,2002:str":
                    self.errors.append(Diagnostic("error", "yaml-key", "keys must be plain text", self._loc(key_node), path))
                    continue
                if key in result:
                    self.errors.append(
                        Diagnostic("error", "duplicate-key", f"duplicate key '{key}': it is already set above; keep one", self._loc(key_node), (*path, key))
                    )
                    continue
                if self.keys is not None:
                    self.keys[(*path, key)] = self._loc(key_node)
                result[key] = self.convert(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, index)) for index, item in enumerate(node.value)]
        if node.tag == _STR_TAG:  # most scalars: skip the constructor machinery (parse-time cost)
            return node.value
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self.errors.append(Diagnostic("error", "yaml-value", f"YAML value: {exc.problem}", self._loc(node), path))
            return None


class _TooLarge(Exception):
    pass


def _codepoint(character: int | str) -> str:
    code = character if isinstance(character, int) else ord(character[:1] or "\0")
    return f"#x{code:04x}"


def _syntax_error(exc: yaml.MarkedYAMLError, file: str) -> Diagnostic:
    """Point where the fix is: the opening quote of a string that never closes, else the problem."""
    mark = exc.problem_mark or exc.context_mark
    runaway = exc.context_mark is not None and "end of stream" in (exc.problem or "")
    if runaway:
        mark = exc.context_mark
    location = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    if runaway and exc.context:
        problem = f"{exc.context} that never ends ({problem})"
    hint = "close it" if runaway else "check indentation and quoting here"
    return Diagnostic("error", "yaml-syntax", f"YAML syntax: {problem}; {hint}", location)


def load_yaml(text: str, file: str) -> tuple[YamlDocument | None, list[Diagnostic]]:
    """Parse YAML text safely. Returns the document (None when unusable) and the problems found.

    The document's source map computes line/column positions only when a diagnostic asks for one.
    """
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        return None, [Diagnostic("error", "too-large", f"the file is larger than {MAX_BYTES // 1024 // 1024} MiB: a spec is a few KiB", Location(file, 1, 1))]
    with _no_gc():
        try:
            node = yaml.compose(text, Loader=_Loader)
        except yaml.MarkedYAMLError as exc:
            return None, [_syntax_error(exc, file)]
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow (control characters)
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
            return None, [Diagnostic("error", "yaml-syntax", f"YAML syntax: character {_codepoint(exc.character)} is not allowed in YAML text: delete it", Location(file, line, column))]
        except (yaml.YAMLError, UnicodeError) as exc:  # UnicodeError: lone surrogates in text given as str
            return None, [Diagnostic("error", "yaml-syntax", f"YAML syntax: {exc}", Location(file, 1, 1))]
        if node is None:
            return None, [Diagnostic("error", "empty", "the file is empty: a spec starts with 'recovery: <id>'", Location(file, 1, 1))]
        converter = _Converter(file)
        try:
            data = converter.convert(node, ())
            converter.loader.dispose()
        except _TooLarge:
            return None, [Diagnostic("error", "too-large", f"the document expands to over {MAX_NODES} values (aliases?): write it out plainly", Location(file, 1, 1))]
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            return None, [Diagnostic("error", "yaml-value", f"YAML value: {exc}", Location(file, 1, 1))]
        del node
    return YamlDocument(data, SourceMap(file, text)), converter.errors
