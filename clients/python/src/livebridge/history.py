"""`livebridge.history()`: the events a channel kept, read with `GET /api/history/<channel>`.

Only hubs that keep channel history answer this route (see docs/protocol.md, recovery).
"""

from __future__ import annotations

from typing import Any, Dict, Optional
from urllib.parse import quote, urlencode

from .catalogue import validate_channel_name
from .errors import EventError, PublishError
from .publisher import Publisher, default_publisher


def history(
    channel: str, since: int = 0, limit: int = 100, publisher: Optional[Publisher] = None
) -> Dict[str, Any]:
    """The events of `channel` with an offset above `since` (at most `limit`), as the hub
    answers: `{"success": true, "channel", "epoch", "offset": <latest>, "events": [...]}`.
    Raises `PublishError` when the hub cannot be reached or has no history."""
    validate_channel_name(channel)
    for name, value in (("since", since), ("limit", limit)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EventError(f"{name}: must be a non-negative int, not {value!r}", name)
    hub = publisher or default_publisher()
    path = f"/api/history/{quote(channel, safe='')}?{urlencode({'since': since, 'limit': limit})}"
    answer = hub.request("GET", path)
    if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("success"):
        return answer.body
    if answer.status == 400:
        raise EventError(answer.error)
    raise PublishError(f"history of {channel!r}: HTTP {answer.status}: {answer.error}", answer.status, answer.error)
