"""The generated livebridge.catalogue_types (scripts/generate-client-types.sh), checked as an
application uses it: mypy --strict accepts typing_cases/catalogue_usage.py and refuses each
misuse in typing_cases/catalogue_misuse.py. Needs mypy (requirements-test.txt), not the hub."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

CASES = Path(__file__).parent / "typing_cases"
SOURCES = Path(__file__).parents[1] / "src"
GENERATED = SOURCES / "livebridge" / "catalogue_types.py"
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def mypy(
    case: Path, tmp_path: Path, python_version: Optional[str] = None
) -> subprocess.CompletedProcess[str]:
    # The generated module is named on the command line so that it is checked strictly too;
    # the rest of the package is followed silently (its own typing is not what this tests).
    command = [
        sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
        "--cache-dir", str(tmp_path / "mypy-cache"), "--show-error-codes",
        "--no-pretty", str(GENERATED), str(case),
    ]
    if python_version:
        command += ["--python-version", python_version]
    env = dict(os.environ, MYPYPATH=str(SOURCES))
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=100)


# 3.10: the module takes Required from typing_extensions below 3.11 (the oldest mypy checks for).
@pytest.mark.parametrize("python_version", [None, "3.10"])
def test_mypy_strict_accepts_the_generated_types_used_correctly(
    tmp_path: Path, python_version: Optional[str]
) -> None:
    result = mypy(CASES / "catalogue_usage.py", tmp_path, python_version)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_refuses_each_misuse_and_nothing_else(tmp_path: Path) -> None:
    case = CASES / "catalogue_misuse.py"
    expected = {
        (number, match.group(1))
        for number, line in enumerate(case.read_text().splitlines(), start=1)
        if (match := re.search(r"# error: ([a-z-]+)$", line))
    }
    assert len(expected) == 7
    result = mypy(case, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    reported = set()
    for line in result.stdout.splitlines():
        match = ERROR.match(line)
        if match:
            assert Path(match["file"]).name == case.name, line
            reported.add((int(match["line"]), match["code"]))
    assert reported == expected, result.stdout
