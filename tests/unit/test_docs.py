"""The figures in docs/concepts.md come from `recovery plan` on docs/examples: keep them true."""

from __future__ import annotations

from pathlib import Path

import pytest

from recovery_provider.check import check_file
from recovery_provider.spec.durations import format_duration

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("example", "path", "sequential", "critical", "planned", "verdict"),
    [
        ("sequential.yaml", None, "1h41m", "1h41m", "1h41m", "exceeds"),
        ("hybrid.yaml", None, "1h41m", "33m", "33m", "meets"),
        ("hybrid_pooled.yaml", None, "1h41m", "33m", "53m", "meets"),
        ("branching.yaml", "promote", "6m", "6m", "6m", "meets"),
        ("branching.yaml", "restore", "1h24m", "24m", "44m", "meets"),
    ],
)
def test_concepts_table_matches_the_estimates(
    repo: Path, example: str, path: str | None, sequential: str, critical: str, planned: str, verdict: str
) -> None:
    checked = check_file(repo / "docs/examples" / example)
    assert checked.estimate is not None, checked.diagnostics
    (scenario,) = [s for s in checked.estimate.scenarios if path is None or s.label == path]
    got = (format_duration(scenario.sequential), format_duration(scenario.critical), format_duration(scenario.planned))
    assert got == (sequential, critical, planned)
    rto = checked.estimate.rto
    assert rto is not None and ("meets" if scenario.planned <= rto else "exceeds") == verdict
    row = next(line for line in (repo / "docs/concepts.md").read_text().splitlines()
               if f"examples/{example})" in line and (path is None or f"`{path}`" in line))
    assert f"| {sequential} | {critical} | {planned} | {verdict} |" in row
