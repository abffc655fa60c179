"""Scaling out on engines that exist: a Triton model repository from bundles."""

from modelport.scale.triton import triton_repository

__all__ = ["triton_repository"]
