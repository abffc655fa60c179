"""GPU runtimes: ONNX Runtime's CUDA and TensorRT providers and native TensorRT, each checked against
PyTorch at the tolerance of the precision its name asks for (fp32 unless ``:tf32`` / ``:fp16``; ORT's
TensorRT provider cannot turn TF32 off, so it is held to tf32). They skip where there is no CUDA
provider, no tensorrt module or no CUDA torch; under ``make test-gpu`` (MODELPORT_REQUIRE_GPU=1, see
tests/conftest.py) such a skip fails instead, so a GPU run cannot pass without testing anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from modelport.bundle import Bundle
from modelport.exporting import export
from modelport.feeds import make_feeds
from modelport.runtime.registry import create
from modelport.runtime.tensorrt import TensorRTRunner
from modelport.spec import Signature, parse_input
from modelport.verification.bundle import verify
from tests.conftest import ZOO, zoo_specs

pytestmark = pytest.mark.gpu
PROVIDERS = ort.get_available_providers()
needs_cuda = pytest.mark.skipif("CUDAExecutionProvider" not in PROVIDERS, reason="no CUDAExecutionProvider")
needs_trt_ep = pytest.mark.skipif("TensorrtExecutionProvider" not in PROVIDERS, reason="no TensorrtExecutionProvider")


def native_tensorrt() -> None:
    pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU (native TensorRT keeps its buffers in torch CUDA tensors)")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    inputs, dims = zoo_specs("dynamic_cnn")
    return export(f"{ZOO}:dynamic_cnn", tmp_path_factory.mktemp("gpu") / "cnn", inputs, dims).bundle


def agrees_with_pytorch(bundle: Bundle, backend: str, precision: str) -> None:
    """The bundle's own parity check against PyTorch eager (every symbol at min, max, mid; x100 and negated
    feeds), on ``backend``, at the tolerance of ``precision``; ParityError otherwise."""
    report = verify(bundle, backend=backend)
    assert report.precision == precision, report.summary()


@needs_cuda
def test_cuda_agrees_binds_io_and_keeps_compute_on_the_gpu(bundle: Bundle) -> None:
    agrees_with_pytorch(bundle, "ort:cuda,cpu", "fp32")  # use_tf32=0: true fp32, the bundle's tolerance
    with create("ort:cuda,cpu", bundle) as runner:
        assert runner.describe()["io_binding"] is True
        feed = runner.example_feed()
        on_device = runner.device_feed(feed)
        np.testing.assert_allclose(runner.infer(on_device)["output"], runner.infer(feed)["output"])
        report = runner.placement()
    assert report.first_choice == "CUDAExecutionProvider"
    assert report.heavy_share_on_first == 1.0, report.summary()


@needs_cuda
def test_cuda_tf32_agrees_at_the_tf32_tolerance(bundle: Bundle) -> None:
    agrees_with_pytorch(bundle, "ort:cuda,cpu:tf32", "tf32")


@needs_cuda
def test_optimize_measures_fp32_and_fp16_on_cuda_and_ships_the_cuda_backend(bundle: Bundle, tmp_path: Path) -> None:
    import modelport

    timing = {"min_runs": 3, "min_seconds": 0.05, "warmup": 1}
    result = modelport.optimize(bundle.path, tmp_path / "fast", candidates="cuda-fp32,fp16", timing=timing)
    tried = {c.name: c for c in result.search.candidates}
    assert all(c.backend == "ort:cuda,cpu" and c.p50_ms for c in tried.values()), result.search.candidates
    assert tried["cuda-fp32"].within  # fp32 on CUDA with TF32 off stays within cos >= 0.999
    optimized = Bundle.open(result.bundle.path)
    assert optimized.backend == "ort:cuda,cpu"
    with create(None, optimized) as runner:
        assert runner.session.get_providers()[0] == "CUDAExecutionProvider"


@needs_trt_ep
@pytest.mark.parametrize(
    ("backend", "precision"), [("ort:tensorrt,cuda,cpu", "tf32"), ("ort:tensorrt,cuda,cpu:fp16", "fp16")]
)
def test_ort_tensorrt_agrees_at_its_precision(bundle: Bundle, backend: str, precision: str) -> None:
    agrees_with_pytorch(bundle, backend, precision)


@needs_trt_ep
def test_ort_tensorrt_builds_one_engine_per_profile_across_the_declared_shapes(bundle: Bundle, tmp_path: Path) -> None:
    """The optimization profile spans the --dim bounds, so shapes inside them (every symbol at min, max, mid,
    mixed) reuse the engine built for the first: as many engines as TensorRT subgraphs, none rebuilt."""
    cache = tmp_path / "cache"  # a folder of its own: no engine from another test
    feeds = make_feeds(bundle.signature)
    assert len({tuple(f.arrays["x"].shape) for f in feeds}) >= 4
    with create("ort:tensorrt,cuda,cpu", bundle, cache_dir=cache) as runner:
        assert runner.session.get_providers()[0] == "TensorrtExecutionProvider"
        runner.infer(feeds[0].arrays)
        first = {p.name: p.stat().st_mtime_ns for p in (cache / "trt").glob("*.engine")}
        for feed in feeds[1:]:
            runner.infer(feed.arrays)
        after = {p.name: p.stat().st_mtime_ns for p in (cache / "trt").glob("*.engine")}
        subgraphs = runner.placement().compiled.get("TensorrtExecutionProvider", 0)
    assert len(first) == subgraphs >= 1, (sorted(first), subgraphs)
    assert after == first, "an engine was rebuilt for a shape inside the declared bounds"


@pytest.mark.parametrize(
    ("backend", "precision"), [("tensorrt", "fp32"), ("tensorrt:tf32", "tf32"), ("tensorrt:fp16", "fp16")]
)
def test_native_tensorrt_agrees_at_its_precision(bundle: Bundle, backend: str, precision: str) -> None:
    native_tensorrt()
    agrees_with_pytorch(bundle, backend, precision)


def test_native_tensorrt_reuses_its_cached_engine(bundle: Bundle) -> None:
    native_tensorrt()
    with create("tensorrt", bundle) as runner:
        runner.infer(runner.example_feed())
    with create("tensorrt", bundle) as runner:
        assert runner.describe()["from_cache"] is True


def test_native_tensorrt_reads_shape_tensors_from_host_memory(tmp_path: Path) -> None:
    """y = Expand(x, shape): ``shape`` is a shape tensor, which TensorRT 10 reads from host memory
    (get_tensor_location == HOST); a device pointer there is read as host memory."""
    native_tensorrt()
    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["y"])],
        "expand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["h", "w"])],
    )  # fmt: skip
    path = tmp_path / "expand.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    signature = Signature.build([parse_input("x:1,1"), parse_input("shape:2:int64:1..9")])
    with TensorRTRunner(path, signature=signature) as runner:
        assert runner._on_host("shape")
        for shape in ([3, 4], [8, 1]):
            out = runner.infer({"x": np.full((1, 1), 2.5, np.float32), "shape": np.array(shape, np.int64)})["y"]
            assert out.shape == tuple(shape) and (out == 2.5).all()
