"""Shared unit-test fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from i24net.gateway.auth import create_integrator
from i24net.gateway.settings import Settings, parse_settings
from i24net.keys import save_root, save_station
from i24net.schemas import SchemaStore

GatewaySettingsFactory = Callable[..., Settings]

EVERY_SCOPE = ("send", "inbox:read", "status:read", "operator")


def bearer(
    settings: Settings, name: str = "tester", scopes: Any = EVERY_SCOPE, **kw: Any
) -> dict[str, str]:
    """Add integrator ``name`` to the gateway's store; the ``Authorization`` header it sends.

    Tests are not rate tests unless they say so: a generous rate unless given."""
    kw.setdefault("rate_per_s", 10_000.0)
    kw.setdefault("burst", 10_000)
    token = create_integrator(settings.integrators_path, name, scopes, **kw)
    assert token is not None
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def authorize() -> Callable[..., dict[str, str]]:
    """``authorize(settings, name="tester", scopes=EVERY_SCOPE, **create_integrator kw)``:
    the headers of a new integrator of that gateway (see :func:`bearer`)."""
    return bearer


@pytest.fixture
def gateway_settings(tmp_path: Path) -> GatewaySettingsFactory:
    """``gateway_settings(world, store, **sections)``: FR's gateway settings under
    ``tmp_path``, with the keys and the signed directory entries of ``world`` (secrets,
    Directory, RootSecrets) written there, no reachable broker and a free API port. Each
    keyword is a settings section merged over the defaults (``api={"port": 0, ...}``)."""

    def make(world: Any, store: SchemaStore, **sections: Any) -> Settings:
        secrets, directory, root = world
        keys, entries = tmp_path / "keys", tmp_path / "entries"
        save_root(root, keys)
        for s in secrets.values():
            save_station(s, keys)
        entries.mkdir(exist_ok=True)
        for code, e in directory.sign(root, store).items():
            (entries / f"{code}.entry").write_bytes(e)
        raw: dict[str, Any] = {
            "station": "FR",
            "data_dir": str(tmp_path / "gw"),
            "keys": {
                "secret": str(keys / "FR.secret.json"),
                "root_public": str(keys / "gs-root.public.json"),
            },
            "directory": {"entries": str(entries)},
            "kafka": {"bootstrap": "127.0.0.1:9"},
            "api": {"port": 0},
        }
        for name, value in sections.items():
            if isinstance(value, dict) and isinstance(raw.get(name), dict):
                raw[name] = {**raw[name], **value}
            else:
                raw[name] = value
        return parse_settings(raw)

    return make
