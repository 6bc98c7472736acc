"""Recovery operators: PostgreSQL backup/restore/drill/promote, backup verification and retention, HTTP checks."""
