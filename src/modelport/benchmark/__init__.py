"""Benchmarks: every backend on the same feeds, timed honestly, with parity and the roofline.

method.py runs the measurement, machine.py says what it ran on (and measures the sgemm peak),
report.py writes the JSON records, the Markdown report and its plot."""

from modelport.benchmark.machine import fingerprint, measure_peak
from modelport.benchmark.method import DEFAULT_BACKENDS, BenchConfig, BenchResult, bench
from modelport.benchmark.shapes import shape_grid

__all__ = ["bench", "BenchConfig", "BenchResult", "DEFAULT_BACKENDS", "shape_grid", "fingerprint", "measure_peak"]
