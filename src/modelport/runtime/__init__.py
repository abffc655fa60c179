"""Runtimes that execute a bundle's ONNX. Each runner loads lazily and answers ``infer(feed)``."""
