# Shared by the scripts: make sure .venv holds the project and its pinned dependencies.
# Idempotent and quick when nothing changed (a stamp file records what was installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# Cache bytecode as a deployment does (some machines set this): otherwise every Airflow process
# started by the demo and the tests, each task included, compiles our modules from source again.
unset PYTHONDONTWRITEBYTECODE

ensure_uv() {
    if command -v uv >/dev/null 2>&1; then UV=uv; return; fi
    if [ -x "$HOME/.local/bin/uv" ]; then UV="$HOME/.local/bin/uv"; return; fi
    echo "==> installing uv (fast, reproducible installs)" >&2
    python3 -m pip install --quiet --user uv >&2 || python3 -m pip install --quiet uv >&2
    UV="$(command -v uv || echo "$HOME/.local/bin/uv")"
}

ensure_postgres_binaries() {
    # The real-service and real-scheduler tiers start throwaway clusters from the server binaries
    # (never the machine's own server). Debian's `postgresql` brings them; stop it from creating
    # and starting a cluster of its own on 5432.
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -n "${RECOVERY_PG_BINDIR:-}" ]; then return; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "PostgreSQL server binaries (initdb, pg_ctl) are missing: install your distribution's postgresql server package or set RECOVERY_PG_BINDIR" >&2
        return 1
    fi
    echo "==> installing PostgreSQL server binaries (Debian package postgresql)" >&2
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main.conf
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

ensure_redis_binary() {
    # The CeleryExecutor tier starts its own broker from Debian's redis-server binary (never the
    # machine's own Redis on 6379).
    if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then return; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "redis-server is missing: install your distribution's redis-server package (the Celery tests need it)" >&2
        return 1
    fi
    echo "==> installing redis-server (broker binary for the Celery tests)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
}

ensure_chromium() {
    # The evidence page is checked in a real headless browser: Debian's chromium + chromedriver
    # (the same build, so the versions always match).
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "chromium and chromedriver are missing: install your distribution's chromium and chromium-driver packages (the evidence page test needs them)" >&2
        return 1
    fi
    echo "==> installing chromium and chromium-driver (headless browser for the evidence page test)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
}

ensure_pgbackrest() {
    # Point-in-time recovery (operators pgbackrest.*, tests/services/test_pgbackrest*.py) drives the
    # pgBackRest binary: Debian's package (2.45 on bookworm). It runs as the cluster's owner.
    if command -v pgbackrest >/dev/null 2>&1; then return; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "pgbackrest is missing: install your distribution's pgbackrest package (the PITR operators and tests need it)" >&2
        return 1
    fi
    echo "==> installing pgbackrest (point-in-time recovery: backups, WAL archive, restore to a time)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >&2
}

ensure_venv() {
    ensure_uv
    local stamp="$VENV/.installed" want
    want="$( (cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt"; echo bytecode) | sha256sum | cut -c1-16)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
    echo "==> preparing $VENV" >&2
    [ -x "$VENV/bin/python" ] || "$UV" venv --quiet --python ">=3.10,<3.14" "$VENV" >&2
    # Bytecode compiled at install, as a deployment's image has it: without it every Airflow process
    # (each task!) compiles Airflow from source, 3.2 s instead of 1.4 s for `import airflow.sdk` here.
    "$UV" pip install --quiet --compile-bytecode --python "$VENV/bin/python" -c "$ROOT/requirements/constraints.txt" -e "$ROOT[dev]" >&2
    # uv compiles only what it installed now: a venv made before needs the rest (a no-op when done)
    "$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 || true
    echo "$want" > "$stamp"
}
