"""Performance benchmarks: measured with `make bench`, recorded in docs/benchmarks.md."""
