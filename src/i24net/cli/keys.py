"""``i24net keys``: generate station and GS root keys (secrets never printed).

``keys generate`` makes an envelope-v2 KEM key by default, the post-quantum
hybrid ML-KEM-768 + X25519 (``--kem mlkem768-x25519``; ``--kem x25519`` for the
classical suite, ``--kem none`` for a v1-only key set), next to the v1 X25519
key: during the transition every station publishes both, so a peer that reads
only v1 still reaches it while everyone else uses v2 (docs/gateway.md, envelope
versions). It also prints when the encryption keys are due for rotation: the
``valid_until_ms`` the directory publishes for them (``--encryption-lifetime``,
30 days by default), after which the station rotates and the old key set is
destroyed once nothing queued can need it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from i24net.clock import system_clock
from i24net.errors import ConfigError
from i24net.keys import KemSuite, RootSecrets, StationSecrets, save_root, save_station
from i24net.stations import station

KEM_CHOICES: dict[str, KemSuite | None] = {
    "mlkem768-x25519": KemSuite.MLKEM768_X25519,
    "x25519": KemSuite.X25519,
    "none": None,
}
"""``--kem``: the envelope-v2 KEM suite of a new key set (None: v1 only)."""
DEFAULT_ENCRYPTION_LIFETIME_DAYS = 30
"""How long a new encryption/KEM key is published for (its directory ``valid_until_ms``):
short-lived keys, rotated and destroyed (issue 17)."""
DAY_MS = 86_400_000


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="station and GS root key files")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = keys_sub.add_parser(
        "generate",
        help="new Ed25519 signing, X25519 (v1) and HPKE KEM (v2) keys for a station "
        "(secret file mode 0600)",
    )
    gen.add_argument("--station", required=True, help="station code, e.g. FR, GS, RB-NAIROBI")
    gen.add_argument("--out", type=Path, required=True, help="directory for the key files")
    gen.add_argument(
        "--kem",
        choices=sorted(KEM_CHOICES),
        default="mlkem768-x25519",
        help="envelope v2 KEM suite (default: the post-quantum hybrid mlkem768-x25519; "
        "none: a v1-only key set)",
    )
    gen.add_argument(
        "--encryption-lifetime",
        type=int,
        default=DEFAULT_ENCRYPTION_LIFETIME_DAYS,
        metavar="DAYS",
        help="days the encryption keys are published for before rotation (default 30; "
        "the directory's valid_until_ms)",
    )
    gen.set_defaults(func=_generate)
    root = keys_sub.add_parser("generate-root", help="the GS root key that signs the directory")
    root.add_argument("--out", type=Path, required=True)
    root.set_defaults(func=_generate_root)


def _generate(args: argparse.Namespace) -> int:
    station(args.station)  # UnknownStationError for a code that is no station
    if args.encryption_lifetime < 1:
        raise ConfigError("--encryption-lifetime is at least 1 day")
    now = system_clock()
    s = StationSecrets.generate(args.station, now_ms=now, kem=KEM_CHOICES[args.kem])
    secret, public = save_station(s, args.out)
    pub = s.public()
    until = now + args.encryption_lifetime * DAY_MS
    print(f"station         {s.station}")
    print(f"signing key     {pub.signing_key_id}  ed25519:{pub.signing_public.hex()}")
    print(f"encryption key  {pub.encryption_key_id}  x25519:{pub.encryption_public.hex()} (v1)")
    if pub.kem_key_id is not None and pub.kem_public is not None and s.kem_suite is not None:
        print(
            f"KEM key         {pub.kem_key_id}  {s.kem_suite.value} "
            f"({len(pub.kem_public)} bytes; v2)"
        )
    else:
        print("KEM key         none (v1 only: this station receives v1 envelopes)")
    print(
        f"rotate by       {_day(until)} (valid_until_ms {until}: {args.encryption_lifetime} days)"
    )
    print(f"secret file     {secret} (mode 0600; keep it off shared storage)")
    print(f"public file     {public}")
    return 0


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _generate_root(args: argparse.Namespace) -> int:
    root = RootSecrets.generate(now_ms=system_clock())
    secret, public = save_root(root, args.out)
    print(f"GS root key     {root.key_id}  ed25519:{root.public.public_key.hex()}")
    print(f"secret file     {secret} (mode 0600; keep it offline)")
    print(f"public file     {public} (pin it in every service)")
    return 0
