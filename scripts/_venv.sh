# Sourced by the README's commands: make .venv at the repository root on first use (and again whenever
# pyproject.toml changes), with the CPU build of torch where no CUDA build is installed yet.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || {
    echo "Python 3.11 is needed (bpy 5.0.1 is built for it); set PYTHON=/path/to/python3.11" >&2; exit 1; }
  "$PY" -m venv .venv
fi
STAMP=.venv/.gfpose-installed
WANT="$(cat pyproject.toml | sha1sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  # torch first, at the version the project is tested with (a CPU build here); the project's range admits it
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[test]"
  echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
