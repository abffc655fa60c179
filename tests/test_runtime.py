"""The runtime layer on this machine: backend names, provider policy, ONNX Runtime settings, the
placement report read from real profiles, and the PyTorch runners agreeing with ort:cpu."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modelport.bundle import Bundle
from modelport.errors import FeedError, UsageError
from modelport.exporting import export
from modelport.feeds import make_feeds
from modelport.machine import physical_cores
from modelport.runtime.base import Runner, TensorInfo, cache_folder
from modelport.runtime.ort import OrtRunner
from modelport.runtime.ort_session import provider_options
from modelport.runtime.providers import ProviderError, tensorrt_options
from modelport.runtime.registry import backend_help, backend_names, create, parse_backend
from modelport.runtime.tensorrt import EngineBuildError, TensorRTRunner
from modelport.spec import Signature, parse_dim, parse_input
from modelport.tolerances import tolerance_for
from tests.conftest import ZOO, zoo_specs

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    folder = tmp_path_factory.mktemp("runtime")
    out = {}
    for name in ("dynamic_cnn", "multi_output", "two_inputs"):
        inputs, dims = zoo_specs(name)
        out[name] = export(f"{ZOO}:{name}", folder / name, inputs, dims).bundle
    return out


def reference(bundle: Bundle) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """ort:cpu's answers on the verification feeds (every symbol at min, max, mid)."""
    feeds = [f.arrays for f in make_feeds(bundle.signature)]
    with create("ort:cpu", bundle) as runner:
        return [(feed, runner.infer(feed)) for feed in feeds]


def assert_agree(runner: Runner, bundle: Bundle, atol: float = 1e-4, rtol: float = 1e-3) -> None:
    for feed, expected in reference(bundle):
        got = runner.infer(feed)
        assert list(got) == list(expected)  # ONNX output names, in order
        for name, want in expected.items():
            assert got[name].dtype == want.dtype, name
            tol_a, tol_r = tolerance_for(runner, atol, rtol, want)
            np.testing.assert_allclose(got[name], want, atol=tol_a, rtol=tol_r, err_msg=f"{runner.name} {name}")


# -- names -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("ort", "ort:cpu"),
        ("ORT:CPUExecutionProvider", "ort:cpu"),
        ("ort:TensorrtExecutionProvider,cuda,CPU", "ort:tensorrt,cuda,cpu"),
        ("ort:cuda,cuda,cpu", "ort:cuda,cpu"),
        ("openvino", "openvino:f32"),
        ("openvino:default", "openvino:default"),
        ("ort:cuda:tf32", "ort:cuda:tf32"),
        ("ort:cuda:FP32", "ort:cuda"),
        ("ort:TensorrtExecutionProvider,cuda,cpu:fp16", "ort:tensorrt,cuda,cpu:fp16"),
        ("tensorrt", "tensorrt"),
        ("tensorrt:fp32", "tensorrt"),
        ("tensorrt:tf32", "tensorrt:tf32"),
        ("tensorrt:fp16", "tensorrt:fp16"),
        ("torch", "torch"),
        ("torchscript", "torchscript"),
        ("torch-compile", "torch-compile"),
    ],
)
def test_backend_names_are_canonicalised(name: str, canonical: str) -> None:
    assert parse_backend(name).canonical == canonical


def test_every_listed_name_parses_and_help_covers_each_family() -> None:
    for name in backend_names():
        assert parse_backend(name).canonical == name
    text = backend_help()
    for family in ("ort:", "openvino:", "tensorrt:", "torch:", "torchscript:", "torch-compile:"):
        assert family in text


