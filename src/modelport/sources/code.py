"""``path/to/file.py:factory`` and ``package.module:factory``: a callable that returns an nn.Module."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

import torch

from modelport.errors import SourceError
from modelport.sources.loaded import LoadedModel, existing_file

__all__ = ["load"]


def load(ref: str) -> LoadedModel:
    target, _, factory_name = ref.rpartition(":")
    if not target or not factory_name.isidentifier():
        raise SourceError(f"bad MODEL {ref!r}", "write path/to/file.py:factory or package.module:factory")
    if target.endswith(".py"):
        path = existing_file(target, "model file")
        module = _import_file(path)
        ref = f"{path}:{factory_name}"
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise SourceError(
                f"cannot import module {target!r}: {exc}",
                "check the dotted name and that its package is installed, or pass path/to/file.py:factory",
            ) from exc
        except BaseException as exc:  # sys.exit() and the like in user code end the import, not modelport
            _reraise_interrupt(exc)
            raise SourceError(f"importing {target!r} raised {_describe(exc)}", "fix the error in that module") from exc
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        available = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        )
        raise SourceError(
            f"{target} has no callable {factory_name!r}",
            f"callables defined there: {', '.join(available) or 'none'}",
        )
    try:
        model = factory()
    except BaseException as exc:
        _reraise_interrupt(exc)
        raise SourceError(
            f"{factory_name}() raised {_describe(exc)}", "the factory must build the model with no arguments"
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise SourceError(
            f"{factory_name}() returned {type(model).__name__}, not a torch.nn.Module",
            "return the model instance from the factory",
        )
    return LoadedModel(model, "code", ref)


def _import_file(path: Path):
    name = f"modelport_user_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SourceError(f"cannot import {path}", "pass a Python source file ending in .py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    sys.path.insert(0, str(path.parent))  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        _reraise_interrupt(exc)
        sys.modules.pop(name, None)
        raise SourceError(f"importing {path.name} raised {_describe(exc)}", "fix the error in that file") from exc
    finally:
        sys.path.remove(str(path.parent))
    return module


def _reraise_interrupt(exc: BaseException) -> None:
    if isinstance(exc, (KeyboardInterrupt, GeneratorExit)):
        raise exc


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{where}: {message}" if message else f"{type(exc).__name__}{where}"
