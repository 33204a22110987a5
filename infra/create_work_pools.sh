#!/usr/bin/env bash
# Create or update the work pools that prefect.yaml deploys to (idempotent: rerun after editing a template).
#
#   svd-cpu  dataset builds (decoding, cut detection, scoring) on CPU machines
#   svd-gpu  training and study sampling; start its workers on GPU machines only, with
#            `bash infra/start_worker.sh svd-gpu` (--limit 1: one training per machine)
#
# Usage (PREFECT_API_URL must point at the Prefect server, e.g. from `svd stack up`'s stack.env):
#   PREFECT=.venv/bin/prefect bash infra/create_work_pools.sh
# Settings:
#   PREFECT        the prefect executable (default: prefect on PATH)
#   SVD_GPU_SLOTS  concurrent flow runs the svd-gpu pool hands out over all its workers (default 1:
#                  one training at a time, which then owns every GPU of its machine)
#   SVD_CPU_SLOTS  the same for svd-cpu (default: no limit)
set -euo pipefail

PREFECT="${PREFECT:-prefect}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PREFECT_CLI_PROMPT=false

if ! command -v "$PREFECT" >/dev/null; then
  echo "create_work_pools.sh: no prefect executable '$PREFECT'; set PREFECT=.venv/bin/prefect" >&2
  exit 2
fi
# Pools made on Prefect's throw-away ephemeral server would vanish with it: insist on a real server
# (PREFECT_API_URL from the environment or the active Prefect profile).
if ! "$PREFECT" config view 2>/dev/null | grep -q '^PREFECT_API_URL='; then
  echo "create_work_pools.sh: PREFECT_API_URL is not set; point it at the Prefect server" \
       "(e.g. set -a; . .svd/stack.env; set +a; export PREFECT_API_URL=\$SVD_PREFECT_API_URL)" >&2
  exit 2
fi

# SVD_POOL_TYPE: process (default; the worker's venv), docker or kubernetes (the image of
# infra/docker/Dockerfile; templates in work-pools/docker/ and work-pools/kubernetes/, which need the
# prefect-docker / prefect-kubernetes packages on the worker).
kind="${SVD_POOL_TYPE:-process}"
for pool in svd-cpu svd-gpu; do
  case "$kind" in
    process) template="$here/work-pools/$pool.json" ;;
    docker|kubernetes) template="$here/work-pools/$kind/$pool.json" ;;
    *) echo "create_work_pools.sh: SVD_POOL_TYPE=$kind; use process, docker or kubernetes" >&2; exit 2 ;;
  esac
  "$PREFECT" work-pool create "$pool" --type "$kind" --base-job-template "$template" --overwrite
done

"$PREFECT" work-pool set-concurrency-limit svd-gpu "${SVD_GPU_SLOTS:-1}"
if [[ -n "${SVD_CPU_SLOTS:-}" ]]; then  # (remove a limit again with `prefect work-pool clear-concurrency-limit`)
  "$PREFECT" work-pool set-concurrency-limit svd-cpu "$SVD_CPU_SLOTS"
fi
