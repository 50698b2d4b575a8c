"""Benchmark suites, one module each, registered with @register_suite."""
