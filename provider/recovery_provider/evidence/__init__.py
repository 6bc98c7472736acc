"""Run evidence: the ledger of what each recovery run did, its report, and the plugin pages."""
