#!/usr/bin/env bash
# The demo: set up the environment (first run only), validate the DAG pack and show the plan
# of each recovery - phases, critical path, sequential vs planned time against the RTO.
# (Running the DAGs end to end on a local Airflow arrives with the DAG factory; see README.)
source "$(dirname "$0")/_env.sh"
ensure_venv
cd "$ROOT"
echo "==> recovery validate dags/specs"
"$VENV/bin/recovery" validate dags/specs
for spec in dags/specs/database_failover.yaml dags/specs/region_recovery.yaml; do
    echo
    echo "==> recovery plan $spec"
    "$VENV/bin/recovery" plan "$spec"
done
