"""Run evidence: the ledger of what each recovery run did, its report, and the plugin pages."""

URL_PREFIX = "/recovery"  # where the api-server mounts the evidence pages and JSON API
