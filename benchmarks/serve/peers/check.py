#!/usr/bin/env python3
"""Smoke check of a v2 (Open Inference Protocol) server: one JSON infer request built from FEED.npz.

    python benchmarks/serve/peers/check.py http://127.0.0.1:P NAME FEED.npz [--ref REF.npz]

Every array in FEED.npz becomes an input of that name; all outputs are requested. Prints each output's
datatype, shape and first values (and, with --ref, the largest difference from the arrays of the same
name in REF.npz; a .npy there stands for the first output). Stdlib + numpy; exits non-zero on an HTTP error
or a mismatch over --tol.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

import numpy as np

V2 = {
    "float32": "FP32",
    "float16": "FP16",
    "float64": "FP64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
}
NUMPY = {v: k for k, v in V2.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("name")
    p.add_argument("feed")
    p.add_argument("--ref", default=None)
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()

    feed = dict(np.load(args.feed))
    body = {
        "id": "check",
        "inputs": [
            {"name": k, "shape": list(a.shape), "datatype": V2[a.dtype.name], "data": a.ravel().tolist()}
            for k, a in feed.items()
        ],
    }
    url = f"{args.url.rstrip('/')}/v2/models/{args.name}/infer"
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            reply = json.loads(r.read())
    except urllib.error.HTTPError as e:
        print(f"HTTP {e.code}: {e.read().decode(errors='replace')[:2000]}", file=sys.stderr)
        return 1
    ms = (time.perf_counter() - t0) * 1000
    print(f"POST {url}: {ms:.1f} ms, model_name={reply.get('model_name')} id={reply.get('id')}")
    outs = {}
    for o in reply["outputs"]:
        a = np.asarray(o["data"], dtype=NUMPY.get(o["datatype"], None)).reshape(o["shape"])
        outs[o["name"]] = a
        first = ", ".join(f"{v:.6g}" for v in a.ravel()[:4].tolist())
        print(f"  {o['name']}: {o['datatype']} {list(a.shape)} first [{first}]")
    if args.ref:
        ref = np.load(args.ref)
        ref = {next(iter(outs)): ref} if isinstance(ref, np.ndarray) else dict(ref)
        worst = 0.0
        for k, r in ref.items():
            if k not in outs or outs[k].shape != r.shape:
                print(f"  {k}: missing or shape {None if k not in outs else outs[k].shape} != {r.shape}")
                return 1
            d = float(np.max(np.abs(outs[k].astype(np.float64) - r))) if r.size else 0.0
            worst = max(worst, d)
            print(f"  {k}: max |diff| vs reference {d:.2e}")
        if worst > args.tol:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
