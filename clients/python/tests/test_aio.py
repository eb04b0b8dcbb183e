"""livebridge.aio against the real hub: `async with connect(...)` and `async for`, over a
WebSocket and over the long-poll fallback, resuming after a short outage, re-subscribing after
a restart, sending, and ending the iteration on close."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Awaitable, Callable, Dict, List

import pytest

import livebridge
import livebridge.aio
from livebridge import events
from support import Hub, RawSubscriber, wait_for

TRANSPORTS = ["websocket", "polling"]


def run(coroutine: Awaitable[Any], timeout: float = 20) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))  # type: ignore[arg-type]


async def in_thread(call: Callable[[], Any]) -> Any:
    """Runs a blocking call (publishing, the hub's HTTP API) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, call)


async def take(client: livebridge.aio.AsyncClient, count: int, timeout: float = 5) -> List[Dict[str, Any]]:
    received: List[Dict[str, Any]] = []

    async def read() -> None:
        async for event in client:
            received.append(event)
            if len(received) == count:
                return

    await asyncio.wait_for(read(), timeout)
    return received


def connect(hub: Hub, transport: str, **options: Any) -> livebridge.aio.AsyncClient:
    return livebridge.aio.connect(
        hub.url, channels=["jobs"], transport=transport, reconnect_delay=0.05, max_reconnect_delay=0.5, poll_wait=5, timeout=3, **options
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_async_for_receives_events(publish_to: Hub, transport: str) -> None:
    async def main() -> None:
        async with connect(publish_to, transport) as client:
            assert client.transport_in_use == transport
            for step in range(3):
                assert await in_thread(lambda step=step: events.broadcast_job_progress(f"job{step}", "s", step))
            received = await take(client, 3)
            assert [e["job_id"] for e in received] == ["job0", "job1", "job2"]
        assert client.state == "closed"
        assert [e async for e in client] == []  # closing ends the iteration

    run(main())


def test_falls_back_to_polling_without_websockets(publish_to: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [name for name in sys.modules if name == "websockets" or name.startswith("websockets.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "websockets", None)

    async def main() -> None:
        async with connect(publish_to, "auto") as client:
            assert client.transport_in_use == "polling"
            assert await in_thread(lambda: events.broadcast_job_started("fallback", 1))
            assert (await take(client, 1))[0]["job_id"] == "fallback"

    run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_short_outage_resumes_with_what_was_published_meanwhile(publish_to: Hub, transport: str) -> None:
    hub = publish_to

    async def main() -> None:
        states: List[str] = []
        async with connect(hub, transport) as client:
            client.on("state", lambda m: states.append(m["state"]))
            client_id = client.client_id
            client._drop_connection(hold=True)
            await in_thread(lambda: wait_for(lambda: "reconnecting" in states, what="the client to see the drop"))
            await in_thread(lambda: wait_for(lambda: not hub.client(client_id or "")["attached"], what="the hub to see it"))
            for step in range(3):
                assert await in_thread(lambda step=step: events.broadcast_job_started(f"meanwhile{step}", 1))
            client._allow_reconnect()
            received = await take(client, 3)
            assert [e["job_id"] for e in received] == ["meanwhile0", "meanwhile1", "meanwhile2"]
            assert client.client_id == client_id

    run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_restart_gives_a_new_subscribed_session(publish_to: Hub, transport: str) -> None:
    hub = publish_to

    async def main() -> None:
        async with connect(hub, transport) as client:
            first_id = client.client_id
            await in_thread(hub.restart)
            await in_thread(lambda: wait_for(lambda: client.client_id != first_id, timeout=10, what="a new session"))
            assert await client.wait_subscribed(10)
            assert await in_thread(lambda: events.broadcast_job_started("after-restart", 1))
            # The restart lost the channel's history: the app is told, then events flow.
            notice, event = await take(client, 2)
            assert notice["type"] == "recovery_failed" and notice["channel"] == "jobs"
            assert event["job_id"] == "after-restart"

    run(main())


def test_send_and_await_connect(publish_to: Hub) -> None:
    hub = publish_to
    watcher = RawSubscriber(hub, ["jobs"])

    async def main() -> None:
        client = await connect(hub, "websocket")
        try:
            reply = await client.send({"type": "job_progress", "job_id": "async", "stage": "s", "progress": 1})
            assert reply["type"] == "published" and reply["recipients"] == 1
            assert (await client.send({"type": "ping"}))["type"] == "pong"
            with pytest.raises(livebridge.EventError):
                await client.send({"type": "not_a_client_message"})
        finally:
            await client.close()

    try:
        run(main())
        assert watcher.next_event()["job_id"] == "async"
    finally:
        watcher.close()
