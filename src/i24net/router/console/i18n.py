"""The console's text in the four working languages, from gettext catalogues.

``locale/<lang>/LC_MESSAGES/console.po`` is read with Babel at start-up (no
compile step: the ``.po`` files ship in the wheel). Templates call ``_("...")``
with the English text as the message id; a missing translation falls back to
English, and ``tests/unit/test_review_console.py`` fails if any string used by a
template or the console code is missing from a catalogue. Arabic pages are
rendered right-to-left (``dir="rtl"``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from babel.messages.pofile import read_po

from i24net.errors import ConfigError

__all__ = ["LOCALE_DIR", "RTL", "Catalogues", "load_catalogues"]

LOCALE_DIR = Path(__file__).with_name("locale")
RTL = frozenset({"ar"})


class Catalogues:
    """language -> message id -> translated text."""

    def __init__(self, tables: dict[str, dict[str, str]]) -> None:
        self.tables = tables

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self.tables))

    def gettext(self, language: str) -> Callable[[str], str]:
        table = self.tables.get(language, {})

        def _(message: str) -> str:
            return table.get(message) or message

        return _


def load_catalogues(directory: Path = LOCALE_DIR) -> Catalogues:
    tables: dict[str, dict[str, str]] = {}
    for po in sorted(directory.glob("*/LC_MESSAGES/console.po")):
        lang = po.parent.parent.name
        try:
            with po.open("rb") as f:
                catalog = read_po(f, locale=lang)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"console catalogue {po}: {exc}") from exc
        tables[lang] = {
            str(m.id): str(m.string)
            for m in catalog
            if m.id and isinstance(m.id, str) and isinstance(m.string, str) and m.string
        }
    if "en" not in tables:
        raise ConfigError(f"no English console catalogue under {directory}")
    return Catalogues(tables)
