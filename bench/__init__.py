"""Benchmarks on real data and cost measurements; run each as `python -m bench.<name> --help`."""
