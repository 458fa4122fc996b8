"""Where the code under test takes a station's outgoing records, so the bench drives
the layout that code would run in production, before and after issue 12.

- Old layout: one ``i24.out.<station>`` topic per station (3 partitions each; the
  router's pattern subscription lists all 591 partitions in every fetch); records
  keyed by message id.
- New layout (docs/topics.md): one shared ingress topic ``i24.out`` partitioned by
  sender (keyed by the station code); the router reads it alone once
  ``legacy_out_topics`` is off.

The bench's own producers (the scale backlog, ``bench/router.py``) follow
``station_out``; the router processes get ``router_extra(...)``. The gateways
write where their outbox writes: the pipeline sends a probe message and looks
where it lands (``Cluster.gateway_writes_ingress``), and its router drains the
per-station topics too (``legacy``) while the gateways write them.
"""

from __future__ import annotations

import inspect
import json
import os
from typing import Any

from i24net.router.settings import RouterSection, Topics


def has_ingress() -> bool:
    """The code under test has the shared ingress topic (and the switch to stop
    reading the per-station topics)."""
    return hasattr(Topics, "ingress") and "legacy_out_topics" in RouterSection.model_fields


def provision_kwargs() -> dict[str, Any]:
    """``router.testing.provision`` without the per-station topics when the code under
    test can do without them (after the migration, production has none: their 591
    partitions would only cost the broker)."""
    from i24net.router.testing import provision

    return {"legacy": False} if "legacy" in inspect.signature(provision).parameters else {}


def station_out(topics: Topics, station: str, message_id: str) -> tuple[str, bytes]:
    """(topic, key) of a record a station's gateway would write."""
    if has_ingress():
        return str(getattr(topics, "ingress")), station.encode()  # noqa: B009
    return topics.out(station), message_id.encode()


def router_extra(*, legacy: bool) -> dict[str, Any]:
    """``[router]`` settings for the layout: without ``legacy`` the router reads the
    ingress topic alone (12 partitions instead of 591 + 12)."""
    extra = {"legacy_out_topics": legacy} if has_ingress() else {}
    # Trying a setting without editing code: I24NET_BENCH_ROUTER='{"batch_linger_ms": 10}'
    # (the run records it under "router_overrides"; the documented runs leave it unset).
    return extra | router_overrides()


def router_overrides() -> dict[str, Any]:
    raw = os.environ.get("I24NET_BENCH_ROUTER", "")
    return dict(json.loads(raw)) if raw.strip() else {}


def layout(legacy: bool) -> str:
    if not has_ingress():
        return "i24.out.<station> x 3 partitions (591), keyed by message id"
    if legacy:
        return "ingress i24.out (keyed by sender) + the legacy i24.out.<station> topics"
    return "ingress i24.out only (keyed by sender)"


async def ensure_router_topics(conn: Any, settings: Any) -> None:
    """The topics a router creates at start (the ingress among them), made now, so
    that the bench can write to them before a router runs."""
    from i24net.kafka import ensure_topics
    from i24net.router.app import topic_specs

    await ensure_topics(conn, topic_specs(settings))
