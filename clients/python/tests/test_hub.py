"""`livebridge.hub`: the real binary (LIVEBRIDGE_BIN) started, used, stopped and crashed by the
application, and the `livebridge_hub` pytest fixture."""

from __future__ import annotations

import os
import re
import signal
import stat
import threading
import time
import urllib.request
from pathlib import Path
from typing import List

import pytest

import livebridge
import livebridge.hub
from livebridge import settings
from livebridge.events import broadcast_job_progress
from livebridge.hub import HubError, HubExited, HubStartError, find_binary, running, settings_to_flags
from support import wait_for

pytest_plugins = ["pytester"]


def get_json(url: str) -> dict:
    import json

    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read().decode())


def test_settings_become_serve_flags() -> None:
    assert settings_to_flags(
        {
            "data_dir": Path("/tmp/x"),
            "history_size": 50,
            "broker_durable": True,
            "admin_token": None,
            "no_thing": False,
            "allowed_origin": ["http://a:1", "http://b:2"],
        }
    ) == [
        "--data-dir",
        "/tmp/x",
        "--history-size",
        "50",
        "--broker-durable",
        "--allowed-origin",
        "http://a:1",
        "--allowed-origin",
        "http://b:2",
    ]


def test_port_0_starts_ready_and_points_the_publisher_at_it(tmp_path: Path) -> None:
    with running(port=0, data_dir=tmp_path / "data") as hub:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", hub.url)
        assert hub.port != 0
        # Ready means listening: the first request after start() is answered.
        assert get_json(hub.url + "/ws/status")["success"] is True
        assert settings.current().url == hub.url
        assert (tmp_path / "data").is_dir()
    # Back to what it was (conftest's unreachable default) once the hub stopped.
    assert settings.current().url == "http://127.0.0.1:9"


def test_publish_with_broadcast_functions_and_receive_with_client(tmp_path: Path) -> None:
    received: List[dict] = []
    got = threading.Event()
    with running(port=0, data_dir=tmp_path) as hub:
        client = livebridge.Client(hub.url, client_type="gui", channels=["jobs"], transport="polling")
        client.on("job_progress", lambda event: (received.append(event), got.set()))
        client.start()
        try:
            assert client.wait_subscribed(timeout=10)
            assert broadcast_job_progress(job_id="abc123", stage="analyzing", progress=45.5) is True
            assert got.wait(10), "the client did not receive the event"
        finally:
            client.stop()
    assert received[0]["job_id"] == "abc123"
    assert received[0]["progress"] == 45.5


def test_sigterm_stop_exits_0_and_keeps_the_data_dir(tmp_path: Path) -> None:
    exits: List[HubExited] = []
    hub = livebridge.hub.Hub(0, tmp_path / "data", on_exit=exits.append).start()
    client = livebridge.Client(hub.url, channels=["jobs"], transport="websocket")
    client.start()
    assert client.wait_subscribed(timeout=10)
    assert broadcast_job_progress("kept", "stage", 1.0)
    pid = hub.pid
    started = time.monotonic()
    assert hub.stop() == 0  # graceful, with a WebSocket open
    assert time.monotonic() - started < hub.stop_timeout
    client.stop()
    assert hub.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert exits == []  # a requested stop is not a crash
    hub.check()  # nor does it raise

    # The flag reached the binary: a second hub on the same directory has the event.
    with running(port=0, data_dir=tmp_path / "data"):
        events = livebridge.history("jobs")["events"]
    assert [event["job_id"] for event in events] == ["kept"]


