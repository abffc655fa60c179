"""Native OpenVINO on the CPU: fp32 agrees with ONNX Runtime at the bundle's tolerance across dynamic
shapes; the device's default precision says what it is and stays inside its looser tolerance; shapes
fed again and again run on a static-shape copy that answers like the dynamic model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from modelport.bundle import Bundle
from modelport.compare import cosine
from modelport.exporting import export
from modelport.feeds import make_feeds
from modelport.runtime.openvino import HOT_SHAPE_CALLS, MAX_STATIC_COPIES
from modelport.runtime.registry import create
from modelport.tolerances import tolerance_for
from tests.conftest import ZOO, zoo_specs

pytestmark = pytest.mark.openvino
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    folder = tmp_path_factory.mktemp("openvino")
    out = {}
    for name in ("dynamic_cnn", "multi_output"):
        inputs, dims = zoo_specs(name)
        out[name] = export(f"{ZOO}:{name}", folder / name, inputs, dims).bundle
    return out


def compare_with_ort(backend: str, bundle: Bundle, **options: object) -> dict[str, float]:
    """Max abs difference per output over the verification feeds; asserts the precision's tolerance."""
    worst: dict[str, float] = {}
    with create("ort:cpu", bundle) as ref, create(backend, bundle, **options) as runner:
        for feed in make_feeds(bundle.signature):
            expected, got = ref.infer(feed.arrays), runner.infer(feed.arrays)
            assert list(got) == list(expected), "outputs by the ONNX names, in order"
            for name, want in expected.items():
                assert got[name].shape == want.shape and got[name].dtype == want.dtype, (feed.label, name)
                atol, rtol = tolerance_for(runner, 1e-4, 1e-3, want)
                np.testing.assert_allclose(got[name], want, atol=atol, rtol=rtol, err_msg=f"{feed.label} {name}")
                worst[name] = max(worst.get(name, 0.0), float(np.abs(got[name].astype(float) - want).max()))
    return worst


@pytest.mark.parametrize("model", ["dynamic_cnn", "multi_output"])
def test_f32_agrees_with_ort_at_every_size(bundles: dict[str, Bundle], model: str) -> None:
    compare_with_ort("openvino", bundles[model])


def test_f32_pins_the_precision_and_threads(bundles: dict[str, Bundle]) -> None:
    with create("openvino:f32", bundles["dynamic_cnn"], threads=1, warmup=1) as runner:
        info = runner.describe()
        assert runner.precision == "fp32" and info["inference_precision"] == "f32"
        assert info["threads"] == 1 and "cold_start_s" in info["timings"]
        assert [i.name for i in runner.inputs()] == ["x"] and [o.name for o in runner.outputs()] == ["output"]


def test_default_says_it_is_not_fp32_and_keeps_its_tolerance(bundles: dict[str, Bundle]) -> None:
    with create("openvino:default", bundles["dynamic_cnn"]) as runner:
        assert runner.precision == "default"
        assert runner.describe()["inference_precision"] in ("bf16", "f16", "f32")
    compare_with_ort("openvino:default", bundles["dynamic_cnn"])


def test_a_shape_fed_again_and_again_runs_on_a_static_copy_with_the_same_answers(bundles) -> None:
    bundle = bundles["dynamic_cnn"]
    small, large = (np.random.default_rng(0).standard_normal((b, 3, 24, 24)).astype(np.float32) for b in (1, 2))
    with create("openvino:f32", bundle) as runner, create("openvino:f32", bundle, static_shapes=False) as plain:
        want = plain.infer({"x": small})["output"]
        for call in range(HOT_SHAPE_CALLS + 2):
            np.testing.assert_array_equal(runner.infer({"x": small})["output"], want, err_msg=f"call {call}")
        assert runner.describe()["static_shapes"] == "x=1x3x24x24"
        # another shape runs on the dynamic model: right answer, the copy stays
        np.testing.assert_array_equal(runner.infer({"x": large})["output"], plain.infer({"x": large})["output"])
        assert runner.describe()["static_shapes"] == "x=1x3x24x24"
        assert plain.describe()["static_shapes"] == "off"


def test_shapes_that_keep_changing_compile_a_bounded_number_of_copies(bundles) -> None:
    with create("openvino:f32", bundles["dynamic_cnn"]) as runner:
        for _ in range(2 * HOT_SHAPE_CALLS):  # alternating shapes never make a streak
            runner.infer({"x": np.ones((1, 3, 8, 8), np.float32)})
            runner.infer({"x": np.ones((2, 3, 8, 8), np.float32)})
        assert "static_shapes" not in runner.describe()
        sides = [8 + 4 * i for i in range(MAX_STATIC_COPIES + 2)]
        for side in sides:
            for _ in range(HOT_SHAPE_CALLS):
                runner.infer({"x": np.ones((1, 3, side, side), np.float32)})
        # the last copy compiled is the one kept; the hot shapes after it run on the dynamic model
        last = sides[MAX_STATIC_COPIES - 1]
        assert runner.describe()["static_shapes"] == f"x=1x3x{last}x{last}"


def test_feeds_that_fail_do_not_count_towards_a_static_copy(bundles) -> None:
    from modelport.errors import FeedError

    with create("openvino:f32", bundles["dynamic_cnn"].path / "model.onnx") as runner:  # no signature to check
        for _ in range(HOT_SHAPE_CALLS):
            with pytest.raises(FeedError, match="OpenVINO failed"):
                runner.infer({"x": np.ones((1, 5, 8, 8), np.float32)})  # 5 channels where the model has 3
        assert "static_shapes" not in runner.describe() and not runner.warnings
        for _ in range(HOT_SHAPE_CALLS):
            runner.infer({"x": np.ones((1, 3, 8, 8), np.float32)})
        assert runner.describe()["static_shapes"] == "x=1x3x8x8"


def test_a_graph_openvino_cannot_read_is_refused_with_its_reason_not_a_source_location(tmp_path) -> None:
    """A DequantizeLinear with a 4-D scale (what NNCF wrote for Conv weights) is valid ONNX that
    OpenVINO's reader refuses; its message opens with C++ source locations."""
    from onnx import TensorProto, helper, numpy_helper

    from modelport.errors import BundleError

    weight = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.int8), "w")
    scale = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "s")
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w", "s"], ["y"])], "g", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1, 1, 1])], [weight, scale],
    )  # fmt: skip
    path = tmp_path / "dq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path)
    with pytest.raises(BundleError) as info:
        create("openvino:f32", path).load()
    assert "cannot compile dq.onnx" in info.value.message
    assert "Dequantization scale needs to be a scalar or a vector" in info.value.message
    assert "Exception from" not in info.value.message and "\n" not in info.value.message


@pytest.mark.slow
@pytest.mark.hf
def test_minilm_default_precision_stays_within_its_tolerance(minilm_bundle) -> None:
    bundle = Bundle.open(minilm_bundle)
    exact = compare_with_ort("openvino:f32", bundle)
    assert max(exact.values()) < 1e-4
    compare_with_ort("openvino:default", bundle)
    with create("ort:cpu", bundle) as ref, create("openvino:default", bundle) as runner:
        for feed in make_feeds(bundle.signature):
            want = ref.infer(feed.arrays)["sentence_embedding"]
            got = runner.infer(feed.arrays)["sentence_embedding"]
            assert min(cosine(a, b) for a, b in zip(got, want, strict=True)) > 0.9999, feed.label
