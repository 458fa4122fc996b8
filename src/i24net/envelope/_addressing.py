"""Who a signed header addresses: the one resolution of STATIONS / ALL / REGION and exclusions.

Why one function: the router decides whom to deliver to, and each recipient
gateway checks that the signed header addressed it (docs/envelope.md §6
step 9a). If the two resolved ALL or a region differently, a recipient
would refuse what the router legitimately delivered (or accept what the
sender never addressed to it), so both are to call :func:`addressed` (the
router's ``Pipeline.expand`` resolves exactly this way; issue 17 asks it
to call this function instead of its own copy).

The resolution is only the sender's intent read against the directory:
ALL is every station in the directory but the sender and the GS; REGION
every station of that regional group but the sender; STATIONS the listed
codes as written (a code the directory does not know stays in the list, the
router reports it as undeliverable); then the header's ``excluded`` codes
are removed. Station status and keys (suspended, revoked, no usable key)
are the router's delivery concern, not addressing, and are not applied here.

The recipient resolves with the directory it holds when it opens the
delivery, the router with its own at decision time. A station moved to
another region in between is refused (``not_addressed``) at its gateway:
a region move is a directory change both sides see within seconds, and
refusing is the safe side (the sender addressed that region, not the station).
"""

from __future__ import annotations

from i24net.directory import Directory
from i24net.envelope._header import Header, RecipientsMode
from i24net.errors import Reason, VerificationError
from i24net.stations import GS


def addressed(header: Header, directory: Directory) -> list[str]:
    """The stations ``header`` addresses, in the router's order, exclusions removed."""
    r = header.recipients
    if r.mode is RecipientsMode.STATIONS:
        wanted = list(r.stations)
    elif r.mode is RecipientsMode.ALL:
        wanted = [s.station for s in directory if s.station not in (header.sender, GS)]
    else:
        wanted = [
            s.station for s in directory if s.region == r.region and s.station != header.sender
        ]
    excluded = set(header.excluded)
    return [st for st in wanted if st not in excluded]


def check_addressed(header: Header, station: str, directory: Directory) -> None:
    """Raise ``VerificationError(NOT_ADDRESSED)`` unless ``header`` addresses ``station``."""
    if station in header.excluded:
        raise VerificationError(Reason.NOT_ADDRESSED, f"{station} is excluded by the signed header")
    if station not in addressed(header, directory):
        r = header.recipients
        what = r.region if r.mode is RecipientsMode.REGION else r.mode.value
        raise VerificationError(
            Reason.NOT_ADDRESSED, f"{station} is not among the recipients ({what})"
        )
