#!/usr/bin/env bash
# The Python package's CI: on a machine with Python 3.9+ and pip, make a fresh venv,
# install the build and test tools, build the package, install it and run pytest; then
# install e3nn (and with it torch) and run the parity tests of tests/e3nn against it.
#
# The build is the `ci` cargo profile (python/Cargo.toml: nothing optimised, no debug
# info), the quickest to build; the tests use tiny arrays. Users' `pip install ./python`
# builds the release profile.
#
# Environment: PYTHON (default python3), CARGO_TARGET_DIR (default: the repository's
# target/, next to the workspace's own builds), TESSERA_PY_VENV (default: a temp dir).
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd .. && pwd)"
python="${PYTHON:-python3}"
venv="${TESSERA_PY_VENV:-$(mktemp -d)/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

echo "== python venv at $venv ($("$python" --version))"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q "maturin>=1.9,<2" numpy pytest opt_einsum

echo "== build the wheel (dev profile) and install it"
dist="$(mktemp -d)"
"$venv/bin/maturin" build --quiet --profile ci --interpreter "$venv/bin/python" --out "$dist"
"$venv/bin/python" -m pip install -q --no-deps --force-reinstall "$dist"/tessera-*.whl

echo "== pytest"
# From tests/, so that `import tessera` is the installed package, not the source folder.
cd tests
"$venv/bin/python" -m pytest -q -p no:cacheprovider .

echo "== e3nn parity (tests/e3nn): e3nn 0.6 with torch (CPU use) from PyPI"
"$venv/bin/python" -m pip install -q "e3nn==0.6.0"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/tests/e3nn"
