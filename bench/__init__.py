"""Benchmarks, one script per concern; see bench/README.md. Not collected by pytest."""
