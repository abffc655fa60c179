"""Runtimes that execute a bundle's ONNX (or its source model). Each runner loads lazily and answers
``infer(feed)``.

``registry.create(name, bundle)`` is the way in: ``ort[:providers]`` (ort.py, providers.py,
placement.py), ``openvino[:f32|:default]`` (openvino.py), ``tensorrt[:fp16]`` (tensorrt.py),
``torch`` / ``torchscript`` / ``torch-compile`` (pytorch.py); base.py holds the Runner base class.
"""
