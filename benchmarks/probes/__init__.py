"""Probes: measurements that print to stdout and write no results JSON (``python -m benchmarks.probes.NAME``)."""
