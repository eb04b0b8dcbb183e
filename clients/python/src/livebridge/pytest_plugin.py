"""A pytest fixture for the application's own tests: a real hub per test.

Installed with the `livebridge-hub` wheel, pytest loads this plugin by itself (entry point
`pytest11`), so a test just names the fixture:

    from livebridge.events import broadcast_job_progress

    def test_progress_is_published(livebridge_hub):
        assert broadcast_job_progress("job1", "analyzing", 10.0)   # goes to this test's hub
        assert livebridge_hub.url.startswith("http://127.0.0.1:")

Without the entry point (sources on sys.path), add `pytest_plugins = ["livebridge.pytest_plugin"]`
to the top-level conftest.py.

Each test gets its own hub on a free loopback port (`port=0`) with its data directory in the
test's temporary directory, the module-level publisher pointed at it, and the
`LIVEBRIDGE_*` variables of the developer's environment left out (a `LIVEBRIDGE_DATA_DIR`
there must not send test events into real data). More `livebridge serve` settings come from
the `livebridge_hub_options` fixture, which a conftest.py may override:

    @pytest.fixture
    def livebridge_hub_options():
        return {"history_size": 50, "admin_token": "test-token"}

A hub that crashes during a test fails that test with `livebridge.hub.HubExited` and its log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from .hub import Hub, running


@pytest.fixture
def livebridge_hub_options() -> Dict[str, Any]:
    """Extra options for `livebridge.hub.running()` (flags, `binary`, `on_exit`, ...)."""
    return {}


@pytest.fixture
def livebridge_hub(tmp_path: Path, livebridge_hub_options: Dict[str, Any]) -> Iterator[Hub]:
    """A running hub for one test (see the module's documentation)."""
    options: Dict[str, Any] = {
        "port": 0,
        "data_dir": tmp_path / "livebridge-data",
        "env": {k: v for k, v in os.environ.items() if not k.startswith("LIVEBRIDGE_")},
    }
    options.update(livebridge_hub_options)
    with running(**options) as hub:
        yield hub
