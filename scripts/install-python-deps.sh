#!/usr/bin/env bash
# Sets up what the Python client's tests need: a virtual environment at .venv-python/ with the
# exactly pinned packages of clients/python/requirements-test.txt, and the package's sources
# (clients/python/src) on its sys.path through a .pth file. The sources are used in place rather
# than installed because installing clients/python now builds the livebridge-hub wheel, hub
# binary included (maturin, a second release build); the tests get the binary from
# LIVEBRIDGE_BIN instead, and the wheel as built is installed and tested on its own by
# scripts/test-wheel.sh. PyQt6 is installed when it can be; when it cannot, the reason is
# written to .venv-python/pyqt6-unavailable.txt and the Qt test is skipped with it.
# Idempotent: does nothing when the requirements are unchanged and the .pth is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv-python
REQUIREMENTS=clients/python/requirements-test.txt

requirements_stamp() { sha256sum "$REQUIREMENTS" | cut -d' ' -f1; }

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
fi

site_packages="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
pth="$site_packages/livebridge-sources.pth"
if [ "$(cat "$pth" 2>/dev/null)" != "$PWD/clients/python/src" ]; then
  # An environment made before the sources were used in place has the package installed by
  # pip (distribution `livebridge`): remove it, or it would shadow the sources.
  if [ -n "$(find "$site_packages" -maxdepth 1 -iname 'livebridge-*.dist-info' -print -quit)" ]; then
    "${PIP[@]}" uninstall --yes livebridge
  fi
  rm -f "$VENV/.package-stamp"
  echo "$PWD/clients/python/src" > "$pth"
fi
