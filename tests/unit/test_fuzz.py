"""Property tests: no input makes the spec pipeline or the CLI raise, and every finding is located.

(a) random YAML documents, free-form and spec-shaped, with keys drawn from the real field names
plus junk, and coherent valid specs of every shape, which must compile with no error and plan and
render through the CLI; (b) mutations of the valid corpus (tests/spec/valid), on the parsed document and on the
text; (c) the CLI on mutated files, which must answer with exit code 0 or 1 and never a traceback.

Counts stay small on purpose: the estimate's cost grows with the number of fan-out targets, so a
huge expected_targets or max_targets is slow by design of the simulation (reported separately).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recovery_provider.check import CheckedSpec, check_text
from recovery_provider.cli.main import app
from recovery_provider.spec import alerts, models, phase_kinds
from recovery_provider.spec import steps as step_models
from recovery_provider.spec.base import SpecModel
from recovery_provider.spec.registry import ALIASES

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).resolve().parent.parent / "spec" / "valid"
VALID_TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.yaml"))}
VALID_DOCS = {name: yaml.safe_load(text) for name, text in VALID_TEXTS.items()}

runner = CliRunner()
FUZZ = settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _field_names() -> list[str]:
    names = {"tolerate", "<<"}
    for value in (v for module in (models, step_models, phase_kinds, alerts) for v in vars(module).values()):
        if isinstance(value, type) and issubclass(value, SpecModel):
            names |= {info.alias or name for name, info in value.model_fields.items()}
    return sorted(names)


FIELD_NAMES = _field_names()
IDS = ["assess", "choose", "restore", "verify", "report", "a", "b", "s1", "s2", "shards", "dry_run", "p1"]
DURATIONS = ["30s", "15m", "1h30m", "2d", "0s", "500ms", "5x", "", "1y", "400d", "10", "1.5h", "ms", "1h 30"]
CONDITIONS = [
    "params.dry_run", "not params.dry_run", "params.shards == ['a']", "params.region in ['eu', 'us']",
    "steps.s1.output.lag < 30", "steps.s2.output['state'] == 'ok'", "steps.a.output", "-params.n < 3",
    "__import__('os').system('id')", "params.", "1 +", "lambda: 1", "a if b else c", "params[0]",
    "steps.s1", "params.x.y[0] > -1", "(yield)", "", "   ",
]
SCHEDULES = ["@daily", "@weekly", "@once", "@hourly", "@nightly", "@", "0 2 * * *", "*/5 * * * *", "61 * * * *", "* * *"]
WORDS = [*IDS, *DURATIONS, *CONDITIONS, *SCHEDULES, *sorted(ALIASES), "fail_fast", "continue", "contine",
         "25%", "150%", "abc", "acme.ops:Op", "acme.ops.Op", "os.system", "default_pool", "reject", "approve"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1000, max_value=3000),
    st.floats(min_value=-1e4, max_value=1e4) | st.sampled_from([float("nan"), float("inf"), -0.0, 0.5]),
    st.text(max_size=20),
    st.sampled_from(WORDS),
    st.dates(),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.sampled_from(IDS), st.text(max_size=12))
free_documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6), max_leaves=30
)

# -- spec-shaped documents: mostly well formed, so that the compiler, lint and estimate run too ----


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The invalid values one time in fifteen: per spec that adds up, and well-formed specs still reach the compiler."""
    return st.sampled_from(range(15)).flatmap(lambda n: invalid if n == 0 else valid)


