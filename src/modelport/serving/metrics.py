"""Prometheus metrics under Triton's names and labels (``model``, ``version``), so dashboards made for
Triton read a modelport server unchanged, plus a histogram of the batch sizes the batcher ran.

Triton's counters carry no ``_total`` suffix, which prometheus-client writes for every counter (in its
``# TYPE`` line at least), so the counters are rendered here as Triton renders them (model names are
plain: ``models.parse_source`` allows no quote or newline); the histogram is prometheus-client's.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest

if TYPE_CHECKING:
    from modelport.serving.models import ServedModel

__all__ = ["Metrics"]

_COUNTERS = {
    "nv_inference_request_success": "Number of successful inference requests, all batch sizes",
    "nv_inference_request_failure": "Number of failed inference requests, all batch sizes",
    "nv_inference_count": "Number of inferences performed (a batch of N counts N)",
    "nv_inference_exec_count": "Number of model executions performed",
    "nv_inference_request_duration_us": "Cumulative inference request duration in microseconds",
    "nv_inference_queue_duration_us": "Cumulative inference queuing duration in microseconds",
    "nv_inference_compute_infer_duration_us": "Cumulative compute inference duration in microseconds",
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._values: dict[tuple[str, str, str], float] = defaultdict(float)
        self._failures: dict[tuple[str, str, str], float] = defaultdict(float)
        self._lock = threading.Lock()
        self.batch_size = Histogram(
            "modelport_batch_size",
            "Requests' rows merged into one execution by the dynamic batcher",
            ["model", "version"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )

    def _add(self, name: str, model: ServedModel, value: float) -> None:
        with self._lock:
            self._values[(name, model.name, model.version)] += value

    def request(self, model: ServedModel, ok: bool, seconds: float, reason: str = "OTHER") -> None:
        if ok:
            self._add("nv_inference_request_success", model, 1)
            self._add("nv_inference_request_duration_us", model, seconds * 1e6)
        else:
            with self._lock:
                self._failures[(model.name, model.version, reason)] += 1

    def executed(self, model: ServedModel, rows: int, seconds: float) -> None:
        self._add("nv_inference_count", model, rows)
        self._add("nv_inference_exec_count", model, 1)
        self._add("nv_inference_compute_infer_duration_us", model, seconds * 1e6)
        self.batch_size.labels(model.name, model.version).observe(rows)

    def queued(self, model: ServedModel, seconds: float) -> None:
        self._add("nv_inference_queue_duration_us", model, seconds * 1e6)

    def render(self) -> bytes:
        """The Prometheus text format: Triton's counters, then the batch-size histogram."""
        with self._lock:
            values, failures = dict(self._values), dict(self._failures)
        lines = []
        for name, doc in _COUNTERS.items():
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} counter"]
            if name == "nv_inference_request_failure":
                for (model, version, reason), value in failures.items():
                    lines.append(f'{name}{{model="{model}",reason="{reason}",version="{version}"}} {value:.0f}')
            for (which, model, version), value in values.items():
                if which == name:
                    lines.append(f'{name}{{model="{model}",version="{version}"}} {value:.0f}')
        return "\n".join(lines).encode() + b"\n" + generate_latest(self.registry)
