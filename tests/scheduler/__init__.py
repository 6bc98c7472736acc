"""Tests on a real Airflow scheduler (and real PostgreSQL) started once per session."""
