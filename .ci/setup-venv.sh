#!/usr/bin/env bash
# Create the project's virtualenv with Python 3.10 (lava-nc 0.10.0 and
# lava-dl 0.6.0 need >=3.10,<3.11) and install neurocomp with its pinned
# working set.  Usage: setup-venv.sh [VENV_DIR]
set -euo pipefail
venv=${1:-.venv}

find_python310() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
    for c in python3.10 "$HOME"/.pyenv/versions/3.10.*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
            command -v "$c"; return
        fi
    done
    return 1
}

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
    py=$(find_python310) || {
        echo "error: Python 3.10 not found (lava-nc needs >=3.10,<3.11). Install it (e.g. 'pyenv install 3.10') or set PYTHON=/path/to/python3.10." >&2
        exit 2
    }
    echo "creating $venv with $py"
    rm -rf "$venv"
    "$py" -m venv "$venv"
fi
echo "installing neurocomp and its pinned dependencies into $venv (first time: a few minutes, ~7 GB)"
log="$venv/install.log"
if ! { "$venv/bin/python" -m pip install --disable-pip-version-check --upgrade "pip>=23" &&
       "$venv/bin/python" -m pip install --disable-pip-version-check -e ".[test]"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "error: pip install failed (full log: $log)" >&2
    exit 1
fi
"$venv/bin/python" -c 'import neurocomp, lava, lava.lib.dl.netx, tensorflow' 2>/dev/null || {
    echo "error: installation into $venv is incomplete; rerun with 'rm -rf $venv && make test'" >&2
    exit 1
}
