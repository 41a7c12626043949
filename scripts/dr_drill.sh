#!/usr/bin/env bash
# The disaster-recovery drill (loadtest/dr_drill.py): seed, back up, destroy,
# restore, verify; prints the time from "destroyed" to "serving and verified".
# Default scale: the seed's fleet (500 models, 5,000 versions) with 4 MiB
# per artifact, about 2 GiB of blobs, on PostgreSQL at 127.0.0.1:5432.
#   scripts/dr_drill.sh [--database sqlite] [--models N] [--artifact-kib K]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python loadtest/dr_drill.py "$@"
