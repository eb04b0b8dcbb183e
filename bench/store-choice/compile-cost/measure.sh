#!/usr/bin/env bash
# Clean `cargo build --release` time and binary size of three minimal programs:
# no database crate, redb only, rusqlite (bundled) only. Run on an otherwise idle machine.
# Each crate gets its own fresh target dir; sources must already be in ~/.cargo/registry
# (run `cargo fetch` in each directory first), so no download time is counted.
set -euo pipefail
cd "$(dirname "$0")"
# Wait (up to 10 min) until the CPUs are < 25 % busy over 3 s: other work skews wall times.
wait_idle() {
  local a b c d e f g h t0 t1 i0 i1 busy
  for _ in $(seq 200); do
    read -r _ a b c d e f g h _ < /proc/stat; t0=$((a+b+c+d+e+f+g+h)); i0=$((d+e))
    sleep 3
    read -r _ a b c d e f g h _ < /proc/stat; t1=$((a+b+c+d+e+f+g+h)); i1=$((d+e))
    busy=$(( 100 * ((t1-t0) - (i1-i0)) / (t1-t0) ))
    [ "$busy" -lt 25 ] && return
  done
}
printf '| program | wall s | CPU s (user+sys) | binary | stripped | units compiled |\n|---|---|---|---|---|---|\n'
for c in baseline with-redb with-rusqlite; do
  (cd "$c" && cargo fetch -q)
  rm -rf "$c/target"
  wait_idle
  start=$(date +%s.%N)
  # /usr/bin/time gives CPU time of the whole build (children included)
  cpu=$( { /usr/bin/time -f '%U %S' nice -n 10 cargo build --release -q --manifest-path "$c/Cargo.toml" 2>&1 >/dev/null; } | tail -1 | awk '{print $1+$2}')
  end=$(date +%s.%N)
  bin=$(ls "$c"/target/release/cc-* | grep -v '\.d$' | head -1)
  cp "$bin" "$bin.stripped" && strip "$bin.stripped"
  units=$(find "$c"/target/release/deps -name '*.rlib' | wc -l)
  printf '| %s | %.1f | %.1f | %s KiB | %s KiB | %s rlibs |\n' "$c" "$(echo "$end - $start" | bc)" "$cpu" \
    "$(( $(stat -c %s "$bin") / 1024 ))" "$(( $(stat -c %s "$bin.stripped") / 1024 ))" "$units"
done
