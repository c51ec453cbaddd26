"""Benchmarks (run all with `python -m bench`, or one with `python -m bench.NAME`); each prints a
table and writes JSON to bench/results/. Not timed tests: nothing here asserts a speed."""
