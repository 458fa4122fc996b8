"""The bureau gateway daemon: durable intake, sealing, outbox drain, verified inbox, receipts.

``docs/gateway.md`` describes the API, the settings file and the status
lifecycle. The daemon is :class:`Gateway`; its settings :class:`Settings`
(``load_settings(path)``).
"""

from __future__ import annotations

from i24net.gateway.app import Gateway, load_directory
from i24net.gateway.settings import Settings, load_settings, parse_settings

__all__ = ["Gateway", "Settings", "load_directory", "load_settings", "parse_settings"]
