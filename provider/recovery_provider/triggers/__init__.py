"""Triggers for deferrable recovery sensors (run in the triggerer; import nothing heavy at module level)."""
