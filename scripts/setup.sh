#!/usr/bin/env bash
# Create .venv from requirements/lock.txt if it is missing or stale, and install svd-mlops into it.
# Used by both README commands; safe to rerun (a stamp file skips work when the lock is unchanged).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${SVD_PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "svd-mlops needs Python 3.11"' \
  || { echo "error: Python 3.11 is required (set SVD_PYTHON to its path)" >&2; exit 2; }
stamp=.venv/.svd-lock-stamp
want="$(sha256sum requirements/lock.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
quiet() { grep -v -e "^WARNING: Location" -e "^DEPRECATION" || true; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "setting up .venv from requirements/lock.txt (first run takes a few minutes)..." >&2
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
# torch first: the CPU wheel here (or PyTorch's own index elsewhere) must win over a CUDA build pulled in
# by another package's range. On a GPU box set SVD_TORCH_INDEX to PyTorch's CUDA index URL.
if [ -n "${SVD_TORCH_INDEX:-}" ]; then
  .venv/bin/pip install -q torch==2.13.0 --index-url "$SVD_TORCH_INDEX" 2>&1 | quiet
else
  .venv/bin/pip install -q torch==2.13.0 2>&1 | quiet
fi
.venv/bin/pip install -q -r requirements/lock.txt 2>&1 | quiet
.venv/bin/pip install -q --no-deps -e . 2>&1 | quiet
.venv/bin/pip check 2>&1 | quiet
echo "$want" > "$stamp"
