#!/usr/bin/env bash
# The demo, end to end on this machine (loopback only):
#   bash scripts/demo.sh          set up (first run only), validate the DAG pack, start PostgreSQL
#                                 (primary + replica + spare), a file:// backup store, an HTTP stub
#                                 and Airflow; run a nightly backup, the restore drill and the
#                                 database failover (approval answered); print outcomes against
#                                 the RTO; leave the Airflow UI up
#   bash scripts/demo.sh status   what is running, the UI address and login
#   bash scripts/demo.sh stop     end every process the demo started
# State, logs and backups: .recovery/demo/ (RECOVERY_DEMO_DIR to move it). Code: scripts/demo/.
source "$(dirname "$0")/_env.sh"
ensure_venv
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
command="${1:-up}"
case "$command" in
    up)
        ensure_postgres_binaries
        ensure_pgbackrest
        echo "==> recovery validate dags/specs"
        "$VENV/bin/recovery" validate dags/specs
        exec "$VENV/bin/python" -m scripts.demo up "${@:2}"
        ;;
    stop|status)
        exec "$VENV/bin/python" -m scripts.demo "$command"
        ;;
    *)
        echo "usage: bash scripts/demo.sh [up|status|stop]" >&2
        exit 2
        ;;
esac
