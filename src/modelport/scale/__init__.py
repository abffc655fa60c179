"""Scaling out on engines that exist: Triton (a model repository, a real server), Ray Serve, Ray Data."""

from modelport.scale.batch import BatchReport, batch
from modelport.scale.ray_serve import RayServer, serve_ray
from modelport.scale.triton import triton_repository
from modelport.scale.triton_server import TritonServer, serve_triton

__all__ = ["triton_repository", "serve_triton", "TritonServer", "serve_ray", "RayServer", "batch", "BatchReport"]
