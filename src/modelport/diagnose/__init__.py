"""Diagnosis: ``doctor`` inspects any ONNX file; ``translate`` turns runtime errors into fixes."""
