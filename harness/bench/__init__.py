"""Benchmarks that print figures: `harness bench peer` (harness.bench.peer)."""
