#!/usr/bin/env bash
# Checks the service files of packaging/ (docs/installing.md):
# - packaging/systemd/livebridge.service with `systemd-analyze verify` (Debian's systemd package,
#   installed when missing; verify needs no running systemd). Verify refuses a unit whose
#   ExecStart binary does not exist, so a temporary copy points ExecStart at the release build
#   (LIVEBRIDGE_BIN, else target/release/livebridge, built when missing). Verify only warns
#   about an unknown key or a bad value and still exits 0, so any output fails the check; a
#   deliberately broken copy must be reported, so the check itself is known to work.
# - packaging/launchd/org.livebridge.hub.plist parsed with Python's plistlib, its keys asserted.
# - packaging/livebridge.toml, the example configuration file, through `livebridge config`.
# - README's `cargo install --path runtime-smol --locked`, into a temporary root (it reuses the
#   workspace's target/release, so it costs a link at most), and the installed --version.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze > /dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd > /dev/null
fi

if [ -z "${LIVEBRIDGE_BIN:-}" ]; then
  cargo build --release --locked -p livebridge-smol
  LIVEBRIDGE_BIN="$PWD/target/release/livebridge"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo install --quiet --path runtime-smol --locked --root "$work/cargo-root"
installed="$("$work/cargo-root/bin/livebridge" --version)"
[ "$installed" = "$("$LIVEBRIDGE_BIN" --version)" ] || { echo "FAIL: cargo install gave $installed" >&2; exit 1; }
echo "ok: cargo install --path runtime-smol ($installed)"
unit=packaging/systemd/livebridge.service

grep -q '^ExecStart=/usr/local/bin/livebridge serve ' "$unit" || {
  echo "FAIL: $unit: ExecStart no longer runs /usr/local/bin/livebridge serve" >&2
  exit 1
}
sed "s#^ExecStart=/usr/local/bin/livebridge #ExecStart=$LIVEBRIDGE_BIN #" "$unit" > "$work/livebridge.service"

verify() { # prints what systemd-analyze says of the unit; empty means clean
  (cd "$work" && systemd-analyze verify "$1" 2>&1) || echo "systemd-analyze verify exited $?"
}

# The check must be able to fail: an unknown key in a copy has to be reported.
sed 's/^\[Service\]$/[Service]\nNoSuchSetting=yes/' "$work/livebridge.service" > "$work/broken.service"
if [ -z "$(verify broken.service)" ]; then
  echo "FAIL: systemd-analyze verify did not report an unknown key; it cannot check the unit" >&2
  exit 1
fi

report="$(verify livebridge.service)"
if [ -n "$report" ]; then
  echo "FAIL: systemd-analyze verify $unit:" >&2
  echo "$report" >&2
  exit 1
fi

# What the unit must keep, beyond being valid (docs/installing.md relies on each).
for line in Type=notify DynamicUser=yes StateDirectory=livebridge ProtectSystem=strict \
  ProtectHome=yes NoNewPrivileges=yes PrivateTmp=yes \
  'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
  'ExecStart=/usr/local/bin/livebridge serve --config /etc/livebridge/livebridge.toml --data-dir /var/lib/livebridge'; do
  grep -qxF "$line" "$unit" || { echo "FAIL: $unit lacks the line: $line" >&2; exit 1; }
done
# The example configuration file is one the hub accepts (its own check, as the docs tell users).
"$LIVEBRIDGE_BIN" config --config packaging/livebridge.toml --data-dir /var/lib/livebridge > "$work/effective.toml"
grep -q '^history_ttl = "10m"  # file packaging/livebridge.toml:' "$work/effective.toml" || {
  echo "FAIL: packaging/livebridge.toml was not applied:" >&2; cat "$work/effective.toml" >&2; exit 1
}
echo "ok: packaging/livebridge.toml (livebridge config)"
echo "ok: $unit (systemd-analyze verify $(systemd-analyze --version | head -n 1 | cut -d' ' -f2))"

python3 - packaging/launchd/org.livebridge.hub.plist <<'EOF'
import plistlib
import sys

path = sys.argv[1]
with open(path, "rb") as f:
    plist = plistlib.load(f)

def expect(condition, what):
    if not condition:
        sys.exit(f"FAIL: {path}: {what}")

expect(plist.get("Label") == "org.livebridge.hub", "Label must be org.livebridge.hub (the file's name)")
args = plist.get("ProgramArguments")
expect(isinstance(args, list) and all(isinstance(a, str) for a in args), "ProgramArguments must be a list of strings")
expect(args[:2] == ["/usr/local/bin/livebridge", "serve"], f"ProgramArguments must run livebridge serve, not {args[:2]}")
expect("--data-dir" in args, "ProgramArguments must give --data-dir")
data_dir = args[args.index("--data-dir") + 1]
expect(data_dir.endswith("/Library/Application Support/livebridge"), f"data dir {data_dir!r} must be under Library/Application Support")
expect("~" not in data_dir and "$" not in data_dir, "launchd expands neither ~ nor $ in ProgramArguments")
expect(plist.get("RunAtLoad") is True, "RunAtLoad must be true")
expect(plist.get("KeepAlive") is True, "KeepAlive must be true")
for key in ("StandardErrorPath", "StandardOutPath"):
    expect(isinstance(plist.get(key), str) and plist[key].startswith("/"), f"{key} must be an absolute path")
expect(isinstance(plist.get("ThrottleInterval"), int), "ThrottleInterval must be an integer")
allowed = {
    "Label", "ProgramArguments", "RunAtLoad", "KeepAlive", "ThrottleInterval", "ExitTimeOut",
    "ProcessType", "SoftResourceLimits", "EnvironmentVariables", "StandardOutPath", "StandardErrorPath",
}
expect(set(plist) <= allowed, f"keys this check does not know: {sorted(set(plist) - allowed)}")
print(f"ok: {path} (plistlib)")
EOF
