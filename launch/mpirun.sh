#!/usr/bin/env bash
# mpirun with the settings this project needs on small machines and containers:
# root is allowed, and more ranks than cores are allowed (each rank runs one thread).
# Usage: launch/mpirun.sh NP command args...
set -euo pipefail
np="$1"
shift
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
exec mpirun -np "$np" --bind-to none "$@"
