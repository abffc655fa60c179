"""Benchmarks: every backend on the same feeds, timed honestly, with parity and the roofline.

api.py is ``modelport.bench`` (and every decision the CLI used to make), timing.py runs the measurement,
shapes.py makes the grid of sizes, machine.py says what it ran on (and measures the sgemm peak),
report.py writes the JSON records, the Markdown report and its plot."""

from modelport.benchmark.machine import fingerprint, measure_peak
from modelport.benchmark.shapes import shape_grid
from modelport.benchmark.timing import DEFAULT_BACKENDS, BenchConfig, BenchResult, bench

__all__ = ["bench", "BenchConfig", "BenchResult", "DEFAULT_BACKENDS", "shape_grid", "fingerprint", "measure_peak"]
