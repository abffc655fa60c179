"""llama-cpp-python's OpenAI server (``python -m llama_cpp.server``), with llama.cpp's weight repacking off when
``LLAMACPP_EXTRA_BUFFERS=0``: on this Sapphire Rapids VM its AMX path segfaults at the first decode
(ggml-org/llama.cpp#20824; ``benchmarks/generate/peers/peer_llamacpp.py`` says more). The server has no
setting for it, so the model parameters' default is patched before the server starts. Run with
build/gen-llamacpp-env/bin/python and the server's own arguments."""

import os
import runpy

import llama_cpp.llama_cpp as native

if os.environ.get("LLAMACPP_EXTRA_BUFFERS", "1") == "0":
    default = native.llama_model_default_params

    def without_extra_buffers():
        params = default()
        params.use_extra_bufts = False
        return params

    native.llama_model_default_params = without_extra_buffers

runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