ident = mostly(st.sampled_from(IDS), st.from_regex(r"[A-Za-z_0-9][A-Za-z0-9_-]{0,6}", fullmatch=True))
count = mostly(st.integers(min_value=1, max_value=40), st.integers(min_value=-2, max_value=0))
duration = mostly(st.sampled_from(DURATIONS[:6]), st.sampled_from(DURATIONS))
label = mostly(st.text(min_size=1, max_size=10), st.text(max_size=10))
uses = mostly(st.sampled_from(sorted(ALIASES)), st.sampled_from(["acme.ops:Op", "acme.ops.Op", "postgres.restor", "os.system"]))
arguments = st.dictionaries(st.text(max_size=5), scalars, max_size=2)
action = st.fixed_dictionaries(
    {"uses": uses}, optional={"with": arguments, "timeout": duration, "expected_duration": duration}
)
step = st.fixed_dictionaries(
    {"id": ident, "uses": uses},
    optional={
        "timeout": duration, "expected_duration": duration, "retries": count, "retry_delay": duration,
        "backoff": mostly(st.floats(min_value=1, max_value=10), st.floats(min_value=0, max_value=12)),
        "max_retry_delay": duration, "pool": mostly(st.sampled_from(["p1", "p2"]), st.sampled_from(["default_pool", "p3"])),
        "pool_slots": count, "queue": label, "critical": st.booleans(), "compensate": action, "skip_if": action,
        "with": arguments, "name": label,
    },
)
steps = mostly(st.lists(step, min_size=1, max_size=3), st.lists(step, max_size=1))
source = mostly(
    st.one_of(
        st.lists(st.sampled_from(["eu", "us", "a", "b"]), min_size=1, max_size=5),
        st.fixed_dictionaries({"param": ident}),
        st.fixed_dictionaries({"step": ident}),
    ),
    st.one_of(scalars, st.fixed_dictionaries({}, optional={"param": ident, "step": ident, "items": scalars})),
)
fan_out = st.fixed_dictionaries(
    {"over": source}, optional={"as": ident, "max_parallel": count, "expected_targets": count}
)
waves = st.fixed_dictionaries(
    {"over": source, "size": count},
    optional={"pause": duration, "max_targets": count, "health_check": action, "max_failed_waves": count},
)
case = mostly(
    st.one_of(
        st.fixed_dictionaries({"when": st.sampled_from(CONDITIONS[:8]), "then": ident}),
        st.fixed_dictionaries({"otherwise": ident}),
    ),
    st.fixed_dictionaries({}, optional={"when": st.sampled_from(CONDITIONS), "then": ident, "otherwise": ident}),
)
branch = mostly(
    st.tuples(st.lists(case, min_size=1, max_size=2), st.fixed_dictionaries({"otherwise": ident})).map(lambda t: [*t[0], t[1]]),
    st.lists(case, max_size=3),
)
approval = st.fixed_dictionaries(
    {"subject": label},
    optional={"timeout": duration, "on_timeout": mostly(st.sampled_from(["reject", "approve"]), st.just("rejct")),
              "approvers": st.lists(st.text(max_size=5), max_size=2), "expected_duration": duration, "body": label},
)
policy = mostly(
    st.sampled_from(["fail_fast", "continue"]) | st.fixed_dictionaries({"tolerate": count | st.sampled_from(["25%", "100%", "0.5%"])}),
    st.sampled_from(["contine", None]) | st.fixed_dictionaries({"tolerate": st.sampled_from(["abc", "150%", "-5%", True])}),
)
phase_common = {
    "after": ident | st.lists(ident, max_size=3), "on_failure": policy, "description": label,
    "pool": mostly(st.sampled_from(["p1", "p2"]), st.just("nope")), "queue": label,
}
phase = st.one_of(
    st.fixed_dictionaries({"id": ident, "steps": steps}, optional=phase_common),
    st.fixed_dictionaries({"id": ident, "parallel": steps}, optional=phase_common),
    st.fixed_dictionaries({"id": ident, "for_each": fan_out, "steps": steps}, optional=phase_common),
    st.fixed_dictionaries({"id": ident, "waves": waves, "steps": steps}, optional=phase_common),
    st.fixed_dictionaries({"id": ident, "branch": branch}, optional=phase_common),
    st.fixed_dictionaries({"id": ident, "approval": approval}, optional=phase_common),
    st.fixed_dictionaries(
        {"id": ident},
        optional={"steps": steps, "parallel": steps, "for_each": fan_out, "waves": waves, "branch": branch, "approval": approval},
    ),
)
param = mostly(
    st.one_of(
        st.sampled_from(["eu", 3, 0.5, True, None]),
        st.lists(st.sampled_from(["a", "b", "c"]), max_size=4),
        st.fixed_dictionaries({"type": st.just("array"), "default": st.lists(st.sampled_from(["a", "b"]), max_size=3)}),
        st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "boolean"])}, optional={"title": label}),
    ),
    st.fixed_dictionaries(
        {},
        optional={"type": st.sampled_from(["string", "integer", "number", "boolean", "array", "object", "text"]),
                  "default": scalars, "enum": st.lists(scalars, max_size=3), "title": label},
    ),
)
spec_documents = st.fixed_dictionaries(
    {"recovery": ident, "phases": st.lists(phase, min_size=1, max_size=6)},
    optional={
        "params": st.dictionaries(ident, param, max_size=3),
        "pools": st.dictionaries(mostly(st.sampled_from(["p1", "p2"]), st.just("bad pool")), st.fixed_dictionaries({"slots": count}), max_size=2),
        "defaults": st.fixed_dictionaries({}, optional={"timeout": duration, "retries": count, "pool": mostly(st.just("p1"), st.just("p3")), "queue": label}),
        "finally": st.lists(step, max_size=2),
        "objectives": st.fixed_dictionaries({}, optional={"rto": duration, "rpo": duration}),
        "schedule": st.sampled_from(SCHEDULES),
        "run_timeout": duration,
        "max_active_tasks": count,
        "start_date": mostly(st.dates(), st.sampled_from(["yesterday", "2025-13-01"])),
    },
)


