"""Benchmarks: converters from point-based datasets into instruction folders, runners, reports."""
