"""``i24net keys``: generate station and GS root keys (secrets never printed)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from i24net.clock import system_clock
from i24net.keys import RootSecrets, StationSecrets, save_root, save_station
from i24net.stations import station


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="station and GS root key files")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = keys_sub.add_parser(
        "generate", help="new Ed25519 + X25519 keys for a station (secret file mode 0600)"
    )
    gen.add_argument("--station", required=True, help="station code, e.g. FR, GS, RB-NAIROBI")
    gen.add_argument("--out", type=Path, required=True, help="directory for the key files")
    gen.set_defaults(func=_generate)
    root = keys_sub.add_parser("generate-root", help="the GS root key that signs the directory")
    root.add_argument("--out", type=Path, required=True)
    root.set_defaults(func=_generate_root)


def _generate(args: argparse.Namespace) -> int:
    station(args.station)  # UnknownStationError for a code that is no station
    s = StationSecrets.generate(args.station, now_ms=system_clock())
    secret, public = save_station(s, args.out)
    pub = s.public()
    print(f"station         {s.station}")
    print(f"signing key     {pub.signing_key_id}  ed25519:{pub.signing_public.hex()}")
    print(f"encryption key  {pub.encryption_key_id}  x25519:{pub.encryption_public.hex()}")
    print(f"secret file     {secret} (mode 0600; keep it off shared storage)")
    print(f"public file     {public}")
    return 0


def _generate_root(args: argparse.Namespace) -> int:
    root = RootSecrets.generate(now_ms=system_clock())
    secret, public = save_root(root, args.out)
    print(f"GS root key     {root.key_id}  ed25519:{root.public.public_key.hex()}")
    print(f"secret file     {secret} (mode 0600; keep it offline)")
    print(f"public file     {public} (pin it in every service)")
    return 0