@pytest.mark.parametrize(
    ("name", "closest"),
    [("opnevino", "'openvino'"), ("torchscrpt", "'torchscript'"), ("openvino:fp16", "'openvino:bf16'")],
)
def test_unknown_backend_lists_valid_names_and_the_closest(name: str, closest: str) -> None:
    with pytest.raises(UsageError, match=f"unknown backend '{name}'") as info:
        parse_backend(name)
    assert "valid backends: ort:cpu, ort:cuda" in str(info.value)
    assert f"did you mean {closest}?" in str(info.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ort:cpu:tf32", "tf32 applies to the CUDA and TensorRT providers, not cpu"),
        ("ort:tf32", "tf32 applies to the CUDA and TensorRT providers, not cpu"),
        ("ort:cuda,cpu:fp16", "fp16 applies to the TensorRT provider only"),
        ("tensorrt:bf16", "unknown backend 'tensorrt:bf16' \\(tensorrt takes :tf32 or :fp16\\)"),
    ],
)
def test_a_gpu_precision_must_fit_the_providers(name: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_backend(name)


def test_unknown_provider_names_the_closest_short_name() -> None:
    with pytest.raises(UsageError, match="unknown ONNX Runtime provider 'cdua'.*did you mean 'cuda'"):
        parse_backend("ort:cdua,cpu")


def test_create_sets_the_canonical_name_and_refuses_foreign_options(bundles: dict[str, Bundle]) -> None:
    bundle = bundles["multi_output"]
    assert create("ort:CPUExecutionProvider", bundle).name == "ort:cpu"
    assert create("openvino", bundle.path).name == "openvino:f32"  # a path works as well as a Bundle
    with pytest.raises(UsageError, match="option 'fp16' does not apply to backend openvino:f32"):
        create("openvino", bundle, fp16=True)
    with pytest.raises(UsageError, match="optimization levels apply to ort backends, not torch"):
        create("torch", bundle, optimization="disabled")
    with pytest.raises(UsageError, match="unknown fallback policy 'maybe'"):
        create("ort", bundle, fallback="maybe")
    with pytest.raises(UsageError, match="fp16 applies to the TensorRT provider only"):
        create("ort:cpu", bundle, fp16=True)


# -- providers -------------------------------------------------------------------------------------
@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA")
def test_missing_cuda_names_provider_available_ones_and_the_package(bundles: dict[str, Bundle]) -> None:
    runner = create("ort:cuda", bundles["multi_output"])
    with pytest.raises(ProviderError) as info:
        runner.load()
    line = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in line
    assert line.startswith("CUDAExecutionProvider is not available in onnxruntime")
    assert "available: " + ", ".join(ort.get_available_providers()) in line
    assert "pip install onnxruntime-gpu" in line and "--fallback allow" in line


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA")
def test_fallback_allow_runs_on_cpu_and_says_so(bundles: dict[str, Bundle]) -> None:
    bundle = bundles["multi_output"]
    with create("ort:tensorrt,cuda,cpu", bundle, fallback="allow") as runner:
        assert runner.session.get_providers() == ["CPUExecutionProvider"]
        assert len(runner.warnings) == 2
        assert runner.warnings[0].startswith("TensorrtExecutionProvider is not available here")
        assert runner.describe()["warnings"] == runner.warnings
        assert_agree(runner, bundle)


# -- ONNX Runtime settings -------------------------------------------------------------------------
def test_ort_settings_warmup_and_cold_start(bundles: dict[str, Bundle]) -> None:
    bundle = bundles["dynamic_cnn"]
    with create("ort", bundle, optimization="extended", inter_threads=2, warmup=2) as runner:
        info = runner.describe()
        assert info["intra_op_threads"] == physical_cores() >= 1
        assert info["inter_op_threads"] == 2 and info["optimization"] == "extended"
        assert info["providers"] == ["CPUExecutionProvider"] and info["io_binding"] is False
        timings = info["timings"]
        assert timings["cold_start_s"] == pytest.approx(timings["load_s"] + timings["first_run_s"], abs=1e-3)
        assert runner.inputs() == [TensorInfo("x", ("batch", 3, "h", "w"), "float32")]
        assert [o.name for o in runner.outputs()] == ["output"]
        assert_agree(runner, bundle)
    with create("ort", bundle, threads=1) as runner:
        assert runner.describe()["intra_op_threads"] == 1


def test_the_verification_constructor_still_works(bundles: dict[str, Bundle]) -> None:
    bundle = bundles["multi_output"]
    feed = {"x": np.ones((3, 4), np.float32)}
    with OrtRunner(bundle.model_path, optimization="disabled", threads=1) as slow, OrtRunner(bundle.model_path) as fast:
        assert slow.name == "ort:cpu"
        a, b = slow.infer(feed), fast.infer(feed)
    assert list(a) == ["logits", "probs", "top"]
    np.testing.assert_allclose(a["probs"], b["probs"], rtol=1e-5)


def test_run_errors_come_back_translated(bundles: dict[str, Bundle]) -> None:
    with create("ort", bundles["multi_output"]) as runner:
        with pytest.raises(FeedError, match="input 'x'") as info:  # the wording is diagnose.translate's
            runner.infer({"x": np.ones((2, 4), np.float64)})
    assert "\n" not in str(info.value) and "ONNXRuntimeError" not in str(info.value)


def test_tensorrt_profile_and_cache_options_come_from_the_signature(bundles: dict[str, Bundle]) -> None:
    bundle = bundles["two_inputs"]
    cache = cache_folder(bundle.model_path)
    assert cache == bundle.path.parent / ".modelport-cache" / bundle.path.name
    options = tensorrt_options(bundle.signature, cache / "trt", fp16=True)
    # tokens:m,seq image:n,patches,6 with m=1..6 n=1..9 seq=1..12 patches=1..5
    assert options["trt_profile_min_shapes"] == "tokens:1x1,image:1x1x6"
    assert options["trt_profile_max_shapes"] == "tokens:6x12,image:9x5x6"
    opt = {d.name: d.opt for d in bundle.signature.dims.values()}
    assert options["trt_profile_opt_shapes"] == f"tokens:{opt['m']}x{opt['seq']},image:{opt['n']}x{opt['patches']}x6"
    assert options["trt_engine_cache_enable"] == "True" and options["trt_fp16_enable"] == "True"
    assert options["trt_engine_cache_path"] == str(cache / "trt")


# -- placement -------------------------------------------------------------------------------------
def test_placement_on_cpu_counts_nodes_and_leaves_no_profile_behind(bundles: dict[str, Bundle]) -> None:
    before = set(Path(tempfile.gettempdir()).glob("modelport-profile-*"))
    with create("ort", bundles["dynamic_cnn"]) as runner:
        report = runner.placement(strict=True)
    assert set(Path(tempfile.gettempdir()).glob("modelport-profile-*")) == before
    assert not list(Path.cwd().glob("onnxruntime_profile*"))
    assert report.first_choice == "CPUExecutionProvider"
    assert report.by_provider == {"CPUExecutionProvider": len(report.compute_nodes)}
    assert report.by_op["Conv"] == {"CPUExecutionProvider": 2}
    assert report.heavy_in_graph == 2 and report.heavy_share_on_first == 1.0
    assert report.fallbacks == [] and report.memcpy == 0
    data = json.loads(json.dumps(report.to_json()))
    assert data["summary"].endswith("100% of compute-heavy ops on CPUExecutionProvider; 0 Memcpy")


def test_strict_placement_names_the_ops_that_left_the_first_choice(bundles: dict[str, Bundle]) -> None:
    # the Azure provider ships in the CPU onnxruntime wheel (not in onnxruntime-gpu) and runs no ordinary op
    if "AzureExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no AzureExecutionProvider (onnxruntime-gpu): no provider to fall back from")
    with create("ort:AzureExecutionProvider,cpu", bundles["dynamic_cnn"]) as runner:
        report = runner.placement()
        assert report.first_choice == "AzureExecutionProvider"
        assert report.heavy_share_on_first == 0.0
        assert {n.op for n in report.fallbacks} >= {"Conv"}
        with pytest.raises(ProviderError) as info:
            runner.placement(strict=True)
    line = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in line
    n = len(report.fallbacks)
    assert line.startswith(f"{n} of {n} nodes left AzureExecutionProvider: ")
    assert "2 Conv on CPUExecutionProvider" in line


