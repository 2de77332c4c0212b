"""Helpers shared by the benchmark entry scripts (results JSON, quiet-machine measurement, the zoo report)."""
