"""Serving over the Open Inference Protocol (v2): HTTP and gRPC, dynamic batching, Triton's metrics."""

from modelport.serving.server import Server, serve

__all__ = ["serve", "Server"]
