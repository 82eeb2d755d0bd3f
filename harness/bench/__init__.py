"""Benchmarks that print figures: `harness bench peer` (harness.bench.peer) and `harness roofline`
(harness.bench.roofline)."""
