"""Benchmarks (`python -m bench`, `make bench`): measurements to read, never assertions."""
