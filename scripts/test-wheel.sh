#!/usr/bin/env bash
# Tests the livebridge-hub wheel as a user gets it: builds it (scripts/build-wheel.sh), installs
# it into a fresh virtual environment outside the repository, and from a directory outside the
# repository, with a PATH of that environment and the system only (no LIVEBRIDGE_*, no
# PYTHONPATH, python -I), checks that:
# - `livebridge --version` on that PATH is the wheel's binary and the wheel's version;
# - `livebridge serve` started from PATH takes events published with
#   livebridge.events.broadcast_job_progress and delivers them to a livebridge.Client;
# - livebridge.hub.running() finds that same binary by itself and does the same;
# - the package is the installed one (not the repository's sources), with py.typed and the
#   pytest plugin's entry point.
# The wheel has no dependencies, so the install needs no network (--no-index). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

scripts/build-wheel.sh > /dev/null
wheel="$(ls target/wheels/livebridge_hub-*.whl)"
echo "wheel: $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# README's command, as printed (with the fresh environment's pip, quietly, offline).
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index target/wheels/livebridge_hub-*.whl

cd "$work"
clean_env=(env -i HOME="$work" PATH="$work/venv/bin:/usr/bin:/bin" LANG=C.UTF-8)

found="$("${clean_env[@]}" bash -c 'command -v livebridge')"
[ "$found" = "$work/venv/bin/livebridge" ] || { echo "FAIL: livebridge on PATH is $found" >&2; exit 1; }
version="$("${clean_env[@]}" livebridge --version)"
echo "livebridge --version: $version"

cat > check_wheel.py <<'PY'
import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import livebridge
import livebridge.hub
from livebridge.events import broadcast_job_progress

venv = Path(sys.prefix)
repo, version_line = sys.argv[1], sys.argv[2]

def expect(condition, what):
    if not condition:
        sys.exit(f"FAIL: {what}")

package_dir = Path(livebridge.__file__).resolve().parent
expect(venv in package_dir.parents, f"livebridge imported from {package_dir}, not from the wheel")
expect(not str(package_dir).startswith(repo), "livebridge imported from the repository")
expect((package_dir / "py.typed").is_file(), "py.typed is not in the wheel")
dist_version = importlib.metadata.version("livebridge-hub")
expect(version_line == f"livebridge {dist_version}", f"`livebridge --version` says {version_line!r}, the wheel {dist_version}")
expect(livebridge.__version__ == dist_version, f"livebridge.__version__ {livebridge.__version__} != {dist_version}")
plugins = importlib.metadata.entry_points(group="pytest11")
expect(any(ep.value == "livebridge.pytest_plugin" for ep in plugins), "no pytest11 entry point for livebridge.pytest_plugin")
binary = livebridge.hub.find_binary()
expect(binary == str(venv / "bin" / "livebridge"), f"livebridge.hub.find_binary() found {binary}")


def publish_and_receive(url, job_id):
    got = threading.Event()
    received = []
    client = livebridge.Client(url, client_type="gui", channels=["jobs"])
    client.on("job_progress", lambda event: (received.append(event), got.set()))
    client.start()
    try:
        expect(client.wait_subscribed(timeout=10), f"the client did not subscribe at {url}")
        expect(broadcast_job_progress(job_id=job_id, stage="analyzing", progress=45.5, message="Analyzing image quality"),
               f"broadcast_job_progress to {url} returned False")
        expect(got.wait(10), f"the client did not receive {job_id}")
    finally:
        client.stop()
    expect(received[0]["job_id"] == job_id and received[0]["progress"] == 45.5, f"received {received[0]}")


# 1. The command a user types: `livebridge serve`, found on PATH.
hub = subprocess.Popen(["livebridge", "serve", "--bind", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
line = hub.stdout.readline()
match = re.match(r"livebridge listening on (http://127\.0\.0\.1:\d+)", line)
expect(match, f"livebridge serve printed {line!r}")
livebridge.configure(url=match.group(1))
publish_and_receive(match.group(1), "from-path")
hub.send_signal(signal.SIGTERM)
expect(hub.wait(15) == 0, f"livebridge serve exited {hub.returncode} on SIGTERM")

# 2. The hub started by the application.
with livebridge.hub.running(port=0, data_dir=Path.cwd() / "hub-data") as started:
    expect(started.binary == binary, f"running() started {started.binary}")
    publish_and_receive(started.url, "from-running")
print(f"ok: the wheel's livebridge ({binary}) and package ({package_dir})")
PY
"${clean_env[@]}" "$work/venv/bin/python" -I check_wheel.py "$repo" "$version"
