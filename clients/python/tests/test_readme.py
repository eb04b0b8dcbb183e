"""The examples of clients/python/README.md, run as printed against a real hub (its address in
place of 127.0.0.1:5100), with the output the README says they print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict

import pytest

from support import Hub

README = Path(__file__).resolve().parents[1] / "README.md"

EXPECTED_OUTPUT = {
    "publish": ["published"],
    "errors": ["progress - job_progress.progress: must be a number, not str"],
    "subscriber": ["state: connecting", "state: open", "job123: 45.5% Analyzing image quality", "state: closed"],
    "asyncio": ["photo_approved 789"],
    "hub": ["published job9"],
}

# Runs the Qt example offscreen: once the window is up, publishes a job_progress and quits
# when the example's label shows it.
QT_HARNESS = textwrap.dedent(
    """
    import os, sys, threading
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication
    namespace = {"__name__": "__main__"}
    run_loop = QApplication.exec

    def exec_until_shown():
        def publish():
            namespace["hub"].client.wait_subscribed(10)
            from livebridge.events import broadcast_job_progress
            broadcast_job_progress("job7", "export", 80)
        threading.Thread(target=publish, daemon=True).start()
        app = QApplication.instance()
        def check():
            if namespace["label"].text() == "job7: 80%":
                app.quit()
        timer = QTimer()
        timer.timeout.connect(check)
        timer.start(20)
        QTimer.singleShot(10000, app.quit)
        return run_loop()

    QApplication.exec = staticmethod(exec_until_shown)
    try:
        exec(compile(open(sys.argv[1]).read(), "README example", "exec"), namespace)
    except SystemExit as exit:
        print("label:", namespace["label"].text())
        print("client state:", namespace["hub"].client.state)
        sys.exit(exit.code)
    """
)


def examples() -> Dict[str, str]:
    text = README.read_text()
    found = dict(re.findall(r"<!-- readme-test: (\w+) -->\n```python\n(.*?)```", text, re.DOTALL))
    assert set(found) == set(EXPECTED_OUTPUT) | {"qt"}, sorted(found)
    return found


def run_example(hub: Hub, code: str, tmp_path: Path, harness: str = "") -> subprocess.CompletedProcess:
    script = tmp_path / "example.py"
    script.write_text(code.replace("http://127.0.0.1:5100", hub.url))
    env = {**os.environ, "LIVEBRIDGE_URL": hub.url, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("LIVEBRIDGE_ADMIN_TOKEN", None)
    if harness:
        (tmp_path / "harness.py").write_text(harness)
        command = [sys.executable, str(tmp_path / "harness.py"), str(script)]
    else:
        command = [sys.executable, str(script)]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_example_prints_what_the_readme_says(hub: Hub, tmp_path: Path, name: str) -> None:
    result = run_example(hub, examples()[name], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED_OUTPUT[name], result.stderr
    readme = README.read_text()
    for line in EXPECTED_OUTPUT[name]:
        assert f"`{line}`" in readme, f"the README does not say it prints {line!r}"


def test_the_qt_example_shows_progress_on_its_label(hub: Hub, tmp_path: Path) -> None:
    pytest.importorskip("PyQt6.QtWidgets", reason="PyQt6 is not installed")
    result = run_example(hub, examples()["qt"], tmp_path, harness=QT_HARNESS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["label: job7: 80%", "client state: closed"], result.stderr