# -- PyTorch runners -------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "torchscript"])
@pytest.mark.parametrize("model", ["multi_output", "two_inputs", "dynamic_cnn"])
def test_torch_runners_agree_with_ort(bundles: dict[str, Bundle], backend: str, model: str) -> None:
    bundle = bundles[model]
    with create(backend, bundle, threads=2) as runner:
        assert runner.describe()["threads"] == 2
        assert [i.name for i in runner.inputs()] == [s.name for s in bundle.signature.inputs]
        assert_agree(runner, bundle)


@pytest.mark.slow
def test_torch_compile_agrees_with_ort(bundles: dict[str, Bundle]) -> None:
    bundle = bundles["multi_output"]
    with create("torch-compile", bundle, warmup=1) as runner:
        assert runner.describe()["how"].startswith("torch.compile")
        assert_agree(runner, bundle)


def test_torch_runner_wants_every_input(bundles: dict[str, Bundle]) -> None:
    with create("torch", bundles["two_inputs"]) as runner:
        with pytest.raises(FeedError, match="no feed for input\\(s\\) image — feed every input: tokens, image"):
            runner.infer({"tokens": np.zeros((1, 2), np.int64)})


# -- tolerance: what each precision's floor lets through, on real low-precision runs -----------------
def half_storage_matmul(folder: Path, weight: np.ndarray) -> Path:
    """``y = x @ weight`` with ``x`` and the weight rounded to float16 on the way in (Cast to float16 and
    back) and fp32 arithmetic: what a half-precision engine does to a matmul's inputs."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["x16"], ["xr"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["w16"], ["wr"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["xr", "wr"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "half_storage", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight.astype(np.float16), "w16")],
    )  # fmt: skip
    path = folder / "half_storage.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def within(got: np.ndarray, want: np.ndarray, tolerance: tuple[float, float]) -> bool:
    atol, rtol = tolerance
    return bool(np.allclose(got, want, atol=atol, rtol=rtol))


def test_an_fp16_answer_fails_the_fp32_tolerance_passes_its_own_and_a_large_output_widens_the_floor(
    tmp_path: Path,
) -> None:
    """A real ONNX Runtime run that rounds a matmul's inputs to float16, against the exact fp32 product: off by
    more than fp32's atol 1e-4 / rtol 1e-3 allows, inside fp16's floor; the same inputs x100 are off by 100x
    as much, which only the floor scaled by the output's largest magnitude lets through."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 16)).astype(np.float32) / 8
    x = rng.uniform(-1, 1, (32, 64)).astype(np.float32)
    with OrtRunner(half_storage_matmul(tmp_path, weight)) as runner:
        feeds = (x, 100 * x)
        answers = [(runner.infer({"x": a})["y"], (a.astype(np.float64) @ weight).astype(np.float32)) for a in feeds]
    for got, want in answers:
        assert not within(got, want, tolerance_for("fp32", 1e-4, 1e-3, want))
        assert within(got, want, tolerance_for("fp16", 1e-4, 1e-3, want))
    got, want = answers[1]
    assert float(np.abs(want).max()) > 50  # x100: the floor of an output of scale 1 is too tight for it
    assert not within(got, want, tolerance_for("fp16", 1e-4, 1e-3))


