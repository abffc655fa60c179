"""Every MODEL kind, and the one-line errors for the ways each goes wrong."""

import textwrap

import numpy as np
import pytest
import torch

from modelport.errors import SourceError, UsageError
from modelport.exporting import export
from modelport.sources import load_model
from modelport.spec import parse_dim, parse_input
from tests.conftest import ZOO
from tests.models import zoo


def write_model_file(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(
        textwrap.dedent("""
        import torch
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(3, 2)
            def forward(self, x):
                return self.lin(x).relu()
        def build():
            torch.manual_seed(0)
            return Net()
        VALUE = 3
    """)
    )
    return path


def test_file_factory_exports_and_records_an_absolute_path(tmp_path):
    path = write_model_file(tmp_path)
    result = export(f"{path}:build", tmp_path / "out", [parse_input("x:batch,3")])
    assert result.parity.passed
    assert result.bundle.source == f"{path.resolve()}:build"


def test_package_module_factory():
    loaded = load_model(f"{ZOO}:dynamic_cnn")
    assert isinstance(loaded.module, zoo.DynamicCNN) and loaded.kind == "code" and not loaded.module.training


def test_torchscript_file_goes_through_the_torchscript_exporter(tmp_path):
    path = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.script(zoo.dynamic_cnn()), str(path))
    result = export(
        str(path), tmp_path / "out", [parse_input("x:batch,3,h,w")], [parse_dim("h=8..24"), parse_dim("w=8..24")]
    )
    assert result.parity.passed
    assert [(a.strategy, a.outcome) for a in result.attempts] == [
        ("dynamo-nonstrict", "skipped"),
        ("dynamo-strict", "skipped"),
        ("script", "exported"),
    ]


def test_exported_program_file(tmp_path):
    path = tmp_path / "two.pt2"
    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(zoo.multi_output(), (torch.randn(4, 4),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))
    result = export(str(path), tmp_path / "out", [parse_input("x:batch,4")], [parse_dim("batch=1..16")])
    assert result.parity.passed and result.bundle.manifest["capture"]["strategy"] == "dynamo-nonstrict"


def test_exported_program_with_a_static_batch_is_refused_when_declared_dynamic(tmp_path):
    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(zoo.multi_output(), (torch.randn(4, 4),)), str(path))
    with pytest.raises(UsageError, match="input 'x' axis 0 \\('batch'\\) is fixed to 4 in static.pt2"):
        export(str(path), tmp_path / "out", [parse_input("x:batch,4")], exporter="dynamo")


def test_exported_program_inputs_are_read_from_the_program(tmp_path):
    path = tmp_path / "dyn.pt2"
    batch = torch.export.Dim("batch", min=1, max=16)
    torch.export.save(
        torch.export.export(zoo.multi_output(), (torch.randn(4, 4),), dynamic_shapes={"x": {0: batch}}), str(path)
    )
    result = export(str(path), tmp_path / "out")  # no --input needed
    (x,) = result.bundle.manifest["inputs"]
    assert x["name"] == "x" and x["dims"][1] == 4 and x["dims"][0]["min"] == 1 and x["dims"][0]["max"] == 16


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("missing.py:build", "model file 'missing.py' does not exist"),
        ("tests.models.zoo:nope", "tests.models.zoo has no callable 'nope' — callables defined there:"),
        ("tests.models.zoo:not_a_module", "not_a_module() returned str, not a torch.nn.Module"),
        ("tests.models.zoo:broken_factory", "broken_factory() raised RuntimeError at zoo.py:"),
        ("no_such_pkg.mod:build", "cannot import module 'no_such_pkg.mod'"),
        ("model.onnx", "cannot tell what kind of model 'model.onnx' is"),
        ("demo:resnet", "unknown demo 'resnet'"),
        ("hf:/nonexistent/dir", "does not exist"),
    ],
)
def test_bad_sources_say_what_is_wrong(ref, message):
    with pytest.raises(SourceError) as info:
        load_model(ref)
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_a_pickled_checkpoint_is_never_unpickled(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(zoo.dynamic_cnn().state_dict(), path)
    with pytest.raises(SourceError, match="torch.save checkpoint, not TorchScript; modelport does not unpickle"):
        load_model(str(path))


def test_random_bytes_as_pt2(tmp_path):
    path = tmp_path / "junk.pt2"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(SourceError, match="not an ExportedProgram archive"):
        load_model(str(path))


def test_file_with_syntax_error(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def build(:\n")
    with pytest.raises(SourceError, match="importing bad.py raised SyntaxError"):
        load_model(f"{path}:build")


def test_hf_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SourceError, match="has a config but no weights"):
        load_model(f"hf:{tmp_path}")
