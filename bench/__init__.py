"""Benchmarks: speed ratios against reference pipelines, measured in one process on one input."""