@pytest.mark.openvino
def test_a_real_bf16_run_needs_the_bf16_floor(bundles: dict[str, Bundle]) -> None:
    """openvino:bf16 (bf16 matrix units: AVX512-BF16 or AMX) on the verification feeds, against ort:cpu:
    some feed is outside the fp32 tolerance, every feed inside the one tolerance_for gives a bf16 runner."""
    pytest.importorskip("openvino")
    from modelport.runtime.openvino import cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 instructions (AVX512-BF16 or AMX): openvino:bf16 cannot run")
    bundle = bundles["dynamic_cnn"]
    fp32_misses = 0
    with create("openvino:bf16", bundle) as runner:
        assert runner.precision == "bf16"
        for feed, expected in reference(bundle):
            got = runner.infer(feed)
            for name, want in expected.items():
                assert within(got[name], want, tolerance_for(runner, 1e-4, 1e-3, want)), name
                fp32_misses += not within(got[name], want, tolerance_for("fp32", 1e-4, 1e-3, want))
    assert fp32_misses > 0


def test_every_backend_has_a_known_precision_and_an_unknown_one_is_refused(bundles: dict[str, Bundle]) -> None:
    for name in backend_names():
        tolerance_for(create(name, bundles["multi_output"]), 1e-4, 1e-3)  # a precision without a floor raises
    with pytest.raises(ValueError, match="no tolerance known for precision 'int3'"):
        tolerance_for("int3", 1e-4, 1e-3)
    precisions = {name: create(name, bundles["multi_output"]).precision for name in backend_names()}
    # asked for by name; ORT's TensorRT provider cannot turn TF32 off, so plain ort:tensorrt is tf32
    assert precisions["ort:cuda"] == "fp32" and precisions["ort:cuda:tf32"] == "tf32"
    assert precisions["ort:tensorrt"] == "tf32" and precisions["ort:tensorrt:fp16"] == "fp16"
    assert precisions["tensorrt"] == "fp32" and precisions["tensorrt:tf32"] == "tf32"
    assert precisions["tensorrt:fp16"] == "fp16"
    legacy = create("ort:tensorrt,cuda,cpu", bundles["multi_output"], fp16=True)  # the fp16= keyword of old
    assert legacy.name == "ort:tensorrt,cuda,cpu:fp16" and legacy.precision == "fp16"


