# Shared by the scripts: make sure .venv holds the project and its pinned dependencies.
# Idempotent and quick when nothing changed (a stamp file records what was installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

ensure_uv() {
    if command -v uv >/dev/null 2>&1; then UV=uv; return; fi
    if [ -x "$HOME/.local/bin/uv" ]; then UV="$HOME/.local/bin/uv"; return; fi
    echo "==> installing uv (fast, reproducible installs)" >&2
    python3 -m pip install --quiet --user uv >&2 || python3 -m pip install --quiet uv >&2
    UV="$(command -v uv || echo "$HOME/.local/bin/uv")"
}

ensure_venv() {
    ensure_uv
    local stamp="$VENV/.installed" want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt" | sha256sum | cut -c1-16)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
    echo "==> preparing $VENV" >&2
    [ -x "$VENV/bin/python" ] || "$UV" venv --quiet --python ">=3.10,<3.14" "$VENV" >&2
    "$UV" pip install --quiet --python "$VENV/bin/python" -c "$ROOT/requirements/constraints.txt" -e "$ROOT[dev]" >&2
    echo "$want" > "$stamp"
}
