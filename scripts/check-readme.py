#!/usr/bin/env python3
"""Runs README.md's quick start as printed against a fresh server, so the README cannot drift
from the binary.

Takes the first ```sh block under "## Quick start", joins continued lines, and runs each
`curl` with bash, in order, with two substitutions: the server's port for 5100 (the server
under test listens on a free port) and the client id the handshake returned for `<uuid>`. A
`# {...}` comment after a command is the answer the README promises: every key it spells out
with a literal value must be in the real answer with that value (`...` and `"..."` stand for
the rest). A poll with `wait=` that is followed by "In another terminal" runs in the background
and must be answered, with the first event published there, once those commands ran.

Usage: scripts/check-readme.py [path/to/livebridge]   (default: target/release/livebridge)
"""

import json
import os
import re
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quick_start_commands(readme):
    section = readme.split("## Quick start", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = []  # [command, expected comment or None, comment lines before it]
    pending = ""
    notes = []
    for line in block.splitlines():
        stripped = line.strip()
        if pending:
            pending += " " + stripped.rstrip("\\").strip()
            if not stripped.endswith("\\"):
                commands.append([pending, None, notes])
                pending, notes = "", []
            continue
        if stripped.startswith("# {"):
            commands[-1][1] = stripped[2:]
        elif stripped.startswith("#"):
            notes.append(stripped)
        elif stripped.endswith("\\"):
            pending = stripped.rstrip("\\").strip()
        elif stripped:
            commands.append([stripped, None, notes])
            notes = []
    return commands


def promised(comment):
    """The README's `# {...}` as a dict of the keys it spells out with literal values."""
    text = comment.replace(",...", "").replace("...", "")
    text = re.sub(r'"<uuid>"', '"<uuid>"', text)
    return json.loads(text)


def check(expected, actual, where):
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: no {key!r} in {actual!r}"
            check(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        for index, value in enumerate(expected):
            assert index < len(actual), f"{where}: list too short: {actual!r}"
            check(value, actual[index], f"{where}[{index}]")
    elif expected in ("<uuid>", ""):
        return
    else:
        assert expected == actual, f"{where}: README says {expected!r}, the server {actual!r}"


def run(command):
    done = subprocess.run(["bash", "-c", command + " --silent --show-error --max-time 40"],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"{command}\nexit {done.returncode}: {done.stderr}"
    return done.stdout


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/livebridge")
    server = subprocess.Popen([binary, "serve", "--bind", "127.0.0.1:0", "--log", "warn"],
                              stdout=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline().strip()
        port = first.rsplit(":", 1)[1]
        with open(os.path.join(ROOT, "README.md")) as readme:
            commands = quick_start_commands(readme.read())
        assert len(commands) >= 10, f"quick start not found: {commands}"
        client_id = None
        background = None
        ran = 0
        for index, (command, comment, notes) in enumerate(commands):
            command = command.replace("localhost:5100", f"localhost:{port}")
            if client_id:
                command = command.replace("<uuid>", client_id)
            later_notes = commands[index + 1][2] if index + 1 < len(commands) else []
            if "wait=" in command and any("another terminal" in n for n in later_notes):
                result = {}
                background = threading.Thread(target=lambda: result.update(out=run(command)))
                background.start()
                # Let the poll reach the server before the events are published.
                threading.Event().wait(0.5)
                continue
            out = run(command)
            ran += 1
            if "/metrics" in command:
                assert "livebridge_messages_published_total" in out, out
                continue
            answer = json.loads(out)
            assert answer.get("success") is True, f"{command}\n{out}"
            if "/ws/handshake" in command:
                client_id = answer["client_id"]
            if comment:
                check(promised(comment), answer, command)
        assert background is not None, "the quick start's waiting poll was not found"
        background.join(timeout=30)
        answer = json.loads(result["out"])
        types = [m["type"] for m in answer["messages"]]
        assert types and types[0] == "job_progress", f"the waiting poll got {answer}"
        print(f"check-readme: the quick start ran as printed ({ran + 1} commands)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
