#!/usr/bin/env bash
# Sets up what the Python client's tests need: a virtual environment at .venv-python/ with the
# exactly pinned packages of clients/python/requirements-test.txt and the package itself
# (pip install ./clients/python). PyQt6 is installed when it can be; when it cannot, the reason
# is written to .venv-python/pyqt6-unavailable.txt and the Qt test is skipped with it.
# Idempotent: does nothing when the requirements and the package sources are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv-python
REQUIREMENTS=clients/python/requirements-test.txt

requirements_stamp() { sha256sum "$REQUIREMENTS" | cut -d' ' -f1; }
package_stamp() {
  find clients/python/pyproject.toml clients/python/README.md clients/python/src -type f \
    -not -path '*/__pycache__/*' -not -path '*.egg-info/*' -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)

if [ "$(cat "$VENV/.requirements-stamp" 2>/dev/null)" != "$(requirements_stamp)" ]; then
  grep -viE '^\s*pyqt6' "$REQUIREMENTS" > "$VENV/requirements-core.txt"
  grep -iE '^\s*pyqt6' "$REQUIREMENTS" > "$VENV/requirements-qt.txt" || true
  "${PIP[@]}" install -r "$VENV/requirements-core.txt"
  rm -f "$VENV/pyqt6-unavailable.txt"
  if ! "${PIP[@]}" install -r "$VENV/requirements-qt.txt" > "$VENV/pyqt6-install.log" 2>&1; then
    {
      echo "PyQt6 could not be installed by scripts/install-python-deps.sh:"
      tail -n 5 "$VENV/pyqt6-install.log"
    } > "$VENV/pyqt6-unavailable.txt"
    echo "warning: PyQt6 is not installed; the Qt test will be skipped (see $VENV/pyqt6-unavailable.txt)" >&2
  fi
  requirements_stamp > "$VENV/.requirements-stamp"
  rm -f "$VENV/.package-stamp"
fi

if [ "$(cat "$VENV/.package-stamp" 2>/dev/null)" != "$(package_stamp)" ]; then
  # Built into a temporary directory so the source tree gets no build/ or egg-info.
  build_dir="$(mktemp -d)"
  trap 'rm -rf "$build_dir"' EXIT
  cp -r clients/python/. "$build_dir/"
  "${PIP[@]}" install --no-deps --force-reinstall "$build_dir"
  package_stamp > "$VENV/.package-stamp"
fi
