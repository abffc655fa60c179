"""Scaling out on engines that exist: Triton (``triton``: a model repository; ``triton_server``: a real
Triton on it), Ray Serve (``ray_serve``) and Ray Data (``batch``). The public names are ``modelport``'s:
``triton_repository``, ``serve_triton``, ``serve_ray``, ``batch``. Nothing is imported here, so Triton's
own environment can import ``triton_server`` without modelport's heavier dependencies."""
