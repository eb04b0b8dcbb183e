#!/usr/bin/env bash
# Installs what the tests need beyond Rust, idempotently:
# - Lua 5.1 (Lightroom's Lua), LuaSocket and lua-cjson from Debian, for the Lua client tests;
# - redis-server from Debian, for the cluster tests (runtime-smol/tests/cluster*.rs start their
#   own on a loopback port; Debian's policy-rc.d keeps the package from starting a daemon);
# - Autobahn|Testsuite for the Python 2.7 that pyenv provides, into .autobahn/venv-py2.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v lua5.1 >/dev/null 2>&1 || need_apt+=(lua5.1)
[ -e /usr/share/lua/5.1/socket.lua ] || need_apt+=(lua-socket)
[ -e /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] || ls /usr/lib/*/lua/5.1/cjson.so >/dev/null 2>&1 || need_apt+=(lua-cjson)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${need_apt[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  # Root in CI containers has no sudo; elsewhere apt-get needs it.
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

AUTOBAHN_DIR=.autobahn/site-packages
if [ ! -e "$AUTOBAHN_DIR/.installed" ]; then
  # pyenv's python2.7 shim exists even when 2.7 is not the selected version, and then fails.
  PY2=$(command -v python2.7 || true)
  if [ -z "$PY2" ] || ! "$PY2" -c '' >/dev/null 2>&1; then
    PY2="$HOME/.pyenv/versions/2.7.18/bin/python2.7"
  fi
  echo "install-test-deps: installing autobahntestsuite for $PY2"
  mkdir -p "$AUTOBAHN_DIR"
  "$PY2" -m pip install -q --disable-pip-version-check --target "$AUTOBAHN_DIR" autobahntestsuite
  touch "$AUTOBAHN_DIR/.installed"
fi
