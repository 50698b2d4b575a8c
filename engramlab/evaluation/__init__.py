"""Metrics and the benchmark suites that reproduce the papers' tables."""