# -- what a session is opened with: a real CPU session; the GPU providers' options, and on a GPU, theirs --
def test_a_cpu_session_gets_the_settings_it_was_asked_for_and_no_fallback(bundles: dict[str, Bundle]) -> None:
    """Read back from the real onnxruntime session, not from the runner: the settings reached ONNX Runtime."""
    config = {"session.intra_op.allow_spinning": "0"}
    with create("ort", bundles["multi_output"], optimization="extended", threads=1, inter_threads=2,
                session_config=config) as runner:  # fmt: skip
        session = runner.session
        options = session.get_session_options()
        assert session.get_providers() == ["CPUExecutionProvider"]
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 2
        assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_every_real_session_has_run_time_fallback_off(bundles: dict[str, Bundle]) -> None:
    """disable_fallback() on a real onnxruntime session, the profiled one of placement() included."""
    made = []
    real = ort.InferenceSession

    def spy(*args: object, **kwargs: object) -> object:
        made.append(real(*args, **kwargs))
        return made[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ort, "InferenceSession", spy)
        with create("ort", bundles["multi_output"]) as runner:
            runner.placement()
    assert len(made) == 2 and all(session._enable_fallback is False for session in made)


GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
GPU_CASES = [  # backend, precision asked for, CUDA's use_tf32, TensorRT fp16 engines (None: no TensorRT)
    ("ort:tensorrt,cuda,cpu", "fp32", "0", False),  # CUDA nodes fp32; the TensorRT provider has no TF32 switch
    ("ort:tensorrt,cuda,cpu:tf32", "tf32", "1", False),
    ("ort:tensorrt,cuda,cpu:fp16", "fp16", "1", True),
    ("ort:cuda,cpu", "fp32", "0", None),
    ("ort:cuda,cpu:tf32", "tf32", "1", None),
]


