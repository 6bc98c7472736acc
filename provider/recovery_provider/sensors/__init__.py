"""Recovery sensors: PostgreSQL health, replica lag, backup freshness (the RPO). All can defer."""
