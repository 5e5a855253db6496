#!/usr/bin/env bash
# Installs what tests/test_browser.py needs: Debian's Chromium (apt-get), the `playwright` Python package and JupyterLab
# (pip, into the project's virtualenv, torch pinned so pip never swaps the installed torch build).
# Idempotent: each part is skipped when already there. Never runs `playwright install` (no browser download).
# Usage: tools/install_browser.sh [VENV]   (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${VENV:-.venv}}"
PY="$VENV/bin/python"
test -x "$PY" || { echo "install_browser: no virtualenv at $VENV (run make setup first)" >&2; exit 1; }

if ! command -v chromium >/dev/null 2>&1 && ! test -x /usr/bin/chromium; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
/usr/bin/chromium --version 2>/dev/null  # (the Debian launcher prints a harmless shell warning on stderr)

if ! "$PY" -c "import playwright, jupyterlab" >/dev/null 2>&1; then
    CONSTRAINT="$(mktemp)"; trap 'rm -f "$CONSTRAINT"' EXIT
    "$PY" -c "import torch; print('torch==' + torch.__version__)" > "$CONSTRAINT"
    "$PY" -m pip install -q -c "$CONSTRAINT" "playwright>=1.40" "jupyterlab>=4.0" 2>&1 | { grep -v "^WARNING: Location" || true; }
fi
"$PY" -c "import playwright, jupyterlab; from importlib.metadata import version as v; print('playwright', v('playwright'), 'jupyterlab', jupyterlab.__version__)"