@pytest.mark.parametrize(("backend", "precision", "use_tf32", "fp16"), GPU_CASES)
def test_the_gpu_providers_options_follow_the_precision_and_the_signature(
    bundles: dict[str, Bundle], tmp_path: Path, backend: str, precision: str, use_tf32: str, fp16: bool | None
) -> None:
    """What ``OrtRunner`` opens a ``backend`` session with, where CI has no GPU: the TensorRT cache folder
    (parents and all) exists once the options are built, before any session (ORT's provider cannot make
    parents, and its Python layer then retries silently without the options); the profile spans the
    signature's bounds; TF32 is off for fp32 and on for :tf32; fp16 engines only for :fp16. On a GPU,
    the next test reads them back from a real session."""
    signature = bundles["two_inputs"].signature
    providers = GPU_PROVIDERS if fp16 is not None else GPU_PROVIDERS[1:]
    cache = tmp_path / "a" / "b" / "trt"
    built = provider_options(providers, precision=precision, trt_cache=cache, signature=signature)
    options = dict(zip(providers, built, strict=True))
    assert options["CUDAExecutionProvider"] == {"device_id": "0", "use_tf32": use_tf32}
    assert options["CPUExecutionProvider"] == {}
    if fp16 is None:
        assert not cache.exists()
        return
    trt = options["TensorrtExecutionProvider"]
    assert cache.is_dir() and trt["trt_engine_cache_path"] == str(cache)
    assert trt["trt_fp16_enable"] == str(fp16) and not any("tf32" in key for key in trt)
    # tokens:m,seq image:n,patches,6 with m=1..6 n=1..9 seq=1..12 patches=1..5
    opt = {d.name: d.opt for d in signature.dims.values()}
    assert trt["trt_profile_min_shapes"] == "tokens:1x1,image:1x1x6"
    assert trt["trt_profile_opt_shapes"] == f"tokens:{opt['m']}x{opt['seq']},image:{opt['n']}x{opt['patches']}x6"
    assert trt["trt_profile_max_shapes"] == "tokens:6x12,image:9x5x6"


@pytest.mark.gpu
@pytest.mark.parametrize(("backend", "precision", "use_tf32", "fp16"), GPU_CASES)
def test_a_real_gpu_session_has_those_options(
    bundles: dict[str, Bundle], tmp_path: Path, backend: str, precision: str, use_tf32: str, fp16: bool | None
) -> None:
    """The same options, read back from the session ONNX Runtime opened (it keeps only those it took)."""
    providers = GPU_PROVIDERS if fp16 is not None else GPU_PROVIDERS[1:]
    if not set(providers) <= set(ort.get_available_providers()):
        pytest.skip(f"this onnxruntime lacks one of {', '.join(providers[:-1])}")
    cache = tmp_path / "a" / "b"
    with create(backend, bundles["two_inputs"], cache_dir=cache) as runner:
        assert runner.session.get_providers() == providers
        options = runner.session.get_provider_options()
    assert options["CUDAExecutionProvider"]["use_tf32"] == use_tf32
    if fp16 is not None:
        trt = options["TensorrtExecutionProvider"]
        assert trt["trt_fp16_enable"].lower() in ({"1", "true"} if fp16 else {"0", "false"})
        assert trt["trt_engine_cache_path"] == str(cache / "trt") and (cache / "trt").is_dir()
        assert trt["trt_profile_max_shapes"] == "tokens:6x12,image:9x5x6"


# -- native TensorRT, against a stand-in for the tensorrt module --------------------------------------
def fake_tensorrt(network_inputs: list[tuple[str, tuple[int, ...], bool]]) -> SimpleNamespace:
    """The few pieces of TensorRT 10's Python API that TensorRTRunner builds and binds with; ``record``
    keeps the builder flags, profile shapes and shape values it was given."""
    record: dict[str, Any] = {"set": [], "cleared": [], "shapes": {}, "values": {}}
    tensors = [SimpleNamespace(name=n, shape=s, is_shape_tensor=shape_tensor) for n, s, shape_tensor in network_inputs]
    network = SimpleNamespace(num_inputs=len(tensors), get_input=tensors.__getitem__)
    profile = SimpleNamespace(
        set_shape=lambda name, *shapes: record["shapes"].__setitem__(name, shapes),
        set_shape_input=lambda name, *values: record["values"].__setitem__(name, values),
    )
    config = SimpleNamespace(
        set_flag=record["set"].append, clear_flag=record["cleared"].append,
        set_memory_pool_limit=lambda *a: None, add_optimization_profile=lambda p: None,
    )  # fmt: skip
    builder = SimpleNamespace(
        create_network=lambda flags: network, create_builder_config=lambda: config,
        create_optimization_profile=lambda: profile, build_serialized_network=lambda n, c: b"engine",
    )  # fmt: skip
    names = ("FLOAT", "HALF", "INT32", "INT64", "BOOL")
    return SimpleNamespace(
        __version__="10.16.1.11", record=record, Builder=lambda logger: builder,
        OnnxParser=lambda n, logger: SimpleNamespace(parse_from_file=lambda path: True),
        BuilderFlag=SimpleNamespace(FP16="FP16", TF32="TF32"), MemoryPoolType=SimpleNamespace(WORKSPACE="WS"),
        TensorLocation=SimpleNamespace(DEVICE="device", HOST="host"), DataType=SimpleNamespace(**{n: n for n in names}),
    )  # fmt: skip