def test_a_crash_calls_on_exit_and_makes_the_next_use_raise(tmp_path: Path) -> None:
    exits: List[HubExited] = []
    called = threading.Event()

    def on_exit(error: HubExited) -> None:
        exits.append(error)
        called.set()

    with running(port=0, on_exit=on_exit, log="info") as hub:
        # The hub prints its address before its server thread logs "livebridge listening":
        # wait for that line so the log the crash reports has something in it.
        deadline = time.monotonic() + 10
        while "livebridge listening" not in hub.log():
            assert time.monotonic() < deadline, "the hub logged nothing within 10 s"
            time.sleep(0.01)
        os.kill(hub.pid, signal.SIGKILL)
        assert called.wait(5), "on_exit was not called"
        assert exits[0].returncode == -signal.SIGKILL
        assert "killed by signal 9" in str(exits[0])
        assert exits[0].log_tail.strip() != ""  # the hub's own log lines (--log info)
        with pytest.raises(HubExited) as raised:
            hub.check()
        assert raised.value.returncode == -9
        with pytest.raises(HubExited):
            hub.url
    # on_exit reported it: leaving the block does not raise it again.
    assert len(exits) == 1


def test_an_unreported_crash_is_raised_when_the_block_ends() -> None:
    with pytest.raises(HubExited) as raised:
        with running(port=0) as hub:
            os.kill(hub.pid, signal.SIGKILL)
            wait_for(lambda: hub.returncode is not None, what="the hub to die")
    assert raised.value.returncode == -9


def test_a_binary_that_fails_at_start_gives_its_stderr() -> None:
    with pytest.raises(HubStartError) as raised:
        with running(port=0, no_such_setting="x"):
            pass
    assert raised.value.returncode == 2
    assert "--no-such-setting" in raised.value.log_tail
    assert "--no-such-setting" in str(raised.value)


def test_a_port_in_use_is_a_start_error() -> None:
    with running(port=0) as first:
        second = running(port=first.port)
        try:
            with pytest.raises(HubStartError) as raised:
                second.start()
        finally:
            if second.returncode is None and second.pid is not None:
                second.stop()
        assert raised.value.returncode not in (None, 0)
        assert raised.value.log_tail.strip() != ""


def test_a_binary_that_never_listens_is_killed_at_the_deadline(tmp_path: Path) -> None:
    silent = tmp_path / "silent-hub"
    silent.write_text("#!/bin/sh\necho 'starting, slowly' >&2\nexec sleep 60\n")
    silent.chmod(silent.stat().st_mode | stat.S_IXUSR)
    started = time.monotonic()
    with pytest.raises(HubStartError) as raised:
        running(port=0, binary=silent, startup_timeout=0.5).start()
    assert time.monotonic() - started < 5
    assert raised.value.returncode is None
    assert "did not report listening within 0.5 s" in str(raised.value)
    assert "starting, slowly" in raised.value.log_tail


def test_find_binary_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.environ["LIVEBRIDGE_BIN"]
    assert find_binary() == real
    assert find_binary(real) == real
    with pytest.raises(HubError, match="not a file"):
        find_binary(tmp_path / "nothing")
    # Without LIVEBRIDGE_BIN (and none in this environment's scripts directory): PATH.
    monkeypatch.delenv("LIVEBRIDGE_BIN")
    (tmp_path / "livebridge").symlink_to(real)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_binary() == str(tmp_path / "livebridge")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(HubError, match="install the livebridge-hub wheel"):
        find_binary()


def test_the_pytest_fixture(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def livebridge_hub_options():
            return {"history_size": 7}
        """
    )
    pytester.makepyfile(
        """
        import urllib.request, json
        import livebridge
        from livebridge.events import broadcast_job_progress

        def test_uses_its_own_hub(livebridge_hub, tmp_path):
            assert broadcast_job_progress("job1", "analyzing", 10.0)
            assert livebridge.history("jobs")["events"][0]["job_id"] == "job1"
            assert (tmp_path / "livebridge-data").is_dir()
            assert "--history-size" in livebridge_hub.command

        def test_a_second_test_gets_a_fresh_hub(livebridge_hub):
            assert livebridge.history("jobs")["events"] == []
        """
    )
    # The developer's LIVEBRIDGE_DATA_DIR must not reach the fixture's hub.
    real_data = tmp_path / "real-data"
    monkeypatch.setenv("LIVEBRIDGE_DATA_DIR", str(real_data))
    result = pytester.runpytest_subprocess("-p", "livebridge.pytest_plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert not real_data.exists()
