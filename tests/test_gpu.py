"""GPU runtimes: ONNX Runtime with CUDA and TensorRT providers, and native TensorRT. Skipped where
there is no CUDA provider / no tensorrt module; run them on a GPU machine with ``-m gpu``."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from modelport.bundle import Bundle
from modelport.exporting import export
from modelport.feeds import make_feeds
from modelport.runtime.registry import create, tolerance_for
from tests.conftest import ZOO, zoo_specs

pytestmark = pytest.mark.gpu
PROVIDERS = ort.get_available_providers()
needs_cuda = pytest.mark.skipif("CUDAExecutionProvider" not in PROVIDERS, reason="no CUDAExecutionProvider")
needs_trt_ep = pytest.mark.skipif("TensorrtExecutionProvider" not in PROVIDERS, reason="no TensorrtExecutionProvider")


def cuda_torch() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    inputs, dims = zoo_specs("dynamic_cnn")
    return export(f"{ZOO}:dynamic_cnn", tmp_path_factory.mktemp("gpu") / "cnn", inputs, dims).bundle


def assert_agree(backend: str, bundle: Bundle, **options: object) -> None:
    with create("ort:cpu", bundle) as ref, create(backend, bundle, **options) as runner:
        for feed in make_feeds(bundle.signature):
            want, got = ref.infer(feed.arrays), runner.infer(feed.arrays)
            assert list(got) == list(want)
            for name in want:
                atol, rtol = tolerance_for(runner, 1e-4, 1e-3, want[name])
                np.testing.assert_allclose(
                    got[name], want[name], atol=atol, rtol=rtol, err_msg=f"{backend} {feed.label}"
                )


@needs_cuda
def test_cuda_agrees_binds_io_and_keeps_compute_on_the_gpu(bundle: Bundle) -> None:
    assert_agree("ort:cuda,cpu", bundle)
    with create("ort:cuda,cpu", bundle) as runner:
        assert runner.describe()["io_binding"] is True
        feed = runner.example_feed()
        on_device = runner.device_feed(feed)
        np.testing.assert_allclose(runner.infer(on_device)["output"], runner.infer(feed)["output"])
        report = runner.placement()
    assert report.first_choice == "CUDAExecutionProvider"
    assert report.heavy_share_on_first == 1.0, report.summary()


@needs_trt_ep
def test_ort_tensorrt_builds_profiles_and_caches_the_engine(bundle: Bundle) -> None:
    assert_agree("ort:tensorrt,cuda,cpu", bundle)
    with create("ort:tensorrt,cuda,cpu", bundle) as runner:
        cache = runner.cache_dir / "trt"
        assert runner.session.get_providers()[0] == "TensorrtExecutionProvider"
    assert any(cache.iterdir()), "TensorRT engine cache is empty"
    assert_agree("ort:tensorrt,cuda,cpu", bundle, fp16=True)


def test_native_tensorrt_agrees_and_reuses_its_cached_engine(bundle: Bundle) -> None:
    pytest.importorskip("tensorrt")
    cuda_torch()
    assert_agree("tensorrt", bundle)
    with create("tensorrt", bundle) as runner:
        assert runner.describe()["from_cache"] is True
    assert_agree("tensorrt:fp16", bundle)
