#!/usr/bin/env bash
# Start a Prefect worker for one of svd-mlops' pools on this machine, with the per-worker limit:
#   bash infra/start_worker.sh svd-gpu     # on each GPU machine: at most ONE flow run at a time, so one
#                                          # machine never takes two GPU trainings (each owns every GPU)
#   bash infra/start_worker.sh svd-cpu     # CPU machines: SVD_CPU_WORKER_LIMIT runs at once (default 2)
# The pool-wide limit (infra/create_work_pools.sh) caps the whole pool; this caps each machine.
# Settings: PREFECT (default .venv/bin/prefect, else prefect on PATH), SVD_POOL_TYPE (process, docker or
# kubernetes: the type the pool was created with), extra arguments go to `prefect worker start`.
set -euo pipefail
pool="${1:?usage: start_worker.sh svd-cpu|svd-gpu [prefect worker start options]}"
shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFECT="${PREFECT:-$here/.venv/bin/prefect}"
[[ -x "$PREFECT" ]] || PREFECT=prefect
case "$pool" in
  svd-gpu) limit=1 ;;
  svd-cpu) limit="${SVD_CPU_WORKER_LIMIT:-2}" ;;
  *) echo "start_worker.sh: unknown pool '$pool'; use svd-cpu or svd-gpu" >&2; exit 2 ;;
esac
exec "$PREFECT" worker start --pool "$pool" --type "${SVD_POOL_TYPE:-process}" --limit "$limit" \
  --name "$pool-$(hostname)" "$@"
