#!/usr/bin/env bash
# Installs what the measurements in docs/performance.md use beyond Rust, idempotently (the
# tests do not need any of it): wrk (HTTP load, and the independent publisher of
# loadgen/check/publish.lua), valgrind (callgrind, massif), perf (linux-perf), a C compiler
# for loadgen/check/ws_count.c, and hyperfine. All from Debian.
set -euo pipefail

need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
command -v perf >/dev/null 2>&1 || need_apt+=(linux-perf)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v hyperfine >/dev/null 2>&1 || need_apt+=(hyperfine)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-perf-tools: installing ${need_apt[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
