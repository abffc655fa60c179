#!/usr/bin/env bash
# Creates the venv of one generation peer: build/gen-optimum-env or build/gen-genai-env.
#   benchmarks/generate/peers/setup.sh optimum|genai
# torch comes first as exactly `torch==2.13.0` (the local CPU wheel); the rest is pinned in
# <peer>-requirements.txt. Skips a venv whose python and stamp file exist (delete the venv to redo).
set -euo pipefail
case "${1:-}" in
    optimum|genai) PEER=$1 ;;
    *) echo "usage: $0 optimum|genai" >&2; exit 2 ;;
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
"$ENV/bin/pip" install -q -r "$REQ"
cp "$REQ" "$STAMP"  # the stamp holds the requirements it was built from: editing them redoes the venv
echo "$ENV is ready"
