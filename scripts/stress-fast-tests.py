#!/usr/bin/env python3
"""Runs the fast test binaries many times in a row, each run with a busy second core, and
reports every hang and failure per test (issue 30: a test that hung one run in ten).

The fast binaries are the unit and integration tests of livebridge-core and
livebridge-runtime-support, the load tool's unit tests, and the unit tests of both runtimes
(livebridge-smol's and livebridge-axum's libraries): what runs in parallel threads inside one
process, where a race shows. Each run of a binary is killed after --limit seconds; a killed
run's hung tests are the ones it listed but never reported.

    scripts/stress-fast-tests.py              # 50 runs (the issue's figure)
    scripts/stress-fast-tests.py --runs 10    # quicker

Exits 1 if any test failed or hung in any run. The result is recorded in docs/conformance.md
("Stress runs of the fast tests").
"""

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = [
    ("livebridge-core", None),
    ("livebridge-runtime-support", None),
    ("livebridge-loadgen", None),
    ("livebridge-smol", "lib"),
    ("livebridge-axum", "lib"),
]
RESULT = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)", re.M)


def test_binaries(private_dir):
    """(name, path) of each fast test binary, built once and copied to `private_dir`: cargo
    rebuilds a binary at the same path when the sources change, and a run must not pick up a
    half-written or newer one."""
    binaries = []
    for package, kind in PACKAGES:
        command = ["cargo", "test", "--locked", "--no-run", "--message-format=json", "-p", package]
        if kind == "lib":
            command.append("--lib")
        built = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
        for line in built.stdout.splitlines():
            message = json.loads(line)
            if message.get("reason") == "compiler-artifact" and message.get("executable") and message["profile"]["test"]:
                target = message["target"]
                copy = os.path.join(private_dir, os.path.basename(message["executable"]))
                shutil.copy2(message["executable"], copy)
                # Run where cargo test runs it (the package's directory): proptest finds its
                # regression files relative to it.
                package_dir = os.path.dirname(message["manifest_path"])
                binaries.append((f"{package}::{target['name']}", copy, package_dir))
    return binaries


def listed_tests(path):
    listing = subprocess.run([path, "--list", "--format", "terse"], capture_output=True, text=True, timeout=60)
    return [line.rsplit(": ", 1)[0] for line in listing.stdout.splitlines() if line.endswith(": test")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--limit", type=float, default=120.0, help="seconds before a run of one binary counts as hung")
    args = parser.parse_args()

    private_dir = tempfile.mkdtemp(prefix="livebridge-stress-")
    binaries = test_binaries(private_dir)
    tests = {name: listed_tests(path) for name, path, _ in binaries}
    failures = collections.Counter()
    hangs = collections.Counter()
    binary_runs = collections.Counter()
    started = time.monotonic()
    # The busy second core: a process that only spins, for the whole stress run.
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for run in range(1, args.runs + 1):
            for name, path, package_dir in binaries:
                binary_runs[name] += 1
                done = None
                try:
                    done = subprocess.run(
                        [path, "--test-threads", "2"],
                        cwd=package_dir,
                        capture_output=True,
                        text=True,
                        timeout=args.limit,
                    )
                    output, hung = done.stdout, False
                except subprocess.TimeoutExpired as expired:
                    output = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
                    hung = True
                reported = {}
                for test, outcome in RESULT.findall(output):
                    reported[test] = outcome
                    if outcome == "FAILED":
                        failures[f"{name} {test}"] += 1
                        print(f"run {run}: FAILED {name} {test}", flush=True)
                if hung:
                    for test in tests[name]:
                        if test not in reported:
                            hangs[f"{name} {test}"] += 1
                    print(f"run {run}: HUNG {name}: {sorted(set(tests[name]) - set(reported))}", flush=True)
                elif done.returncode != 0 and not any(o == "FAILED" for o in reported.values()):
                    failures[f"{name} (exit {done.returncode}, no test reported failing)"] += 1
                    print(f"run {run}: exit {done.returncode} of {name}: {done.stderr[-500:]}", flush=True)
                if done is not None and done.returncode != 0 and "failures:" in output:
                    # libtest's report of what failed, for the log.
                    print(output[output.index("failures:"):][-3000:], flush=True)
            print(f"run {run}/{args.runs}: {sum(failures.values())} failures, {sum(hangs.values())} hangs so far", flush=True)
    finally:
        spinner.kill()
        shutil.rmtree(private_dir, ignore_errors=True)
    minutes = (time.monotonic() - started) / 60
    total = sum(len(t) for t in tests.values())
    print(f"\n{args.runs} runs of {len(binaries)} binaries ({total} tests), a busy second core, {minutes:.1f} min:")
    for name, _, _ in binaries:
        print(f"  {name}: {len(tests[name])} tests, {binary_runs[name]} runs")
    if not failures and not hangs:
        print(f"every test passed in {args.runs} of {args.runs} runs; no hang")
        return 0
    for what, counter in (("failed", failures), ("hung", hangs)):
        for test, count in sorted(counter.items()):
            print(f"  {what} in {count} of {args.runs} runs: {test}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