SHAPE_SIGNATURE = Signature.build(
    [parse_input("x:batch,3"), parse_input("shape:2:int64:1..9")], [parse_dim("batch=1..8@4")]
)


@pytest.mark.parametrize(("precision", "set_", "cleared"), [("fp32", [], ["TF32"]), ("tf32", ["TF32"], []),
                                                             ("fp16", ["FP16"], [])])  # fmt: skip
def test_native_tensorrt_builds_with_its_precision_and_a_profile_for_shape_tensors(
    tmp_path: Path, precision: str, set_: list[str], cleared: list[str]
) -> None:
    """fp32 clears TensorRT's default-on TF32 flag, :tf32 keeps it, the fp16 flag only for :fp16; a shape tensor
    input gets its values bounded by its integer range (half-open) as well as its own shape."""
    trt = fake_tensorrt([("x", (-1, 3), False), ("shape", (2,), True)])
    runner = TensorRTRunner(tmp_path / "model.onnx", precision=precision, signature=SHAPE_SIGNATURE, cache_dir=tmp_path)
    runner.engine_file = tmp_path / "e.engine"
    assert runner._build(trt, logger=None) == b"engine" and runner.engine_file.read_bytes() == b"engine"
    assert trt.record["set"] == set_ and trt.record["cleared"] == cleared
    assert trt.record["shapes"] == {"x": ((1, 3), (4, 3), (8, 3)), "shape": ((2,), (2,), (2,))}
    assert trt.record["values"] == {"shape": ([1, 1], [4, 4], [8, 8])}
    runner.signature = None
    with pytest.raises(EngineBuildError, match="'shape' is a shape tensor .* and has no value range"):
        runner._shape_values("shape", 2)


def test_native_tensorrt_binds_shape_tensors_in_host_memory(tmp_path: Path) -> None:
    """TensorRT 10 reads a shape-tensor input (get_tensor_location == HOST) from host memory: bound at a numpy
    array's address, in the engine's dtype, never moved to the device; other tensors go to the device."""
    trt = fake_tensorrt([])
    location = {"shape": trt.TensorLocation.HOST, "x": trt.TensorLocation.DEVICE, "out": trt.TensorLocation.DEVICE,
                "dims": trt.TensorLocation.HOST}  # fmt: skip
    dtypes = {"shape": "INT64", "x": "FLOAT", "out": "FLOAT", "dims": "INT64"}
    addresses: dict[str, int] = {}
    runner = TensorRTRunner(tmp_path / "model.onnx", signature=SHAPE_SIGNATURE)
    runner._trt, runner._device = trt, torch.device("cpu")  # the device path, on the CPU
    runner.engine = SimpleNamespace(get_tensor_location=location.get, get_tensor_dtype=dtypes.get)
    runner.context = SimpleNamespace(
        set_input_shape=lambda name, shape: True, set_tensor_address=addresses.__setitem__,
        get_tensor_shape=lambda name: (3, 4),
    )  # fmt: skip
    for value in (np.array([3, 4], np.int32), torch.tensor([3, 4], dtype=torch.int32)):
        host = runner._bind_input("shape", value)
        assert isinstance(host, np.ndarray) and host.dtype == np.int64 and host.tolist() == [3, 4]
        assert addresses["shape"] == host.ctypes.data
    device = runner._bind_input("x", np.ones((2, 3), np.float64))
    assert isinstance(device, torch.Tensor) and device.dtype == torch.float32
    assert addresses["x"] == device.data_ptr()
    out, dims = runner._bind_output("out"), runner._bind_output("dims")
    assert isinstance(out, torch.Tensor) and addresses["out"] == out.data_ptr()
    assert isinstance(dims, np.ndarray) and addresses["dims"] == dims.ctypes.data and dims.dtype == np.int64
