#!/usr/bin/env bash
# Set up the environment (first run only) and run lint, type checks and every test tier.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m unit`.
source "$(dirname "$0")/_env.sh"
ensure_venv
ensure_postgres_binaries
ensure_pgbackrest
ensure_redis_binary
ensure_chromium
cd "$ROOT"
echo "==> ruff" && "$VENV/bin/ruff" check .
echo "==> mypy" && "$VENV/bin/mypy"
echo "==> pytest" && "$VENV/bin/pytest" "$@"
