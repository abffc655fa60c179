#!/usr/bin/env bash
# Creates the venv of one generation peer: build/gen-<peer>-env.
#   benchmarks/generate/peers/setup.sh optimum|genai|llamacpp|ct2|ovgenai|vllm
# torch comes first as exactly `torch==2.13.0` (the local CPU wheel); the rest is the full pinned list in
# <peer>-requirements.txt, installed with --no-deps so nothing can pull another torch (optimum-intel's
# torchvision would). llamacpp compiles llama-cpp-python from its sdist for this CPU (about 10 minutes) and
# unpacks the sdist into build/gen-src, whose convert_hf_to_gguf.py writes the GGUF files.
# Skips a venv whose python and stamp file exist (delete the venv to redo).
set -euo pipefail
case "${1:-}" in
    optimum|genai|llamacpp|ct2|ovgenai|vllm) PEER=$1 ;;
    *) echo "usage: $0 optimum|genai|llamacpp|ct2|ovgenai|vllm" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
ENV=$ROOT/build/gen-$PEER-env
REQ=$HERE/$PEER-requirements.txt
STAMP=$ENV/.peer-setup.done
PYTHON=${PYTHON:-python3.11}

if [[ -x $ENV/bin/python && -f $STAMP ]] && cmp -s "$REQ" "$STAMP"; then
    echo "$ENV is ready"
    exit 0
fi
rm -rf "$ENV"
mkdir -p "$ROOT/build"
"$PYTHON" -m venv "$ENV"
"$ENV/bin/pip" install -q torch==2.13.0
if [[ $PEER == llamacpp ]]; then
    export CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
    SRC=$ROOT/build/gen-src
    VERSION=$(sed -n 's/^llama_cpp_python==//p' "$REQ")
    mkdir -p "$SRC"
    "$ENV/bin/pip" download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$SRC"
    tar xzf "$SRC/llama_cpp_python-$VERSION.tar.gz" -C "$SRC"
fi
"$ENV/bin/pip" install -q --no-deps -r "$REQ"
cp "$REQ" "$STAMP"  # the stamp holds the requirements it was built from: editing them redoes the venv
echo "$ENV is ready"
