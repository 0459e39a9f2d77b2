#!/usr/bin/env bash
# Build both virtualenvs on a fresh machine (idempotent; a no-op when up to date).
#   .venv         framestream itself, its tests and the embedded broker (Tansu) and ClickHouse (chDB)
#   .venv-triton  the real tritonserver from nvidia-pytriton; its Python backend needs numpy < 2
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"

stamp_ok() { [[ -f "$1/.framestream-stamp" && "$(cat "$1/.framestream-stamp")" == "$2" ]]; }

main_hash="$(sha256sum pyproject.toml | cut -c1-16)"
if ! stamp_ok .venv "$main_hash"; then
  "$PYTHON" -m venv .venv
  .venv/bin/pip install --quiet -e '.[embedded,test]'
  echo "$main_hash" > .venv/.framestream-stamp
fi

triton_hash="$(sha256sum infra/triton/requirements.txt | cut -c1-16)"
if ! stamp_ok .venv-triton "$triton_hash"; then
  "$PYTHON" -m venv .venv-triton
  .venv-triton/bin/pip install --quiet -r infra/triton/requirements.txt
  echo "$triton_hash" > .venv-triton/.framestream-stamp
fi
echo "setup: .venv and .venv-triton ready"
