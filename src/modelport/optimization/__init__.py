"""Optimization under an accuracy budget: candidates (passes and runtime configurations), the search that
holds each to the budget on the user's data, and the API that writes the winner as a bundle."""

from modelport.optimization.api import OptimizeResult, optimize

__all__ = ["optimize", "OptimizeResult"]
