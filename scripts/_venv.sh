# Sourced by scripts/demo, scripts/test and scripts/bench: make .venv and install into it.
# $1: the extras to install ("" or "test"). Re-installs only when pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "ibkr-recorder needs Python 3.11 or newer; $py is $("$py" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv" >&2
    "$py" -m venv .venv
fi
extras="${1:-}"
spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp=".venv/.installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing ibkr-recorder${extras:+ with $extras extras} into .venv" >&2
    if ! .venv/bin/python -m pip install --disable-pip-version-check -e "$spec" \
            > .venv/install.log 2>&1; then
        tail -n 40 .venv/install.log >&2
        echo "install failed; the whole log is .venv/install.log" >&2
        exit 1
    fi
    touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
