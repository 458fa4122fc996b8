"""A gateway's previous encryption keys after a rotation: held for a grace period, then destroyed.

Why hold them: deliveries still queued in ``i24.in.<station>`` when a station
rotates its encryption key were wrapped by the router to the old key; a
gateway holding only its new key refuses them ``wrong_recipient`` and the
messages are lost (issue 17). Why destroy them: a key kept forever opens
every wrap ever made to it (no forward secrecy in v1, docs/envelope.md §4;
in v2 the KEM key opens every HPKE wrap made to it); rotation only limits
exposure if the old secret is gone afterwards. A key file holds the v1 X25519
key and the v2 KEM key of one key set: both are destroyed together.

A gateway has no audit chain (the router's is the network's audit): a
destruction here is logged (warning, with the key ids) and counted, not
audited.

When the grace period starts: at the directory's ``valid_from_ms`` of the
station's *current* encryption key (``keys.secret``), i.e. when the router
starts wrapping to the new key (it wraps to the newest usable key). Until
the new key is in the gateway's directory, the grace has not started and
the previous keys are kept (the router may still wrap to the old one). One
anchor for every previous key: a key two rotations back is kept as long as
the last one, never shorter than needed.

How long: ``keys.previous_grace_s``, by default 8 days: a delivery wrapped
before the rotation carries ``expires_ms`` at most 7 days after it was made
(the longest lifetime a reader accepts), after which it is refused
``expired`` anyway; one more day covers clock skew and a router whose
directory lags. Then each previous key file is overwritten and removed
(``i24net.keys.destroy_key_file``), dropped from memory, logged, and counted
in ``i24net_gateway_encryption_keys_destroyed_total``; a restart with the
path still in the settings finds it gone and says so once.
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

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 8 * 24 * 3600.0
"""7 days (the longest message lifetime, ``i24net.replay.DEFAULT_MAX_LIFETIME_MS``) + 1 day."""


@dataclass(frozen=True, slots=True)
class KeyringMetrics:
    """Definitions (recording is in :class:`PreviousKeys`)."""

    previous_keys: Gauge
    destroyed: Counter
    rotation_due: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> KeyringMetrics:
        return cls(
            previous_keys=Gauge(
                "i24net_gateway_previous_encryption_keys",
                "Previous encryption keys held after a rotation (opened deliveries still "
                "wrapped to them; destroyed after keys.previous_grace_s)",
                registry=registry,
            ),
            destroyed=Counter(
                "i24net_gateway_encryption_keys_destroyed",
                "Previous encryption key files overwritten and removed after their grace period",
                registry=registry,
            ),
            rotation_due=Gauge(
                "i24net_gateway_encryption_key_rotation_due_seconds",
                "Seconds until the directory's valid_until_ms of this station's current "
                "encryption/KEM keys (the rotation schedule; negative: overdue); -1 when "
                "the directory publishes no end for them",
                registry=registry,
            ),
        )


@dataclass(frozen=True, slots=True)
class Previous:
    path: Path
    secrets: StationSecrets = field(repr=False)


class PreviousKeys:
    """The previous key sets a gateway opens deliveries with, until their grace ends."""

    def __init__(
        self,
        current: StationSecrets,
        held: Sequence[Previous],
        *,
        grace_ms: int,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if grace_ms < 0:
            raise ConfigError("keys.previous_grace_s must not be negative")
        self.current = current
        self.grace_ms = grace_ms
        self._held = list(held)
        self.registry = registry or CollectorRegistry()
        """Where the gateway's key metrics are (the inbound stream adds the envelope
        version counters there)."""
        self.metrics = KeyringMetrics.create(self.registry)
        self.metrics.previous_keys.set(len(self._held))
        self.generation = 0
        """Grows whenever the set changes (a Receiver built on the old set is rebuilt)."""

    @classmethod
    def load(
        cls,
        current: StationSecrets,
        paths: Sequence[Path],
        *,
        grace_ms: int,
        registry: CollectorRegistry | None = None,
    ) -> PreviousKeys:
        """Load ``keys.previous``; a listed file that is gone was destroyed (logged, skipped)."""
        held = [Previous(path, s) for path, s in load_previous(current, paths)]
        return cls(current, held, grace_ms=grace_ms, registry=registry)

    @property
    def secrets(self) -> tuple[StationSecrets, ...]:
        return tuple(p.secrets for p in self._held)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(p.secrets.encryption_key_id for p in self._held)

    def rotated_at(self, directory: Directory) -> int | None:
        """When the router started wrapping to the current key (its ``valid_from_ms`` in
        the directory; the later of the v1 and v2 keys of the current set), or None while
        the directory does not list it."""
        c = self.current
        return directory.valid_from(c.station, (c.encryption_key_id, c.kem_key_id))

    def rotation_due_ms(self, directory: Directory) -> int | None:
        """The earliest ``valid_until_ms`` the directory publishes for the current key set's
        encryption/KEM keys: when the station must have rotated (None: no end published)."""
        c = self.current
        return directory.valid_until(c.station, (c.encryption_key_id, c.kem_key_id))

    def due_ms(self, directory: Directory) -> int | None:
        """When the previous keys are destroyed (None: not yet known)."""
        at = self.rotated_at(directory)
        return None if at is None or not self._held else at + self.grace_ms

    def retire(self, directory: Directory, now_ms: int) -> list[str]:
        """Destroy the previous keys once the grace period is over; their key ids. Also
        refreshes the rotation-due gauge (this runs before every inbound batch)."""
        until = self.rotation_due_ms(directory)
        self.metrics.rotation_due.set(-1 if until is None else (until - now_ms) / 1000)
        due = self.due_ms(directory)
        if due is None or now_ms < due:
            return []
        gone: list[str] = []
        keep: list[Previous] = []
        for p in self._held:
            kid = p.secrets.encryption_key_id
            if p.secrets.kem_key_id is not None:
                kid = f"{kid} and {p.secrets.kem_key_id}"
            try:
                destroy_key_file(p.path)
            except KeyStoreError as exc:
                log.error("keys: previous key %s not destroyed: %s", kid, exc)
                keep.append(p)
                continue
            gone.append(kid)
            self.metrics.destroyed.inc()
            log.warning(
                "keys: previous encryption key set %s destroyed (%s overwritten and removed): "
                "rotated at %d, grace %d s over; deliveries still wrapped to it are refused "
                "wrong_recipient from now on",
                kid,
                p.path,
                due - self.grace_ms,
                self.grace_ms // 1000,
            )
        if gone:
            self._held = keep
            self.generation += 1
            self.metrics.previous_keys.set(len(keep))
        return gone
