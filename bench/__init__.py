"""Benchmarks: run by `make bench`; each prints its figures and the baseline it compares with."""
