"""Benchmarks: run with `python -m bench.<name>`; each prints a table and a summary line."""
