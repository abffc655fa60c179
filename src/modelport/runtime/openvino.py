"""Native OpenVINO: the ONNX file compiled for the CPU by ``openvino.Core``.

The CPU plugin's default precision is not fp32 everywhere: on CPUs with AVX512-BF16 or AMX it runs
matrix work in bf16, which is faster and visibly less exact. ``openvino:f32`` pins fp32 with
``INFERENCE_PRECISION_HINT`` so its answers compare at the bundle's tolerance; ``openvino:bf16`` asks for
bf16 (refused on a CPU without it, rather than quietly run in fp32); ``openvino:default``
leaves the device's choice and says so in ``precision`` ("default") and ``describe()`` (the precision
the device actually picked).

Shapes known at compile time make the CPU plugin's kernels faster (all-MiniLM-L6-v2's int8-weights model
at (1, 128): 7.97 ms against 8.71 dynamic, ``benchmarks/results/openvino-knobs.md``). So a runner
fed the same shapes ``HOT_SHAPE_CALLS`` times in a row compiles a copy of the model reshaped to them,
and runs those shapes on it from then on; every other shape runs on the dynamic model. Only the latest
copy is kept (two compiled models at most) and a runner compiles at most ``MAX_STATIC_COPIES`` in its
life, so shapes that keep changing never turn into a compilation per call. ``static_shapes=False``
runs everything on the dynamic model; ``describe()`` says which shapes have their own copy.

A generation graph can run stateful (``state``: past input -> present output; ``openvino_state``): the KV
cache lives in the compiled model's variables, read and written through ``state_request()``s, and the
runner's inputs leave the past out. Such a runner never compiles static-shape copies (the state
belongs to one infer request); ``kv_cache_precision`` asks the CPU plugin to store the cache compressed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import BundleError, FeedError, MissingExtraError, UsageError, first_line
from modelport.runtime.base import Runner, Target, TensorInfo, check_options, infos_from_signature
from modelport.runtime.openvino_state import KV_CACHE_PRECISIONS, StateRequest, make_stateful
from modelport.spec import Signature

__all__ = ["OpenVINORunner", "PRECISIONS", "cpu_has_bf16", "infer_error"]

PRECISIONS = ("f32", "bf16", "default")
HOT_SHAPE_CALLS = 3  # calls in a row with the same shapes before a static-shape copy is compiled for them
MAX_STATIC_COPIES = 4  # static-shape copies one runner compiles in its life (only the latest is kept)
Shapes = tuple[tuple[str, tuple[int, ...]], ...]


class OpenVINORunner(Runner):
    @classmethod
    def for_backend(cls, backend: Any, target: Target, options: dict[str, Any]) -> OpenVINORunner:
        args = dict(precision=backend.variant, threads=target.threads, signature=target.signature,
                    output_names=target.output_names)  # fmt: skip
        check_options(cls, options, set(args), backend.canonical)
        return cls(target.model_path, **args, **options)  # type: ignore[arg-type]

    def __init__(
        self,
        path: str | Path,
        precision: str = "f32",
        threads: int | None = None,
        *,
        signature: Signature | None = None,
        output_names: list[str] | None = None,
        device: str = "CPU",
        warmup: int = 0,
        static_shapes: bool = True,
        state: dict[str, str] | None = None,
        kv_cache_precision: str | None = None,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise UsageError(f"unknown OpenVINO precision {precision!r}", f"choose one of: {', '.join(PRECISIONS)}")
        self.path = Path(path)
        self.mode = precision
        self.precision = {"f32": "fp32", "bf16": "bf16"}.get(precision, "default")
        self.name = f"openvino:{precision}"
        self.threads = threads
        self.device = device
        self.warmup = warmup
        if kv_cache_precision is not None and (not state or kv_cache_precision not in KV_CACHE_PRECISIONS):
            raise UsageError(
                f"KV cache precision {kv_cache_precision!r} needs a stateful runner (state=) and one of: "
                + ", ".join(KV_CACHE_PRECISIONS),
                "pass state= with a precision from that list, or drop kv_cache_precision",
            )
        self.state = dict(state or {})
        self.kv_cache_precision = kv_cache_precision
        # a stateful runner's past is fed, and its present kept, by the runtime itself
        self.signature = signature
        if self.state and signature is not None:
            self.signature = Signature([s for s in signature.inputs if s.name not in self.state], signature.dims)
        self.output_names = [n for n in output_names if n not in self.state.values()] if output_names else None
        self.static_shapes = static_shapes and not self.state
        self.compiled: Any = None
        self._core: Any = None
        self._config: dict[str, Any] = {}
        self._request: Any = None
        self._ports: list[tuple[str, Any]] = []
        self._static: tuple[Shapes, Any, list[tuple[str, Any]]] | None = None  # shapes, request, ports
        self._last: Shapes = ()
        self._streak = 0
        self._copies = 0

    def _load(self) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise MissingExtraError("the openvino backend", "openvino") from None
        core = ov.Core()
        if self.mode == "bf16" and not cpu_has_bf16(core):
            raise UsageError(
                "openvino:bf16 needs a CPU with bf16 instructions (AVX512-BF16 or AMX); this one has none",
                "use openvino:f32",
            )
        config: dict[str, Any] = {}
        if self.mode != "default":
            config["INFERENCE_PRECISION_HINT"] = self.mode
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.kv_cache_precision:
            config["KV_CACHE_PRECISION"] = self.kv_cache_precision
        try:
            model: Any = str(self.path)
            if self.state:
                model = core.read_model(model)
                make_stateful(model, self.state)
            self.compiled = core.compile_model(model, self.device, config)
        except Exception as exc:
            raise BundleError(
                f"OpenVINO {ov.__version__} cannot compile {self.path.name} for {self.device}: {_reason(exc)}",
                f"run `modelport doctor {self.path}`; or use another backend (ort:cpu)",
            ) from exc
        self._core, self._config = core, config
        self._request = self.compiled.create_infer_request()
        self._ports = self._output_ports(self.compiled)

    def state_request(self) -> StateRequest:
        """A new infer request with a KV cache of its own (a stateful runner only)."""
        if not self.state:
            raise UsageError(f"{self.name} on {self.path.name} is not stateful", "create it with state=")
        self._need()
        return StateRequest(self.compiled, self._ports, self.state)

    def _output_ports(self, compiled: Any) -> list[tuple[str, Any]]:
        """The outputs by the ONNX output names, in the graph's order (OpenVINO keeps the ONNX names
        among each output's tensor names, beside names of its own)."""
        ports = list(compiled.outputs)
        if not self.output_names:
            return [(p.get_any_name(), p) for p in ports]
        out = []
        for index, name in enumerate(self.output_names):
            port = next((p for p in ports if name in p.get_names()), ports[index] if index < len(ports) else None)
            if port is None:
                raise BundleError(f"OpenVINO's compiled model has no output {name!r}", "re-export the bundle")
            out.append((name, port))
        return out

    def inputs(self) -> list[TensorInfo]:
        if self.signature is not None:
            return infos_from_signature(self.signature)
        return [_info(p.get_any_name(), p) for p in self._need().inputs]

    def outputs(self) -> list[TensorInfo]:
        self._need()
        return [_info(name, port) for name, port in self._ports]

    def _infer(self, feed: dict[str, np.ndarray], timeout: float | None) -> dict[str, np.ndarray]:
        shapes = tuple(sorted((name, tuple(array.shape)) for name, array in feed.items()))
        static = self._static if self._static is not None and self._static[0] == shapes else None
        request, ports = (static[1], static[2]) if static else (self._request, self._ports)
        try:
            result = request.infer(feed)
        except Exception as exc:
            raise infer_error(exc) from exc
        outputs = {name: np.array(result[port], copy=True) for name, port in ports}
        if static is None:
            self._count(shapes)
        return outputs

    def _count(self, shapes: Shapes) -> None:
        """After a run on the dynamic model: once the same shapes have run ``HOT_SHAPE_CALLS`` times in a
        row, compile the static-shape copy the next calls with them run on."""
        self._streak = self._streak + 1 if shapes == self._last else 1
        self._last = shapes
        if not self.static_shapes or self._streak < HOT_SHAPE_CALLS or self._copies >= MAX_STATIC_COPIES:
            return
        self._copies += 1
        self._static = None  # the previous copy goes before the next is compiled
        try:
            self._static = (shapes, *self._compile_static(dict(shapes)))
        except Exception as exc:  # a model that cannot be reshaped to these shapes: the dynamic one runs them
            self.static_shapes = False
            self.warnings.append(
                f"OpenVINO could not compile a static-shape copy of {self.path.name} ({_reason(exc)}); "
                "every shape runs on the dynamic model"
            )

    def _compile_static(self, shapes: dict[str, tuple[int, ...]]) -> tuple[Any, list[tuple[str, Any]]]:
        model = self._core.read_model(str(self.path))
        model.reshape({port: shapes[name] for port in model.inputs for name in port.get_names() if name in shapes})
        compiled = self._core.compile_model(model, self.device, self._config)
        return compiled.create_infer_request(), self._output_ports(compiled)

    def _close(self) -> None:
        self._request = None
        self._static = None
        self.compiled = None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["device"] = self.device
        if self.compiled is not None:
            import openvino as ov

            info["openvino"] = ov.__version__
            info["inference_precision"] = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            info["threads"] = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        if self.state:
            info["state"] = f"{len(self.state)} variables (the KV cache)"
            if self.kv_cache_precision:
                info["kv_cache_precision"] = self.kv_cache_precision
        if not self.static_shapes:
            info["static_shapes"] = "off"
        elif self._static is not None:
            info["static_shapes"] = ", ".join(f"{n}={'x'.join(map(str, s))}" for n, s in self._static[0])
        return info

    def _need(self) -> Any:
        self.require_loaded()
        return self.compiled


def _info(name: str, port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorInfo(name, shape, port.get_element_type().to_dtype().name)


def infer_error(exc: BaseException) -> FeedError:
    """A failed OpenVINO inference, as a one-line error."""
    return FeedError(
        f"OpenVINO failed: {_reason(exc)}",
        "check the feed's names, shapes and dtypes against the bundle's inputs (modelport doctor DIR)",
    )


def _reason(exc: BaseException) -> str:
    """What an OpenVINO error says, without the source locations it opens with ("Exception from
    src/inference/src/cpp/core.cpp:132:", "Check 'false' failed at ...") that would fill a one-line error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    noise = ("Exception from ", "Check '", "FrontEnd API failed", "While validating", "Summary:", "--")
    said = [ln for ln in lines if not ln.startswith(noise)]
    return " ".join(said[:2])[:300] if said else first_line(exc)


def cpu_has_bf16(core: Any = None) -> bool:
    """Whether OpenVINO's CPU plugin can compute in bf16 here (False without OpenVINO)."""
    try:
        import openvino as ov

        return "BF16" in (core or ov.Core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no openvino, or a plugin that cannot say: no
        return False
