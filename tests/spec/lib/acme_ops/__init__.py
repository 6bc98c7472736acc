"""A team's own operators, imported by path from the golden corpus (`uses: acme_ops.dns:...`)."""
