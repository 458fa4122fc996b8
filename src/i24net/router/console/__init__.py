"""The review desk: server-rendered pages for GS reviewers under ``/console/``.

Served by the router's review service next to the JSON API (``review_router``)
and built on the same :class:`~i24net.router.review.ReviewService`, so the
console and the API share the store, the claims and the four-eyes proposals.
No JavaScript: every action is an HTML form (POST) carrying the session's CSRF
token; filters are GET query parameters. Pages (docs/review.md):

* ``/console/signin`` (name + password or bearer token), ``/console/signout``;
* ``/console/queue``: holds, overdue first, then precedence, then age, with
  their deadline countdown; filters ``kind``, ``sender``, ``rule``, ``lang``;
* ``/console/case/{id}``: the decrypted request, the screen's words marked, the
  rules, the sender's record, the message's audit trail, and the decision forms
  (``decide``, ``confirm``, ``withdraw``);
* ``/console/report``: the transparency report (``i24net.report``) when installed.

Answers: 401 page without a session, 403 on a missing or wrong CSRF token or a
reviewer confirming their own proposal, 404 for an unknown message, 409 for a
hold already decided (here or on another instance). Every page is sent with a
strict Content-Security-Policy (no script at all), ``no-store`` and
``frame-ancestors 'none'``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CollectorRegistry, Counter

from i24net.audit import RawRecord
from i24net.errors import NotHeld, ReviewConflict, ReviewForbidden, ServiceError
from i24net.router.console.auth import LANGUAGES, Reviewers, Session, Sessions, Throttle
from i24net.router.console.highlight import highlight
from i24net.router.console.i18n import RTL, Catalogues, load_catalogues

if TYPE_CHECKING:
    from i24net.router.review import ReviewService, Verdict

log = logging.getLogger(__name__)

__all__ = ["COOKIE", "Console", "console_router"]

HERE = Path(__file__).parent
COOKIE = "i24_console"
MAX_FORM_FIELD = 4000
VERIFY_SLOTS = 2
"""Password checks run at once. An argon2id check costs ~170 ms of CPU over 4 lanes and
64 MiB, in the router's process: more at once would take the routing's CPU."""
MAX_SIGNINS_WAITING = 16
"""Sign-ins waiting for (or in) a password check; past it, 503 at once with no check: a
flood of sign-ins must not queue without bound (memory, and everyone's wait) behind
the checks."""
FLASHES = {
    "approved": "The message was approved and delivered.",
    "delivered": "The message was approved and delivered.",
    "rejected": "The refusal took effect; the sender is notified.",
    "expired": "The message had expired: it was closed and not delivered.",
    "proposed": "Proposal recorded: a second reviewer must confirm it.",
    "withdrawn": "The proposal was withdrawn.",
}
GROUND_LABELS = {
    "POLITICAL": "Article 3: political",
    "MILITARY": "Article 3: military",
    "RELIGIOUS": "Article 3: religious",
    "RACIAL": "Article 3: racial",
    "HUMAN_RIGHTS": "Article 2: human rights",
    "REFUGEE_PROTECTION": "Refugee policy",
    "INSUFFICIENT_DATA": "Insufficient data",
    "OTHER": "Other (say why)",
}
FIELD_LABELS = {
    "action": "Action",
    "action_requested": "Action requested",
    "actor": "Actor",
    "aliases": "Aliases",
    "arrest_warrant": "Arrest warrant",
    "asset_description": "Asset description",
    "at_ms": "Time",
    "attachments": "Attachments",
    "body": "Text",
    "case": "Case",
    "case_reference": "Case reference",
    "category": "Category",
    "cause_of_death": "Cause of death",
    "circumstances": "Circumstances",
    "committed_on": "Committed on",
    "countries_concerned": "Countries concerned",
    "countries_likely_visited": "Countries likely visited",
    "criteria": "Criteria",
    "data": "Data",
    "database": "Database",
    "date_of_birth": "Date of birth",
    "decided_at_ms": "Decided at",
    "description": "Description",
    "document_type": "Document type",
    "entity_name": "Entity name",
    "envelope_digest": "Envelope digest",
    "estimated_age": "Estimated age",
    "estimated_value": "Estimated value",
    "expiry_date": "Expiry date",
    "explanation": "Explanation",
    "extradition_assured": "Extradition assured",
    "facts": "Facts",
    "family_name": "Family name",
    "fields": "Fields",
    "forenames": "Forenames",
    "found_on": "Found on",
    "grounds": "Grounds",
    "hits": "Hits",
    "identity_documents": "Identity documents",
    "in_reply_to": "In reply to",
    "indicators": "Indicators",
    "information_sought": "Information sought",
    "is_minor": "Minor",
    "issued_by": "Issued by",
    "issued_on": "Issued on",
    "issuing_country": "Issuing country",
    "kind": "Kind",
    "languages": "Languages",
    "legal_basis": "Legal basis",
    "legal_provision": "Legal provision",
    "listed_on": "Listed on",
    "location": "Location",
    "maximum_penalty": "Maximum penalty",
    "measures": "Measures",
    "media_type": "Media type",
    "message_id": "Message id",
    "missing_since": "Missing since",
    "modus_operandi": "Modus operandi",
    "name_at_birth": "Name at birth",
    "narrative_summary": "Narrative summary",
    "national_reference": "National reference",
    "nationalities": "Nationalities",
    "number": "Number",
    "objects_and_devices": "Objects and devices",
    "offence_category": "Offence category",
    "offences": "Offences",
    "officer_in_charge": "Officer in charge",
    "outcome": "Outcome",
    "owner": "Owner",
    "place": "Place",
    "place_found": "Place found",
    "place_last_seen": "Place last seen",
    "place_of_birth": "Place of birth",
    "previous_hash": "Previous hash",
    "purpose": "Purpose",
    "query_id": "Query id",
    "reason": "Reason",
    "received_at_ms": "Received at",
    "recipients": "Recipients",
    "record_id": "Record id",
    "reference": "Reference",
    "refugee_status": "Refugee status",
    "refugee_status_granted_by": "Refugee status granted by",
    "related_offences": "Related offences",
    "remarks": "Remarks",
    "requesting_authority": "Requesting authority",
    "reviewer": "Reviewer",
    "sanctions_committee": "Sanctions committee",
    "sender": "Sender",
    "sentence_imposed": "Sentence imposed",
    "sequence": "Sequence",
    "sex": "Sex",
    "sha256": "SHA-256",
    "stations": "Stations",
    "status": "Status",
    "subject": "Subject",
    "subject_line": "Subject line",
    "summary": "Summary",
    "text": "Text",
    "threat_assessment": "Threat assessment",
    "threat_type": "Threat type",
    "title": "Title",
    "un_reference": "UN reference",
    "valid_until_ms": "Valid until",
    "verdict": "Verdict",
}
"""Labels of the request's fields (Avro field names of every kind) in the case view."""
TITLES = {
    401: "Sign-in required",
    403: "Not allowed",
    404: "Not found",
    409: "Already decided",
    422: "Check the form",
    429: "Too many attempts",
    503: "Unavailable",
}
FILTER_LABELS = {"kind": "Kind", "sender": "Sender", "rule": "Rule", "lang": "Language"}
FORM_PROBLEMS = {
    "other": "A refusal on other grounds must say why, in at least 20 characters.",
    "explanation": "A refusal needs an explanation for the sender.",
    "grounds": "Choose the grounds of the refusal.",
    "origin": "This form was sent from another site.",
    "control": "The explanation may hold only plain text and line breaks.",
}
CONFLICTS = {
    "busy": "Another reviewer is deciding this message, or it has a pending proposal.",
    "decided": "This message has already been decided.",
}
SIGNIN_PENDING = "A sign-in with this name from here is still being answered. Wait, then retry."
SIGNIN_BUSY = "Too many sign-ins are being checked. Retry in a few seconds."
UNITS = ("d", "h", "min", "Error")
REPORT_UNVERIFIED = "The audit chain failed verification: no report is made from it."
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class Page(Exception):
    """Stop handling and answer with the error page for ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Console:
    """State of the console on one instance: templates, catalogues, reviewers, sessions."""

    def __init__(
        self,
        svc: ReviewService,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        catalogues: Catalogues | None = None,
        audit_source: Callable[[], Awaitable[list[RawRecord]]] | None = None,
    ) -> None:
        rs = svc.settings.review
        self.svc = svc
        self.settings = rs
        self.reviewers = Reviewers.load(rs.reviewers_file)
        if not self.reviewers.entries and svc.tokens is None:
            log.warning(
                "review console: no reviewers_file and no tokens_file: nobody can sign in "
                "(i24net review reviewers add; docs/review.md)"
            )
        self.sessions = Sessions(svc.now, rs.session_ttl_ms)
        self.throttle = Throttle(rs.signin_delay_ms)
        self.verify_slots = VERIFY_SLOTS
        self._verify = asyncio.Semaphore(VERIFY_SLOTS)
        self.signins_waiting = 0
        self._answering: set[tuple[str, str]] = set()
        """(name, peer) of the sign-ins being checked or delayed: one at a time each."""
        self.signins = signin_counter(svc.app.registry)
        self.sleep = sleep
        self.audit_source = audit_source or self._read_audit
        self.catalogues = catalogues or load_catalogues()
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.css = (HERE / "static" / "console.css").read_bytes()

    # --- rendering ------------------------------------------------------------------

    def render(
        self,
        template: str,
        lang: str,
        code: int = 200,
        session: Session | None = None,
        **ctx: Any,
    ) -> Response:
        _ = self.catalogues.gettext(lang)
        html = self.env.get_template(template).render(
            _=_,
            lang=lang,
            dir="rtl" if lang in RTL else "ltr",
            languages=LANGUAGES,
            session=session,
            duration=lambda ms: _duration(_, ms),
            utc=_utc,
            filter_labels=FILTER_LABELS,
            **ctx,
        )
        return _secure(HTMLResponse(html, status_code=code))

    def error(self, status: int, message: str, lang: str, session: Session | None) -> Response:

        return self.render(
            "error.html",
            lang,
            status,
            session,
            title=TITLES.get(status, "Error"),
            message=message,
            status=status,
        )

    def lang_of(self, request: Request, session: Session | None) -> str:
        if session is not None:
            return session.language
        q = request.query_params.get("lang")
        return q if q in LANGUAGES else self.settings.console_language

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def require(self, request: Request) -> Session:
        s = self.session(request)
        if s is None:
            raise Page(401, "Your session has ended or you have not signed in.")
        return s

    async def form(self, request: Request, session: Session) -> Mapping[str, str]:
        """The posted form, after its origin and CSRF token are checked (403 otherwise)."""
        _same_origin(request)
        form = await request.form(max_files=0, max_fields=20)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not session.csrf_ok(fields.get("csrf")):
            raise Page(403, "The form's security token is missing or wrong. Reload and retry.")
        if any(len(v) > MAX_FORM_FIELD for v in fields.values()):
            raise Page(422, "A field is too long.")
        return fields

    # --- sign-in ----------------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        try:
            _same_origin(request)  # no session yet, so no CSRF token: a forged sign-in
        except Page as p:  # would sign the victim in as someone else
            return self.error(p.status, p.message, self.lang_of(request, None), None)
        form = await request.form(max_files=0, max_fields=10)
        name = str(form.get("name") or "").strip()[:200]
        password = str(form.get("password") or "")[:1000]
        lang = self.lang_of(request, None)
        # One answer at a time per name and peer: the delay of a failure only slows
        # guessing if the next guess waits for it (20 guesses sent at once would all be
        # checked at once). Per peer, so that a guesser elsewhere does not lock the
        # reviewer out of her own name.
        key = (name, request.client.host if request.client else "")
        if key in self._answering:
            self.signins.labels("refused").inc()
            return self._busy(lang, 429, SIGNIN_PENDING, max(1, self.throttle.delay_s(name)))
        if self.signins_waiting >= MAX_SIGNINS_WAITING:
            self.signins.labels("refused").inc()
            log.warning(
                "console sign-in refused: %d sign-ins wait for a check", MAX_SIGNINS_WAITING
            )
            return self._busy(lang, 503, SIGNIN_BUSY, 5)
        self._answering.add(key)
        try:
            return await self._sign_in(name, password, lang, request.cookies.get(COOKIE))
        finally:
            self._answering.discard(key)

    def _busy(self, lang: str, status: int, message: str, retry_s: int) -> Response:
        resp = self.error(status, message, lang, None)
        resp.headers["Retry-After"] = str(retry_s)
        return resp

    async def _sign_in(self, name: str, password: str, lang: str, previous: str | None) -> Response:
        who: str | None = None
        language: str | None = None
        if name and password:
            t = self.svc.token_identity(password)
            if t is not None and t == name:
                who = t
            else:
                self.signins_waiting += 1
                try:
                    async with self._verify:
                        r = await asyncio.to_thread(self.reviewers.check, name, password)
                finally:
                    self.signins_waiting -= 1
                if r is not None:
                    who, language = r.identity, r.language
        if who is None:
            self.signins.labels("failed").inc()
            delay_ms = self.throttle.failed(name)
            log.warning(
                "console sign-in failed for %r (failure %d)", name, self.throttle.failures[name]
            )
            await self.sleep(delay_ms / 1000)
            return self.render(
                "signin.html", lang, 401, None, failed=True, name=name, delay_s=delay_ms / 1000
            )
        self.throttle.succeeded(name)
        self.signins.labels("ok").inc()
        self.sessions.end(previous)  # the browser's earlier session, if any, ends here
        sid, _s = self.sessions.start(who, language or lang)
        log.info("console: %s signed in", who)
        resp = RedirectResponse("/console/queue", status_code=303)
        resp.set_cookie(
            COOKIE,
            sid,
            httponly=True,
            samesite="strict",
            path="/console",
            secure=self.settings.cookie_secure,
        )
        return _secure(resp)

    # --- pages ------------------------------------------------------------------------

    def queue(self, request: Request, s: Session) -> Response:
        q = request.query_params
        filters = {k: (q.get(k) or "").strip()[:64] for k in ("kind", "sender", "rule", "lang")}
        items = self.svc.held_list()
        every = list(items)
        if filters["lang"]:
            items = [
                i
                for i in items
                if self.svc.language(self.svc.held[i["message_id"]]) == filters["lang"]
            ]
        for key in ("kind", "sender", "rule"):
            if filters[key]:
                items = [i for i in items if i[key] == filters[key]]
        now = self.svc.now()
        flash = q.get("done")
        return self.render(
            "queue.html",
            s.language,
            200,
            s,
            items=items,
            now=now,
            filters=filters,
            choices={
                "kind": sorted({i["kind"] for i in every if i["kind"]}),
                "sender": sorted({i["sender"] for i in every if i["sender"]}),
                "rule": sorted({i["rule"] for i in every if i["rule"]}),
                "lang": sorted(
                    {
                        lang
                        for i in every
                        if (lang := self.svc.language(self.svc.held[i["message_id"]]))
                    }
                ),
            },
            backlog=self.svc.backlog(),
            flash=FLASHES.get(flash or ""),
        )

    def case(self, request: Request, s: Session, message_id: str) -> Response:
        try:
            shown = self.svc.show(message_id)
        except NotHeld as exc:
            raise Page(404, "There is no held message with this id.") from exc
        except ReviewConflict as exc:
            raise Page(409, "This message has already been decided.") from exc
        words = [w for hit in shown.get("hits") or () for w in hit["words"]]
        sender = shown.get("sender") or ""
        flash = request.query_params.get("done")
        return self.render(
            "case.html",
            s.language,
            200,
            s,
            m=shown,
            words=words,
            hl=lambda text: highlight(text, words),
            labels=FIELD_LABELS,
            record=self.svc.senders.get(sender),
            trail=self.svc.trails.get(message_id, []),
            grounds=GROUND_LABELS,
            now=self.svc.now(),
            flash=FLASHES.get(flash or ""),
            problem=request.query_params.get("problem"),
        )

    async def decide(self, request: Request, s: Session, message_id: str) -> Response:
        f = await self.form(request, s)
        verdict: Verdict
        if f.get("verdict") == "approve":
            verdict = "approve"
        elif f.get("verdict") == "reject":
            verdict = "reject"
        else:
            raise Page(422, "Choose approve or refuse.")
        grounds = f.get("grounds") or None
        explanation = (f.get("explanation") or "").strip()
        try:
            out = await self.svc.decide(message_id, s.reviewer, verdict, grounds, explanation)
        except ValueError as exc:
            raise Page(422, _form_problem(str(exc))) from exc
        return self._after(message_id, out["status"])

    async def confirm(self, request: Request, s: Session, message_id: str) -> Response:
        f = await self.form(request, s)
        out = await self.svc.confirm(message_id, s.reviewer, f.get("proposal_id") or "")
        return self._after(message_id, out["status"])

    async def withdraw(self, request: Request, s: Session, message_id: str) -> Response:
        f = await self.form(request, s)
        out = await self.svc.withdraw(message_id, s.reviewer, f.get("proposal_id") or "")
        return self._after(message_id, out["status"])

    def _after(self, message_id: str, status: str) -> Response:
        if message_id in self.svc.held:
            to = f"/console/case/{message_id}?{urlencode({'done': status})}"
        else:
            to = f"/console/queue?{urlencode({'done': status})}"
        return _secure(RedirectResponse(to, status_code=303))

    async def report(self, request: Request, s: Session) -> Response:
        """The form (no dates given), or the transparency report of the period as its own
        page: the report's HTML (``i24net.report.render_html``), built from the whole
        audit topic, verified first; its inline style and chart images are allowed by
        that page's policy, scripts still are not."""
        from i24net.errors import UnverifiedAuditError
        from i24net.report import Period, build_report, render_html

        q = request.query_params
        today = datetime.fromtimestamp(self.svc.now() / 1000, UTC).date()
        first, last = q.get("from"), q.get("to")
        if not first or not last:
            return self.render(
                "report.html",
                s.language,
                200,
                s,
                first=today.replace(month=1, day=1).isoformat(),
                last=today.isoformat(),
            )
        try:
            period = Period(date.fromisoformat(first[:10]), date.fromisoformat(last[:10]))
        except ValueError as exc:
            raise Page(422, "Dates are YYYY-MM-DD, the first not after the last.") from exc
        records = await self.audit_source()
        try:
            built = build_report(records, self.svc.app.store, period, self.svc.now())
        except UnverifiedAuditError as exc:
            log.error("console report refused: %s", exc)
            raise Page(503, REPORT_UNVERIFIED) from exc
        resp = HTMLResponse(render_html(built))
        _secure(resp)
        resp.headers["Content-Security-Policy"] = REPORT_CSP
        return resp

    async def _read_audit(self) -> list[RawRecord]:
        from i24net.report import read_audit

        return await read_audit(self.svc.app.conn, self.svc.settings.topics.audit)


def signin_counter(registry: CollectorRegistry) -> Counter:
    """``i24net_review_console_signins_total{outcome}`` (docs/observability.md): a rise of
    ``failed`` is someone guessing passwords (each failure is also slowed and logged)."""
    c = Counter(
        "i24net_review_console_signins_total",
        "Review console sign-in attempts, by outcome (ok, failed; refused: answered 429 or"
        " 503 with no password check, another from the same name and peer still being"
        " answered, or too many checks waiting)",
        ["outcome"],
        registry=registry,
    )
    for outcome in ("ok", "failed", "refused"):
        c.labels(outcome)
    return c


def _same_origin(request: Request) -> None:
    """A browser's POST names the page's origin: one from another site is refused."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser, or one that sends none: the CSRF token decides
        return
    # behind a reverse proxy the browser's host may only be in X-Forwarded-Host; trusting
    # it is safe here: a forging site cannot set headers on its victim's request
    hosts = {request.headers.get("host", "")}
    hosts.update(h.strip() for h in request.headers.get("x-forwarded-host", "").split(","))
    if urlsplit(origin).netloc not in hosts - {""}:
        raise Page(403, FORM_PROBLEMS["origin"])


def _form_problem(detail: str) -> str:
    if "control character" in detail:
        return FORM_PROBLEMS["control"]
    if "OTHER" in detail:
        return FORM_PROBLEMS["other"]
    if "explanation" in detail:
        return FORM_PROBLEMS["explanation"]
    return FORM_PROBLEMS["grounds"]


def ui_strings() -> set[str]:
    """Every English text the console can show (each must be in every catalogue)."""
    import re

    found: set[str] = set()
    lit = r'"((?:[^"\\]|\\.)+)"'
    for t in (HERE / "templates").glob("*.html"):
        found.update(re.findall(r"_\(" + lit + r"\)", t.read_text(encoding="utf-8")))
    src = Path(__file__).read_text(encoding="utf-8")
    found.update(re.findall(r"(?:Page\(|error\()\s*\d+,\s*" + lit, src))
    tables = (FLASHES, GROUND_LABELS, FIELD_LABELS, TITLES, FILTER_LABELS, FORM_PROBLEMS, CONFLICTS)
    for table in tables:
        found.update(table.values())
    found.update(UNITS)
    found.update((REPORT_UNVERIFIED, SIGNIN_PENDING, SIGNIN_BUSY))
    return found


def _duration(_: Callable[[str], str], ms: int) -> str:
    minutes = max(0, ms) // 60_000
    d, rest = divmod(minutes, 24 * 60)
    h, m = divmod(rest, 60)
    if d:
        return f"{d} {_('d')} {h} {_('h')}"
    if h:
        return f"{h} {_('h')} {m:02d} {_('min')}"
    return f"{m} {_('min')}"


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _secure(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["X-Frame-Options"] = "DENY"  # frame-ancestors for browsers before CSP 2
    # same-origin, not no-referrer: under no-referrer browsers send "Origin: null" with
    # the console's own forms, and the origin check could not tell them from a forgery
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def console_router(svc: ReviewService, console: Console | None = None) -> APIRouter:
    """The console's routes (see the module docstring)."""
    c = console or Console(svc)
    r = APIRouter(prefix="/console", include_in_schema=False)

    async def guarded(
        request: Request, action: Callable[[Session], Awaitable[Response] | Response]
    ) -> Response:
        s: Session | None = None
        try:
            s = c.require(request)
            out = action(s)
            return await out if isinstance(out, Awaitable) else out
        except Page as p:
            return c.error(p.status, p.message, c.lang_of(request, s), s)
        except NotHeld:
            return c.error(404, "There is no held message with this id.", c.lang_of(request, s), s)
        except ReviewConflict as exc:
            busy = "being decided" in str(exc) or "proposal" in str(exc)
            msg = CONFLICTS["busy" if busy else "decided"]
            return c.error(409, msg, c.lang_of(request, s), s)
        except ReviewForbidden:
            return c.error(
                403,
                "Four-eyes: a proposal must be confirmed by a different reviewer.",
                c.lang_of(request, s),
                s,
            )
        except ServiceError:
            log.exception("console action failed")
            return c.error(
                503,
                "The review service could not do this now. Try again.",
                c.lang_of(request, s),
                s,
            )

    @r.get("/")
    async def home() -> Response:
        return _secure(RedirectResponse("/console/queue", status_code=303))

    @r.get("/static/console.css")
    async def css() -> Response:
        return Response(c.css, media_type="text/css", headers={"Cache-Control": "max-age=300"})

    @r.get("/signin")
    async def signin_page(request: Request) -> Response:
        return c.render("signin.html", c.lang_of(request, None), 200, None, failed=False, name="")

    @r.post("/signin")
    async def signin(request: Request) -> Response:
        return await c.sign_in(request)

    @r.post("/signout")
    async def signout(request: Request) -> Response:
        async def act(s: Session) -> Response:
            await c.form(request, s)
            c.sessions.end(request.cookies.get(COOKIE))
            resp = RedirectResponse(f"/console/signin?lang={s.language}", status_code=303)
            resp.delete_cookie(COOKIE, path="/console")
            return _secure(resp)

        return await guarded(request, act)

    @r.post("/language")
    async def language(request: Request) -> Response:
        async def act(s: Session) -> Response:
            f = await c.form(request, s)
            if f.get("lang") in LANGUAGES:
                s.language = f["lang"]
            return _secure(RedirectResponse("/console/queue", status_code=303))

        return await guarded(request, act)

    @r.get("/queue")
    async def queue(request: Request) -> Response:
        return await guarded(request, lambda s: c.queue(request, s))

    @r.get("/report")
    async def report(request: Request) -> Response:
        return await guarded(request, lambda s: c.report(request, s))

    @r.get("/case/{message_id}")
    async def case(request: Request, message_id: str) -> Response:
        return await guarded(request, lambda s: c.case(request, s, message_id))

    @r.post("/case/{message_id}/decide")
    async def decide(request: Request, message_id: str) -> Response:
        return await guarded(request, lambda s: c.decide(request, s, message_id))

    @r.post("/case/{message_id}/confirm")
    async def confirm(request: Request, message_id: str) -> Response:
        return await guarded(request, lambda s: c.confirm(request, s, message_id))

    @r.post("/case/{message_id}/withdraw")
    async def withdraw(request: Request, message_id: str) -> Response:
        return await guarded(request, lambda s: c.withdraw(request, s, message_id))

    return r
