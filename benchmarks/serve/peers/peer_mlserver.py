"""MLServer peer: writes settings.json and model-settings.json into --workdir, then execs `mlserver start`.

Run by start.py with build/peers/mlserver/venv/bin/python (common.py and mlserver_runtime.py on PYTHONPATH).
parallel_workers=0 (inference in the server process), metrics server off, access log off (debug=false),
gzip off. --batching turns on adaptive batching: max_batch_size 8, max_batch_time 2 ms.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import common


def main() -> None:
    args = common.parse()
    work = pathlib.Path(args.workdir)
    model_dir = work / args.name
    model_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
        "parallel_workers": 0,
        "metrics_endpoint": None,
        "debug": False,
        "gzip_enabled": False,
        "load_models_at_startup": True,
        "model_repository_root": str(work),
    }
    model = {
        "name": args.name,
        "implementation": "mlserver_runtime.OnnxModel",
        "parameters": {"uri": args.model, "extra": {"onnx": args.model, "threads": args.threads}},
    }
    if args.batching:
        model["max_batch_size"] = 8
        model["max_batch_time"] = 0.002
    (work / "settings.json").write_text(json.dumps(settings, indent=2))
    (model_dir / "model-settings.json").write_text(json.dumps(model, indent=2))
    mlserver = pathlib.Path(sys.executable).parent / "mlserver"
    os.execv(str(mlserver), [str(mlserver), "start", str(work)])


if __name__ == "__main__":
    main()
