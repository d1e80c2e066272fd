# Sourced by the Python interop scripts: creates (or reuses) the venv target/$venv_name with
# the pinned packages in the array PINS ("name==version"), and sets `venv_python`. Expects
# `root` (the repository) to be set. A venv whose installed versions differ from the pins is
# brought in line; one that cannot be is an error.
#
# Environment:
#   PYTHON  the interpreter that creates the venv (default: python3.11, else python3)

venv="$root/target/$venv_name"
venv_python="$venv/bin/python"

pins_installed() {
    "$venv_python" - "${PINS[@]}" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
wanted = dict(pin.split("==") for pin in sys.argv[1:])
sys.exit(0 if all(version(name) == v for name, v in wanted.items()) else 1)
PY
}

if pins_installed; then
    echo "interop: reusing $venv (${PINS[*]})" >&2
else
    if ! "$venv_python" -c 'import sys' >/dev/null 2>&1; then
        python="${PYTHON:-}"
        if [[ -z "$python" ]]; then
            if command -v python3.11 >/dev/null 2>&1; then python=python3.11; else python=python3; fi
        fi
        echo "interop: creating venv $venv with $python" >&2
        rm -rf "$venv"
        mkdir -p "$root/target"
        "$python" -m venv "$venv"
    fi
    echo "interop: installing ${PINS[*]}" >&2
    "$venv_python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
    if ! pins_installed; then
        echo "interop: the venv at $venv still does not have the pinned packages" >&2
        exit 1
    fi
fi