# Arguments each alias needs to render; "{t}" becomes the fan-out target ("{{ target }}") or a constant.
ALIAS_ARGS: dict[str, dict[str, Any]] = {
    "empty": {},
    "bash": {"bash_command": "echo {t}"},
    "python": {"python_callable": "json:dumps", "op_args": ["{t}"]},
    "wait": {"delta": "{t}"},
    "http": {"endpoint": "/notify/{t}"},
    "sql": {"conn_id": "ops_db", "sql": "select '{t}'"},
    "postgres.backup": {"conn_id": "pg", "database": "{t}"},
    "postgres.restore": {"conn_id": "pg", "database": "{t}"},
    "postgres.drill_verify": {"conn_id": "pg", "database": "{t}"},
    "postgres.promote": {"conn_id": "{t}"},
    "postgres.drop_database": {"conn_id": "pg", "database": "{t}"},
    "postgres.health": {"conn_id": "{t}"},
    "postgres.replica_lag": {"conn_id": "{t}"},
    "backup.verify": {"database": "{t}"},
    "backup.retention": {"database": "{t}", "keep_last": 3},
    "backup.freshness": {"database": "{t}", "max_age": "1d"},
    "http.health": {"url": "https://{t}.internal/health"},
    **{f"pgbackrest.{name}": {"stanza": "{t}", "repository": "file:///var/lib/pgbackrest"}
       for name in ("stanza_create", "check", "backup", "info", "verify")},
    "pgbackrest.restore": {"stanza": "{t}", "repository": "file:///var/lib/pgbackrest", "data_dir": "/scratch/{t}"},
    "pgbackrest.drop_scratch": {"stanza": "{t}", "repository": "file:///var/lib/pgbackrest", "data_dir": "/scratch/{t}"},
    "pgbackrest.archive_freshness": {"stanza": "{t}", "repository": "file:///var/lib/pgbackrest", "max_age": "5m"},
    "pgbackrest.drill_markers": {"conn_id": "pg", "tag": "{t}"},
    "pgbackrest.drill_verify": {"conn_id": "pg", "tag": "{t}", "target": "2024-01-02T03:04:05+00:00", "port": 55432},
}


def alias_args(alias: str, fan_out: bool) -> dict[str, Any]:
    target = "{{ target }}" if fan_out else "orders"
    fill = lambda v: v.replace("{t}", target) if isinstance(v, str) else ([fill(x) for x in v] if isinstance(v, list) else v)  # noqa: E731
    return {k: fill(v) for k, v in ALIAS_ARGS[alias].items()}


