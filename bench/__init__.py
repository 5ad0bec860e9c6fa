"""Benchmarks of coalmine's router. Not part of the test suite; run them by hand."""
