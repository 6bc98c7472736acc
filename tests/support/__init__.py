"""Harness for the test tiers that need real services (PostgreSQL, an Airflow scheduler).

Nothing here is mocked: `postgres` starts throwaway clusters from the server binaries and
`airflow_cluster` runs a real api-server, scheduler, dag-processor and triggerer. See
docs/dev/airflow-harness.md for what was verified and the traps.
"""

from __future__ import annotations
