# Airflow DAGs from the recovery specs in dags/specs. Keep the words "airflow" and "dag" in this
# file: with [core] dag_discovery_safe_mode (the default) Airflow skips files without them.
# This file never raises: a broken spec is left out and reported by recovery_spec_errors.py.
from recovery_provider.loader import load_dags

load_dags(__file__, "specs")
