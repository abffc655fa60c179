"""The Python API with models in memory: objects in, the user's object left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import modelport
from modelport.errors import FeedError, UsageError


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc(x))


def test_a_module_in_training_mode_is_exported_in_eval_and_handed_back_training(tmp_path):
    net = Net().train()
    result = modelport.export(net, tmp_path / "b", inputs="x:batch,4", dims={"batch": (1, 8)})
    assert net.training and net.drop.training
    assert any("training mode" in note for note in result.notes)
    assert result.bundle.manifest["source"] == {"model": None, "kind": "in-memory", "sha256": None}
    with pytest.raises(UsageError, match="does not record its source model"):
        modelport.verify(tmp_path / "b")
    assert modelport.verify(tmp_path / "b", model=net.eval()).passed


def test_an_exported_program_object(tmp_path):
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(Net().eval(), (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    result = modelport.export(program, tmp_path / "b")
    assert result.parity.passed
    (dim,) = result.bundle.signature.dims.values()  # the program names its own symbols
    assert (dim.min, dim.max) == (1, 8)


def test_load_takes_tensors_and_checks_the_feed(tmp_path):
    modelport.export(Net(), tmp_path / "b", inputs=["x:batch,4"], dims=["batch=1..8"])
    with modelport.load(tmp_path / "b") as runner:
        from_tensor = runner(x=torch.ones(2, 4))["output"]
        from_array = runner({"x": np.ones((2, 4), np.float32)})["output"]
        np.testing.assert_array_equal(from_tensor, from_array)
        with pytest.raises(FeedError, match="input 'x' is float64, the model expects float32"):
            runner(x=np.ones((2, 4)))
        with pytest.raises(FeedError, match="no input 'y'"):
            runner(y=np.ones((2, 4), np.float32))
    with pytest.raises(RuntimeError, match="used before load"):
        runner(x=torch.ones(2, 4))


def test_load_a_bare_onnx_file_on_another_backend_name(tmp_path):
    modelport.export(Net(), tmp_path / "b", inputs=["x:2,4"])
    runner = modelport.load(tmp_path / "b" / "model.onnx", "ort:cpu", threads=1)
    try:
        assert runner(x=np.ones((2, 4), np.float32))["output"].shape == (2, 3)
        assert runner.timings["load_s"] > 0 and "cold_start_s" in runner.timings
    finally:
        runner.close()


def test_python_mistakes_get_modelport_errors(tmp_path):
    modelport.export(Net(), tmp_path / "b", inputs=["x:batch,4"], dims=["batch=1..8"])
    with modelport.load(tmp_path / "b") as runner:
        with pytest.raises(FeedError, match="inputs go by name, not as a bare ndarray"):
            runner(np.ones((2, 4), np.float32))
    with pytest.raises(RuntimeError, match="after close"):
        runner(x=np.ones((2, 4), np.float32))
    for call, message in [
        (lambda: modelport.export(Net(), tmp_path / "c", inputs="x:batch,4", dims={"batch": 8}), "give \\(MIN, MAX\\)"),
        (lambda: modelport.export(Net(), tmp_path / "c", inputs=[5]), "an input spec is text or an InputSpec"),
        (lambda: modelport.export(Net(), tmp_path / "c", inputs="x:2,4", opset="18"), "--opset '18' is outside"),
        (lambda: modelport.export(Net(), None, inputs="x:2,4"), "the output directory must be a path"),
        (lambda: modelport.load(tmp_path / "b", backend=5), "a backend name is text"),
        (lambda: modelport.load(tmp_path / "b", threads="two"), "not a thread count"),
        (lambda: modelport.verify(None), "the bundle must be a path"),
        (lambda: modelport.doctor(None), "the model must be a path"),
        (lambda: modelport.run(tmp_path / "b", [1, 2]), "feeds go by input name"),
    ]:
        with pytest.raises(modelport.ModelportError, match=message):
            call()
