#!/usr/bin/env bash
# Creates build/peers/PEER/venv (python3.11 -m venv) and installs PEER-requirements.txt into it.
#   benchmarks/serve/peers/setup.sh PEER        PEER: mlserver | kserve | triton
# PYTHON=... picks another Python 3.11 (default python3.11); FRESH=1 recreates the venv.
# Never touches the project's .venv. Start the peer with start.py (see README.md).
set -euo pipefail
PEER=${1:-}
case "$PEER" in
  mlserver|kserve|triton) ;;
  *) echo "usage: $0 mlserver|kserve|triton" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
VENV="$ROOT/build/peers/$PEER/venv"
PY=${PYTHON:-python3.11}

"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "$PY is not Python 3.11" >&2; exit 1; }
if [[ ${FRESH:-} == 1 ]]; then rm -rf "$VENV"; fi
if [[ ! -x "$VENV/bin/python" ]]; then
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$HERE/$PEER-requirements.txt"
if [[ $PEER == triton ]]; then  # `modelport triton --platform python` repositories run modelport's runner
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps -e "$ROOT"
fi

case "$PEER" in
  mlserver) "$VENV/bin/python" -c 'import mlserver, onnxruntime, numpy; print("mlserver", mlserver.__version__, "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__)' ;;
  kserve) "$VENV/bin/python" -c 'import importlib.metadata as m, onnxruntime, numpy; print("kserve", m.version("kserve"), "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__)' ;;
  triton)
    "$VENV/bin/python" - <<'PY'
import importlib.metadata as m, pathlib, sys, sysconfig
import numpy, onnxruntime, pytriton
assert int(numpy.__version__.split(".")[0]) < 2, f"triton peer needs numpy<2, has {numpy.__version__}"
dist = pathlib.Path(pytriton.__file__).parent / "tritonserver"
stub = dist / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / "triton_python_backend_stub"
for p in (dist / "bin" / "tritonserver", dist / "backends" / "python" / "libtriton_python.so", stub):
    assert p.exists(), f"missing {p}"
shared = sysconfig.get_config_var("INSTSONAME") and (pathlib.Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("INSTSONAME")).exists()
print("nvidia-pytriton", m.version("nvidia-pytriton"), "(tritonserver 2.51)", "onnxruntime", onnxruntime.__version__,
      "numpy", numpy.__version__, "libpython:", "this interpreter's" if shared else "system's (no shared build here)")
PY
    ;;
esac
echo "ready: $VENV"
