"""The GS's previous key sets after a rotation: kept while messages can need them, then destroyed.

Why keep them: a sender seals to the GS's *current* encryption key (v1 static
X25519, v2 HPKE KEM: docs/envelope.md). After a rotation, envelopes sealed to
the old key can still be read by the router: records not yet consumed from
``i24.out``, holds waiting in ``i24.quarantine`` for a reviewer (the router
re-opens them on approval), dead letters an operator may replay from
``i24.dlq``. Why destroy them: a key kept forever opens every wrap ever made
to it, and an adversary who recorded the topics gets everything once the
key leaks; rotation limits exposure only if the old secret is gone
(issue 17: short-lived encryption keys, destroyed).

When: the grace starts at the directory's ``valid_from_ms`` of the GS's
*current* encryption key (the moment senders start sealing to it, as in the
gateway's ``i24net.gateway.keyring``) and lasts :func:`hold_ms`: the longest
of the ``i24.out`` retention, the longest review deadline and the ``i24.dlq``
retention (30 days by default) -- or ``[keys] previous_hold_s`` when set.
Then each previous key file is overwritten and removed
(``i24net.keys.destroy_key_file``), the key sets are dropped from the
pipeline, and the app appends one ``KEY_DESTROYED`` audit entry per key
naming its key id (never key material) to the router's audit chain.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from i24net.directory import Directory
from i24net.errors import ConfigError, KeyStoreError
from i24net.keys import StationSecrets, destroy_key_file, load_previous
from i24net.router.deadlines import ReviewDeadlines

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
DLQ_RETENTION_MS = 30 * DAY_MS
"""``retention.ms`` of ``i24.dlq`` (router/app.py ``topic_specs``, docs/topics.md)."""


def hold_ms(out_retention_ms: int, deadlines: ReviewDeadlines, dlq_retention_ms: int) -> int:
    """How long after a rotation the router still needs its previous keys: the longest
    of the ingress retention, the longest review deadline (a hold is re-opened on
    approval) and the DLQ retention (an operator may replay a dead letter)."""
    longest_review = max(
        [deadlines.default_ms, *deadlines.precedence_ms.values(), *deadlines.kind_ms.values()]
    )
    return max(out_retention_ms, longest_review, dlq_retention_ms)


@dataclass(frozen=True, slots=True)
class RouterKeyringMetrics:
    previous_keys: Gauge
    destroyed: Counter
    rotation_due: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RouterKeyringMetrics:
        return cls(
            previous_keys=Gauge(
                "i24net_router_previous_encryption_keys",
                "Previous GS key sets held after a rotation (destroyed once no stored "
                "message can need them)",
                registry=registry,
            ),
            destroyed=Counter(
                "i24net_router_encryption_keys_destroyed",
                "Previous GS key files overwritten and removed (each one audited KEY_DESTROYED)",
                registry=registry,
            ),
            rotation_due=Gauge(
                "i24net_router_encryption_key_rotation_due_seconds",
                "Seconds until the directory's valid_until_ms of the GS's current encryption "
                "and KEM keys (negative: overdue; -1: no end published)",
                registry=registry,
            ),
        )


@dataclass(frozen=True, slots=True)
class Held:
    path: Path
    secrets: StationSecrets = field(repr=False)


class RouterKeyring:
    """The GS's current key set and the previous ones the router still opens with."""

    def __init__(
        self,
        current: StationSecrets,
        held: Sequence[Held],
        *,
        hold_ms: int,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if hold_ms < 0:
            raise ConfigError("keys.previous_hold_s must not be negative")
        self.current = current
        self.hold_ms = hold_ms
        self._held = list(held)
        self.metrics = RouterKeyringMetrics.create(registry or CollectorRegistry())
        self.metrics.previous_keys.set(len(self._held))

    @classmethod
    def load(
        cls,
        current: StationSecrets,
        paths: Sequence[Path],
        *,
        hold_ms: int,
        registry: CollectorRegistry | None = None,
    ) -> RouterKeyring:
        """Load ``[keys] previous``; a listed file that is gone was destroyed (logged once)."""
        held = [Held(path, s) for path, s in load_previous(current, paths)]
        return cls(current, held, hold_ms=hold_ms, registry=registry)

    @property
    def previous(self) -> tuple[StationSecrets, ...]:
        return tuple(h.secrets for h in self._held)

    def rotated_at(self, directory: Directory) -> int | None:
        """``valid_from_ms`` of the GS's current encryption key (v1 or v2) in ``directory``;
        None while it is not listed (senders may still seal to an old key)."""
        c = self.current
        return directory.valid_from(c.station, (c.encryption_key_id, c.kem_key_id))

    def due_ms(self, directory: Directory) -> int | None:
        at = self.rotated_at(directory)
        return None if at is None or not self._held else at + self.hold_ms

    def rotation_due_ms(self, directory: Directory) -> int | None:
        """When the GS's current encryption/KEM keys end (the directory's earliest
        ``valid_until_ms`` for them; None: no end published)."""
        c = self.current
        return directory.valid_until(c.station, (c.encryption_key_id, c.kem_key_id))

    def retire(self, directory: Directory, now_ms: int) -> list[str]:
        """Destroy every previous key file once the hold is over; the key ids destroyed
        (encryption and KEM key ids of each file). A file that cannot be destroyed is kept
        and retried at the next call. Also refreshes the rotation-due gauge (the app calls
        this at every directory pass): the GS's key is the one every wrap to the router
        uses, so its end is alerted like a station's (``I24netEncryptionKeyRotationDue``)."""
        until = self.rotation_due_ms(directory)
        self.metrics.rotation_due.set(-1 if until is None else (until - now_ms) / 1000)
        due = self.due_ms(directory)
        if due is None or now_ms < due:
            return []
        gone: list[str] = []
        keep: list[Held] = []
        for h in self._held:
            ids = [h.secrets.encryption_key_id]
            if h.secrets.kem_key_id is not None:
                ids.append(h.secrets.kem_key_id)
            try:
                destroy_key_file(h.path)
            except KeyStoreError as exc:
                log.error("keys: previous GS key %s not destroyed: %s", ids[0], exc)
                keep.append(h)
                continue
            gone += ids
            self.metrics.destroyed.inc()
            log.warning(
                "keys: previous GS key set %s destroyed (%s overwritten and removed): rotated "
                "at %d, hold of %d s over; envelopes still sealed to it can no longer be opened",
                ", ".join(ids),
                h.path,
                due - self.hold_ms,
                self.hold_ms // 1000,
            )
        if len(keep) != len(self._held):
            self._held = keep
            self.metrics.previous_keys.set(len(keep))
        return gone