@st.composite
def coherent_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Valid specs of every shape: references line up, so compile, lint, estimate and render all run.

    A branch's targets are the phases right after it; the phase after them joins their ends.
    """
    good_duration = st.sampled_from(["1s", "30s", "2m", "15m", "1h"])
    slots = draw(st.integers(1, 8))
    spec: dict[str, Any] = {
        "recovery": "coherent",
        "params": {"targets": {"type": "array", "default": ["a", "b", "c"]}, "region": "eu"},
        "pools": {"io": {"slots": slots}},
        "defaults": {"timeout": draw(good_duration), "retries": draw(st.integers(0, 3))},
    }
    counter = iter(range(1000))

    def new_step(fan_out: bool = False, waves: bool = False) -> dict[str, Any]:
        usable = [a for a in sorted(ALIASES) if not fan_out or "{t}" in json.dumps(ALIAS_ARGS[a])]
        alias = draw(st.sampled_from(usable))
        step: dict[str, Any] = {"id": f"s{next(counter)}", "uses": alias}
        if ALIAS_ARGS[alias]:
            step["with"] = alias_args(alias, fan_out)
        if draw(st.booleans()):
            step["expected_duration"] = draw(good_duration)
        if draw(st.integers(0, 3)) == 0:
            step["pool"], step["pool_slots"] = "io", draw(st.integers(1, slots))
        if draw(st.integers(0, 4)) == 0 and not waves:  # the renderer refuses compensate in waves
            step["compensate"] = {"uses": "empty", "expected_duration": draw(good_duration)}
        if draw(st.integers(0, 4)) == 0:
            step["skip_if"] = {"uses": "backup.freshness", "with": alias_args("backup.freshness", fan_out)}
        if draw(st.integers(0, 4)) == 0:
            step["critical"] = False
        return step

    def source(previous_steps: list[str]) -> Any:
        choices = ["list", "param", *(["step"] if previous_steps else [])]
        kind = draw(st.sampled_from(choices))
        if kind == "list":
            return draw(st.lists(st.sampled_from(["eu", "us", "ap", "sa"]), min_size=1, max_size=6))
        return {"param": "targets"} if kind == "param" else {"step": draw(st.sampled_from(previous_steps))}

    phases: list[dict[str, Any]] = []
    pending_targets = 0  # phases still to be made targets of the last branch
    count = draw(st.integers(1, 7))
    for index in range(count):
        phase: dict[str, Any] = {"id": f"p{index}"}
        previous = phases[-1] if phases else None
        previous_steps = [s["id"] for s in (previous or {}).get("steps", []) + (previous or {}).get("parallel", [])]
        is_target, pending_targets = pending_targets > 0, max(0, pending_targets - 1)
        after: list[str] = []
        if not is_target and previous is not None and not previous.get("branch") and draw(st.integers(0, 3)) == 0:
            earlier = [p["id"] for p in phases if not p.get("branch")]
            after = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=2, unique=True))
            phase["after"] = after
        # the previous phase's steps may be referenced only where that phase is surely upstream
        upstream_steps = previous_steps if previous is not None and not previous.get("branch") and not is_target else []
        if after and (previous is None or previous["id"] not in after):
            upstream_steps = []
        kinds = ["steps", "parallel", "for_each", "waves", "approval"]
        if not is_target and index + 1 < count:
            kinds.append("branch")
        kind = draw(st.sampled_from(kinds))
        if kind == "branch":
            targets = draw(st.integers(1, min(3, count - index - 1)))
            pending_targets = targets
            names = [f"p{index + 1 + k}" for k in range(targets)]
            conditions = ["params.region == 'eu'", "not params.dry_run", "params.region in ['us', 'ap']"]
            if upstream_steps:
                conditions.append(f"steps.{upstream_steps[0]}.output.lag < 30")
            cases: list[dict[str, Any]] = [{"when": draw(st.sampled_from(conditions)), "then": n} for n in names[:-1]]
            phase["branch"] = [*cases, {"otherwise": names[-1]}]
        elif kind == "approval":
            phase["approval"] = {"subject": "Go on?", "timeout": draw(good_duration), "on_timeout": draw(st.sampled_from(["reject", "approve"]))}
            if draw(st.booleans()):
                phase["approval"]["expected_duration"] = draw(good_duration)
        else:
            key = "parallel" if kind == "parallel" else "steps"
            phase[key] = [new_step(kind in ("for_each", "waves"), kind == "waves") for _ in range(draw(st.integers(1, 3)))]
            if kind == "for_each":
                phase["for_each"] = {"over": source(upstream_steps), "as": "target"}
                if draw(st.booleans()):
                    phase["for_each"]["max_parallel"] = draw(st.integers(1, 6))
                if draw(st.booleans()):
                    phase["for_each"]["expected_targets"] = draw(st.integers(0, 40))
            elif kind == "waves":
                phase["waves"] = {"over": source(upstream_steps), "size": draw(st.integers(1, 4)), "max_targets": draw(st.integers(1, 20)),
                                  "pause": draw(good_duration), "health_check": {"uses": "http.health", "expected_duration": "10s",
                                                                                  "with": alias_args("http.health", False)}}
            phase["on_failure"] = draw(st.sampled_from(["fail_fast", "continue", {"tolerate": 1}, {"tolerate": "25%"}]))
        phases.append(phase)
    spec["phases"] = phases
    if draw(st.booleans()):
        spec["finally"] = [new_step()]
    if draw(st.booleans()):
        spec["objectives"] = {"rto": draw(st.sampled_from(["10m", "1h", "4h"]))}
    return spec


# YAML's line breaks (libyaml counts \r, NEL and the Unicode separators as well as \n).
_LINE_BREAK = re.compile("\r\n|\r|\n|\x85|\u2028|\u2029")


def assert_checked(text: str, file: str = "fuzz.yaml") -> CheckedSpec:
    """check_text returns (never raises), and every diagnostic names a real place in the text."""
    checked = check_text(text, file)
    assert isinstance(checked, CheckedSpec)
    # libyaml puts the end of a text without a final line break on a line of its own: allow that one.
    last_line = len(_LINE_BREAK.findall(text)) + 1 + (not text or text[-1] not in "\r\n\x85\u2028\u2029")
    for diagnostic in checked.diagnostics:
        assert diagnostic.location is not None, diagnostic.format()
        assert diagnostic.location.file == file
        assert 1 <= diagnostic.location.line <= last_line, diagnostic.format()
        assert diagnostic.location.column >= 1, diagnostic.format()
        assert diagnostic.severity in ("error", "warning") and diagnostic.code and diagnostic.message
        json.dumps(diagnostic.to_json())
    if checked.errors:
        assert checked.dag is None  # what validate refuses, the loader refuses
    else:
        assert checked.plan is not None and checked.estimate is not None and checked.dag is not None
    return checked


def _dump(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


# -- (a) random documents ---------------------------------------------------------------------


@FUZZ
@given(st.one_of(free_documents, st.dictionaries(keys, free_documents, max_size=8)))
def test_random_documents_never_raise(document: Any) -> None:
    assert_checked(_dump(document))


@FUZZ
@given(spec_documents)
def test_spec_shaped_documents_never_raise(document: dict[str, Any]) -> None:
    assert_checked(_dump(document))


@settings(max_examples=150, deadline=None, database=None)
@given(st.text(max_size=200))
def test_random_text_never_raises(text: str) -> None:
    assert_checked(text)


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(coherent_specs(), st.sampled_from(["plan", "render"]))
def test_coherent_specs_compile_plan_and_render(
    tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any], command: str
) -> None:
    text = _dump(document)
    checked = assert_checked(text)
    assert checked.errors == [], "\n".join(d.format() for d in checked.errors) + "\n" + text
    assert checked.estimate is not None
    for scenario in checked.estimate.scenarios:  # caps only slow a run down; greedy never idles it all
        assert scenario.critical <= scenario.planned + 1e-6 and scenario.planned <= scenario.sequential + 1e-6, scenario.label
    spec = tmp_path_factory.mktemp("coherent") / "coherent.yaml"
    spec.write_text(text, encoding="utf-8")
    result = runner.invoke(app, [command, "--json", str(spec)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    result = runner.invoke(app, [command, str(spec)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


# -- (b) mutations of the valid corpus --------------------------------------------------------


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def _typo(draw: st.DrawFn, word: str) -> str:
    chars = list(word) or ["x"]
    index = draw(st.integers(0, len(chars) - 1))
    kind = draw(st.sampled_from(["drop", "double", "swap", "replace"]))
    if kind == "drop" and len(chars) > 1:
        del chars[index]
    elif kind == "double":
        chars.insert(index, chars[index])
    elif kind == "swap" and index + 1 < len(chars):
        chars[index], chars[index + 1] = chars[index + 1], chars[index]
    else:
        chars[index] = draw(st.sampled_from("aeiourst_-. "))
    return "".join(chars)


def _mutate(draw: st.DrawFn, document: Any) -> Any:
    kind = draw(st.sampled_from(["delete", "retype", "rename", "duplicate", "swap_phases", "negative"]))
    paths = [p for p in _paths(document) if p]
    if not paths:
        return draw(free_documents)
    if kind == "swap_phases" and isinstance(document, dict) and isinstance(document.get("phases"), list) and len(document["phases"]) > 1:
        phases = document["phases"]
        i, j = draw(st.integers(0, len(phases) - 1)), draw(st.integers(0, len(phases) - 1))
        phases[i], phases[j] = phases[j], phases[i]
        return document
    if kind == "negative":
        numbers = [p for p in paths if isinstance(_at(document, p), (int, float)) and not isinstance(_at(document, p), bool)]
        if numbers:
            path = draw(st.sampled_from(numbers))
            _at(document, path[:-1])[path[-1]] = -abs(_at(document, path)) - draw(st.integers(0, 3))
            return document
    path = draw(st.sampled_from(paths))
    parent, last = _at(document, path[:-1]), path[-1]
    if kind == "delete" and isinstance(parent, dict):
        del parent[last]
    elif kind == "rename" and isinstance(parent, dict):
        renamed = {(_typo(draw, k) if k == last else k): v for k, v in parent.items()}
        parent.clear()
        parent.update(renamed)
    elif kind == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    else:
        parent[last] = draw(scalars | free_documents)
    return document


INSERTS = ["\t", ":", ": ", "- ", "-", "{", "}", "[", "]", "'", '"', "#", "&a ", "*a", "!!python/object:os.system ",
           "<<: ", "\n", "\n  ", "  ", "?", "@", "%", "|", ">", "\x00", "\x1b", "\r", "\u2028", "\ufeff", "é"]


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    """A valid spec after 1-3 structural mutations and/or random characters inserted into its text."""
    name = draw(st.sampled_from(sorted(VALID_TEXTS)))
    if draw(st.booleans()):
        document = copy.deepcopy(VALID_DOCS[name])
        for _ in range(draw(st.integers(1, 3))):
            document = _mutate(draw, document)
        text = _dump(document)
    else:
        text = VALID_TEXTS[name]  # the hand-written text: flow style, comments, block scalars
    for _ in range(draw(st.integers(0 if text != VALID_TEXTS[name] else 1, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(INSERTS) | st.text(min_size=1, max_size=4)) + text[at:]
    return text


@FUZZ
@given(mutated_texts())
def test_mutated_corpus_never_raises(text: str) -> None:
    assert_checked(text)


def test_the_corpus_itself_is_clean() -> None:
    for name, text in VALID_TEXTS.items():
        assert assert_checked(text, name).diagnostics == [], name


# -- (c) the CLI on mutated files, and on spec-shaped ones (which reach plan and render) -------

@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    data = draw(mutated_texts()).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 4)) == 0:  # now and then a byte that is not UTF-8
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xe9", b"\xc3", b"\x80"])) + data[at:]
    return data


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_files() | spec_documents.map(lambda d: _dump(d).encode()), command=st.sampled_from(["validate", "plan", "render"]), as_json=st.booleans())
def test_cli_on_mutated_files_never_shows_a_traceback(tmp_path_factory: pytest.TempPathFactory, data: bytes, command: str, as_json: bool) -> None:
    spec = tmp_path_factory.mktemp("fuzz") / "mutated.yaml"
    spec.write_bytes(data)
    args = [command, *(["--json"] if as_json else []), str(spec)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    if as_json:
        json.loads(result.stdout)
    elif result.exit_code == 1:
        assert f"{spec}:" in result.stdout  # the failure is located in the file
