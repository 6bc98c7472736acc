"""The end-to-end demo: local PostgreSQL primary + replica, a file:// backup store, a real Airflow
(api-server, scheduler, dag-processor, triggerer, LocalExecutor) running the DAG pack in dags/.

`python -m scripts.demo up|stop|status` (PYTHONPATH = the repository); `bash scripts/demo.sh` is
the documented entry point. Everything lives in `.recovery/demo/` (or `$RECOVERY_DEMO_DIR`).
"""
