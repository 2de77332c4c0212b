"""Benchmarks of llmctr on ML-1M: entry scripts here, run from the repository root as ``python -m benchmarks.NAME``;
shared helpers in ``lib/``, the FuxiCTR side (its own virtualenv) in ``fuxictr/``, stdout-only probes in ``probes/``;
measured results in ``results/``."""
