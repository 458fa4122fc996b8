"""Client settings shared by the services' Kafka consumers.

``TAIL_FETCH_MAX_WAIT_MS``: how long the broker holds a fetch of a consumer that
mostly waits (a gateway's inbound stream, its directory follower). An aiokafka
consumer with nothing to read sends its next FetchRequest as soon as the previous
long poll expires, for ever: with aiokafka's default of 500 ms, an idle consumer
costs the broker ~0.8-1.1 ms of CPU per second (``bench/probe_idle_fetch.py``: 50
idle ``read_committed`` consumers, 62-80 ms/s of broker CPU against 22-25 with
5 s), and the ~400 consumers of 196 stations' gateways a third of a broker core
while nothing flows. A record (or a transaction's commit marker) still ends the
long poll at once, so a longer wait delays nothing that is written.

Not for a consumer that seeks while it runs (the router's ingress consumer
rewinds after an aborted transaction): with one broker aiokafka sends no fetch to
it while one is in flight, so a seek would wait out the long poll.
"""

from __future__ import annotations

TAIL_FETCH_MAX_WAIT_MS = 5000

__all__ = ["TAIL_FETCH_MAX_WAIT_MS"]
