"""Plan -> Airflow DAG. Imported only where Airflow parses DAGs; the CLI never imports it."""
