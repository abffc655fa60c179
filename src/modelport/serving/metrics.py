"""Prometheus metrics under Triton's names and labels (``model``, ``version``), so dashboards made for
Triton read a modelport server unchanged, plus a histogram of the batch sizes the batcher ran; for
generation, vLLM's names and label (``model_name``), so dashboards made for vLLM read it too.

Triton's counters carry no ``_total`` suffix, which prometheus-client writes for every counter (in its
``# TYPE`` line at least), so the counters are rendered here as Triton renders them (model names are
plain: ``models.parse_source`` allows no quote or newline); the histogram is prometheus-client's.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from modelport.serving.models import ServedModel

__all__ = ["Metrics", "GenerationMetrics"]

# vLLM's buckets for its latency histograms (seconds)
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0)
_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0)
_E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0)

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

        self.generation = GenerationMetrics(self.registry)

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


class GenerationMetrics:
    """vLLM's metrics of generation requests, one ``model_name`` label per served generation model."""

    def __init__(self, registry: CollectorRegistry) -> None:
        label = ["model_name"]
        self.time_to_first_token = Histogram(
            "vllm:time_to_first_token_seconds", "Time to first token, from arrival", label,
            buckets=_TTFT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.time_per_output_token = Histogram(
            "vllm:time_per_output_token_seconds", "Time between a request's consecutive tokens", label,
            buckets=_TPOT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.e2e_latency = Histogram(
            "vllm:e2e_request_latency_seconds", "Arrival to last token", label, buckets=_E2E_BUCKETS, registry=registry
        )
        self.running = Gauge("vllm:num_requests_running", "Sequences in the decode batch", label, registry=registry)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests queued for a slot", label, registry=registry)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens prefilled", label, registry=registry)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated", label, registry=registry)
        self.finished = Counter(
            "vllm:request_success", "Requests finished, by reason (stop, length, abort)", [*label, "finished_reason"],
            registry=registry,
        )  # fmt: skip

    def watch(self, name: str, running: Callable[[], int], waiting: Callable[[], int]) -> None:
        """Read the scheduler's counts at every scrape."""
        self.running.labels(name).set_function(running)
        self.waiting.labels(name).set_function(waiting)

    def ended(self, name: str, prompt_tokens: int, new_tokens: int, seconds: float, reason: str) -> None:
        self.prompt_tokens.labels(name).inc(prompt_tokens)
        self.generation_tokens.labels(name).inc(new_tokens)
        self.e2e_latency.labels(name).observe(seconds)
        self.finished.labels(name, reason).inc()
