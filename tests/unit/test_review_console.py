"""The review desk's web console without a broker: docs/review.md.

The console runs on the real ``ReviewService`` over the stand-in ``RouterApp``
of ``test_router_review.py`` (real pipeline, keys and policy; ``execute`` only
records what it would commit) and its in-memory ``i24.review`` log, through
the real FastAPI routes over ASGI, as a browser would use them: a cookie jar,
form posts, 303 redirects. Sign-in delays are recorded, not slept.

Checked: sign-in with a password (argon2, reviewers file 0600) or a token;
failed sign-ins answered 401 after a delay that doubles; the cookie's
attributes; 401 pages without a session, 403 without the right CSRF token,
404 for an unknown message, 409 for a decided one; the queue's filters and
order; the case view with the screen's words marked and the sender's text
escaped; four-eyes through the forms (the proposer's confirmation is 403, a
second reviewer's takes effect); language per reviewer and switch, Arabic
right-to-left, and every console string in every catalogue.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import stat
import sys
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from i24net.audit import RawRecord
from i24net.errors import ConfigError
from i24net.router.console import COOKIE, Console, ui_strings
from i24net.router.console.auth import Reviewers, add_reviewer
from i24net.router.console.highlight import highlight
from i24net.router.console.i18n import load_catalogues
from i24net.router.review import review_router
from i24net.router.testing import red_notice

_spec = importlib.util.spec_from_file_location(
    "review_world", Path(__file__).with_name("test_router_review.py")
)
assert _spec and _spec.loader
rw = importlib.util.module_from_spec(_spec)
sys.modules["review_world"] = rw
_spec.loader.exec_module(rw)

net = rw.net  # the module-scoped key network fixture
ALICE_PW = "correct horse battery alice"
BOB_PW = "correct horse battery bob!"


@pytest.fixture(scope="module")
def reviewers_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made once: argon2 hashing is slow on purpose."""
    f = tmp_path_factory.mktemp("reviewers") / "reviewers.toml"
    add_reviewer(f, "reviewer.alice", ALICE_PW, None)
    add_reviewer(f, "reviewer.bob", BOB_PW, "fr")
    return f


class Desk:
    """A world, its console and one browser per reviewer."""

    def __init__(self, world: Any, console: Console) -> None:
        self.world = world
        self.console = console
        self.slept: list[float] = []
        http = FastAPI()
        http.include_router(review_router(world.svc, console))  # API and console, as served
        self.http = http

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.http), base_url="http://review.test"
        )


async def _sleep_recorder(desk_slept: list[float], s: float) -> None:
    desk_slept.append(s)


def make_desk(net: Any, tmp_path: Path, reviewers_file: Path, **review: Any) -> Desk:
    s = rw.settings(tmp_path, reviewers_file=reviewers_file, **review)
    world = rw.make_world(net, s)
    slept: list[float] = []

    async def sleep(x: float) -> None:
        slept.append(x)

    async def audit() -> list[RawRecord]:
        return list(world.audit)

    desk = Desk(world, Console(world.svc, sleep=sleep, audit_source=audit))
    desk.slept = slept
    return desk


@pytest.fixture
def desk(net: Any, tmp_path: Path, reviewers_file: Path) -> Desk:
    return make_desk(net, tmp_path, reviewers_file, four_eyes_refusals=True)


@pytest.fixture
async def alice(desk: Desk) -> AsyncIterator[httpx.AsyncClient]:
    async with desk.browser() as b:
        await sign_in(b, "reviewer.alice", ALICE_PW)
        yield b


@pytest.fixture
async def bob(desk: Desk) -> AsyncIterator[httpx.AsyncClient]:
    async with desk.browser() as b:
        await sign_in(b, "reviewer.bob", BOB_PW)
        yield b


async def sign_in(b: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    r = await b.post("/console/signin", data={"name": name, "password": password})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console/queue"
    return r


def csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def proposal_id(html: str) -> str:
    m = re.search(r'name="proposal_id" value="([^"]+)"', html)
    assert m, "no proposal on the page"
    return m.group(1)


# --- sign-in ---------------------------------------------------------------------------


async def test_a_reviewer_signs_in_with_a_password_and_gets_a_strict_cookie(desk: Desk) -> None:
    async with desk.browser() as b:
        r = await sign_in(b, "reviewer.alice", ALICE_PW)
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        for attr in ("HttpOnly", "SameSite=strict", "Path=/console"):
            assert attr.lower() in cookie.lower(), cookie
        assert "secure" not in cookie.lower()  # plain HTTP in this test: [review] cookie_secure
        page = await b.get("/console/queue")
        assert page.status_code == 200 and "reviewer.alice" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"


async def test_no_console_page_can_be_framed_or_cached(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    """Clickjacking: CSP ``frame-ancestors`` is ignored by browsers that predate it, which
    honour ``X-Frame-Options`` only. Decrypted requests are never stored by a cache."""
    mid = desk.world.hold()
    async with desk.browser() as anonymous:
        pages = [
            await alice.get("/console/queue"),
            await alice.get(f"/console/case/{mid}"),
            await alice.get("/console/case/NOPE"),
            await alice.get("/console/report"),
            await anonymous.get("/console/signin"),
            await anonymous.get("/console/queue"),
        ]
    for page in pages:
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"], page.url
        assert page.headers["x-frame-options"] == "DENY", page.url
        assert page.headers["cache-control"] == "no-store", page.url


async def test_a_sign_in_ends_the_session_the_browser_had(desk: Desk) -> None:
    """Signing in again (another reviewer at a shared workstation) rotates the session id
    and ends the previous one on the server: the old cookie value is no session any more."""
    async with desk.browser() as b:
        await sign_in(b, "reviewer.alice", ALICE_PW)
        old = b.cookies[COOKIE]
        await sign_in(b, "reviewer.bob", BOB_PW)
        assert b.cookies[COOKIE] != old
        assert desk.console.sessions.get(old) is None
    async with desk.browser() as thief:
        thief.cookies.set(COOKIE, old, domain="review.test", path="/console")
        assert (await thief.get("/console/queue")).status_code == 401


async def test_markup_in_the_queue_filters_is_shown_as_text(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    desk.world.hold()
    evil = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    r = await alice.get("/console/queue", params={"sender": evil, "kind": evil, "lang": evil})
    assert r.status_code == 200
    assert "<script>" not in r.text and "<img src=x" not in r.text
    assert 'id="empty"' in r.text  # filtered to nothing, and not reflected as markup


async def test_behind_tls_the_cookie_is_secure(
    net: Any, tmp_path: Path, reviewers_file: Path
) -> None:
    d = make_desk(net, tmp_path, reviewers_file, cookie_secure=True)
    async with d.browser() as b:
        r = await b.post("/console/signin", data={"name": "reviewer.alice", "password": ALICE_PW})
        assert "; secure" in r.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("reviewer.alice", "wrong password entirely"),
        ("reviewer.alice", BOB_PW),  # another reviewer's password
        ("reviewer.nobody", ALICE_PW),
        ("reviewer.alice", ""),
    ],
)
async def test_a_failed_sign_in_is_401_slowed_and_gives_no_session(
    desk: Desk, name: str, password: str
) -> None:
    async with desk.browser() as b:
        r = await b.post("/console/signin", data={"name": name, "password": password})
        assert r.status_code == 401 and "set-cookie" not in r.headers
        assert 'id="signin-failed"' in r.text
        assert password not in r.text or not password
        assert desk.slept == [1.0]
        assert (await b.get("/console/queue")).status_code == 401


async def test_each_failure_of_a_name_doubles_the_delay_and_success_resets_it(
    desk: Desk,
) -> None:
    async with desk.browser() as b:
        for _ in range(4):
            await b.post("/console/signin", data={"name": "reviewer.alice", "password": "x"})
        assert desk.slept == [1.0, 2.0, 4.0, 8.0]
        await sign_in(b, "reviewer.alice", ALICE_PW)
        await b.post("/console/signin", data={"name": "reviewer.alice", "password": "x"})
        assert desk.slept[-1] == 1.0
        assert desk.console.throttle.total_failures == 5
    reg = desk.world.app.registry
    metric = "i24net_review_console_signins_total"
    assert reg.get_sample_value(metric, {"outcome": "failed"}) == 5
    assert reg.get_sample_value(metric, {"outcome": "ok"}) == 1


async def _until(check: Any, what: str, seconds: float = 10.0) -> None:
    """Wait for a state, with a deadline (no sleeping in the hope of it)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def _browser_from(desk: Desk, host: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=desk.http, client=(host, 40000)),
        base_url="http://review.test",
    )


async def test_parallel_guesses_at_one_name_are_not_verified_in_parallel(
    desk: Desk,
) -> None:
    """The delay must slow guessing: without a bound, 20 guesses sent at once were all
    verified at once (and all answered after the same delay), so the doubling slowed
    nothing but each answer. While one guess of a name from a peer is being answered, the
    next from the same peer is 429 at once, with no argon2 verification; the reviewer
    herself, from her own address, still signs in (no lock-out by a guesser)."""
    gate = asyncio.Event()
    verified: list[str] = []
    check = desk.console.reviewers.check

    def counting(name: str, password: str) -> Any:
        verified.append(name)
        return check(name, password)

    async def held(s: float) -> None:
        desk.slept.append(s)
        await gate.wait()

    desk.console.reviewers.check = counting  # type: ignore[method-assign]
    desk.console.sleep = held
    guess = {"name": "reviewer.alice", "password": "guess-0000"}
    async with _browser_from(desk, "192.0.2.66") as attacker:
        first = asyncio.create_task(attacker.post("/console/signin", data=guess))
        await _until(lambda: desk.slept, "the first guess to be delayed")
        try:  # unbounded, every guess is verified and then held by the gate
            rs = await asyncio.wait_for(
                asyncio.gather(*(attacker.post("/console/signin", data=guess) for _ in range(20))),
                30,
            )
        except TimeoutError:
            gate.set()
            await first
            raise AssertionError(f"{len(verified)} parallel guesses were verified") from None
        assert {r.status_code for r in rs} == {429}
        assert all(int(r.headers["retry-after"]) >= 1 for r in rs)
        assert verified == ["reviewer.alice"] and desk.slept == [1.0]
        async with _browser_from(desk, "198.51.100.7") as alice:
            await sign_in(alice, "reviewer.alice", ALICE_PW)
        gate.set()
        assert (await first).status_code == 401
        r = await attacker.post("/console/signin", data=guess)  # answered: the next may come
        assert r.status_code == 401


async def test_sign_ins_waiting_for_a_password_check_are_bounded(desk: Desk) -> None:
    """argon2 costs ~170 ms of CPU and 64 MiB per check, in the router's process: a flood
    of sign-ins (other names, other peers) must not queue without bound behind the
    checks. Past the bound the answer is 503 at once, with no check made."""
    from i24net.router.console import MAX_SIGNINS_WAITING

    release = threading.Event()
    started: list[str] = []

    def blocked(name: str, password: str) -> Any:
        started.append(name)
        release.wait(30)
        return None

    desk.console.reviewers.check = blocked  # type: ignore[method-assign]
    n = MAX_SIGNINS_WAITING
    async with desk.browser() as b:
        tasks = [
            asyncio.create_task(
                b.post("/console/signin", data={"name": f"guess{i}", "password": "x" * 12})
            )
            for i in range(n)
        ]
        try:
            await _until(lambda: desk.console.signins_waiting == n, "the checks to queue")
            r = await asyncio.wait_for(  # unbounded, it waits behind the blocked checks
                b.post("/console/signin", data={"name": "one.more", "password": "x" * 12}), 10
            )
            assert r.status_code == 503 and "one.more" not in started
            assert r.headers["retry-after"] == "5"
            assert len(started) <= desk.console.verify_slots
        finally:
            release.set()
        assert {t.status_code for t in await asyncio.gather(*tasks)} == {401}
    assert desk.console.signins_waiting == 0


async def test_a_reviewer_may_sign_in_with_their_bearer_token(
    net: Any, tmp_path: Path, reviewers_file: Path
) -> None:
    s = rw.settings(tmp_path, tokens={rw.TOKEN: "reviewer.token"}, reviewers_file=reviewers_file)
    world = rw.make_world(net, s)

    async def no_sleep(x: float) -> None:
        pass

    d = Desk(world, Console(world.svc, sleep=no_sleep))
    async with d.browser() as b:
        await sign_in(b, "reviewer.token", rw.TOKEN)
        assert "reviewer.token" in (await b.get("/console/queue")).text
    async with d.browser() as b:  # the token names its reviewer: not another name
        r = await b.post("/console/signin", data={"name": "reviewer.alice", "password": rw.TOKEN})
        assert r.status_code == 401


async def test_sign_out_ends_the_session_on_the_server(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    sid = alice.cookies[COOKIE]
    page = await alice.get("/console/queue")
    r = await alice.post("/console/signout", data={"csrf": csrf(page.text)})
    assert r.status_code == 303
    async with desk.browser() as replay:  # the old cookie, replayed, is no session
        replay.headers["Cookie"] = f"{COOKIE}={sid}"
        r = await replay.get("/console/queue")
        assert r.status_code == 401
        # the control: the same replay with a live session's cookie is let in
        await sign_in(alice, "reviewer.alice", ALICE_PW)
        replay.headers["Cookie"] = f"{COOKIE}={alice.cookies[COOKIE]}"
        assert (await replay.get("/console/queue")).status_code == 200


async def test_a_session_expires(desk: Desk, alice: httpx.AsyncClient) -> None:
    assert (await alice.get("/console/queue")).status_code == 200
    desk.world.clock.now += desk.world.svc.settings.review.session_ttl_ms
    r = await alice.get("/console/queue")
    assert r.status_code == 401 and 'data-status="401"' in r.text


def test_the_reviewers_file_holds_argon2_hashes_mode_0600(tmp_path: Path) -> None:
    reviewers_file = tmp_path / "reviewers.toml"
    add_reviewer(reviewers_file, "reviewer.alice", ALICE_PW, None)
    add_reviewer(reviewers_file, "reviewer.bob", BOB_PW, "fr")
    text = reviewers_file.read_text()
    assert ALICE_PW not in text and "$argon2id$" in text
    assert stat.S_IMODE(reviewers_file.stat().st_mode) == 0o600
    r = Reviewers.load(reviewers_file)
    assert r.check("reviewer.alice", ALICE_PW) is not None
    assert r.check("reviewer.alice", BOB_PW) is None
    assert r.entries["reviewer.bob"].language == "fr"
    os.chmod(reviewers_file, 0o644)
    with pytest.raises(ConfigError, match="0600"):
        Reviewers.load(reviewers_file)


# --- 401 / 403 / 404 / 409 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/console/queue"),
        ("GET", "/console/case/{id}"),
        ("GET", "/console/report"),
        ("POST", "/console/case/{id}/decide"),
        ("POST", "/console/case/{id}/confirm"),
        ("POST", "/console/signout"),
    ],
)
async def test_without_a_session_every_page_is_a_401_page(
    desk: Desk, method: str, path: str
) -> None:
    mid = desk.world.hold()
    async with desk.browser() as b:
        r = await b.request(
            method, path.format(id=mid), data={"verdict": "approve"} if method == "POST" else None
        )
    assert r.status_code == 401 and 'href="/console/signin' in r.text
    assert desk.world.app.executed == [] and desk.world.log.records == []


async def test_a_forged_sign_out_is_403_and_the_session_lives_on(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    """Sign-out is a form too: another site cannot end a reviewer's session mid-case."""
    for data in ({}, {"csrf": "forged"}):
        r = await alice.post("/console/signout", data=data)
        assert r.status_code == 403
        assert (await alice.get("/console/queue")).status_code == 200
    r = await alice.post(
        "/console/signout",
        data={"csrf": csrf((await alice.get("/console/queue")).text)},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and (await alice.get("/console/queue")).status_code == 200


@pytest.mark.parametrize("token", [None, "", "forged-token"])
async def test_a_decision_without_the_sessions_csrf_token_is_403(
    desk: Desk, alice: httpx.AsyncClient, token: str | None
) -> None:
    mid = desk.world.hold()
    data = {"verdict": "approve", "explanation": "ok"}
    if token is not None:
        data["csrf"] = token
    r = await alice.post(f"/console/case/{mid}/decide", data=data)
    assert r.status_code == 403 and "security token" in r.text
    assert desk.world.app.executed == [] and set(desk.world.svc.held) == {mid}


async def test_one_reviewers_csrf_token_does_not_work_in_another_session(
    desk: Desk, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    mid = desk.world.hold()
    alices = csrf((await alice.get(f"/console/case/{mid}")).text)
    r = await bob.post(f"/console/case/{mid}/decide", data={"verdict": "approve", "csrf": alices})
    assert r.status_code == 403 and desk.world.app.executed == []


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://review.test:8080"])
async def test_a_form_posted_from_another_site_is_403(
    desk: Desk, alice: httpx.AsyncClient, origin: str
) -> None:
    mid = desk.world.hold()
    token = csrf((await alice.get(f"/console/case/{mid}")).text)
    r = await alice.post(
        f"/console/case/{mid}/decide",
        data={"csrf": token, "verdict": "approve"},
        headers={"Origin": origin},
    )
    assert r.status_code == 403 and "another site" in r.text
    async with desk.browser() as b:  # a forged sign-in (login CSRF) is refused too
        r = await b.post(
            "/console/signin",
            data={"name": "reviewer.alice", "password": ALICE_PW},
            headers={"Origin": origin},
        )
        assert r.status_code == 403 and "set-cookie" not in r.headers
    assert desk.world.app.executed == []
    # behind a proxy that rewrites Host, X-Forwarded-Host names the browser's host
    r = await alice.post(
        f"/console/case/{mid}/decide",
        data={"csrf": token, "verdict": "approve"},
        headers={"Origin": "https://desk.gs.example", "X-Forwarded-Host": "evil.example"},
    )
    assert r.status_code == 403
    # the control: the page's own origin passes
    r = await alice.post(
        f"/console/case/{mid}/decide",
        data={"csrf": token, "verdict": "approve"},
        headers={"Origin": "http://review.test"},
    )
    assert r.status_code == 303 and len(desk.world.app.executed) == 1


async def test_behind_a_proxy_the_forwarded_host_is_the_pages_origin(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    mid = desk.world.hold()
    token = csrf((await alice.get(f"/console/case/{mid}")).text)
    r = await alice.post(
        f"/console/case/{mid}/decide",
        data={"csrf": token, "verdict": "approve"},
        headers={"Origin": "https://desk.gs.example", "X-Forwarded-Host": "desk.gs.example"},
    )
    assert r.status_code == 303 and len(desk.world.app.executed) == 1


async def test_an_unknown_message_is_a_404_page(desk: Desk, alice: httpx.AsyncClient) -> None:
    token = csrf((await alice.get("/console/queue")).text)
    unknown = "01J0000000000000000000000A"
    assert (await alice.get(f"/console/case/{unknown}")).status_code == 404
    r = await alice.post(
        f"/console/case/{unknown}/decide", data={"csrf": token, "verdict": "approve"}
    )
    assert r.status_code == 404 and "no held message" in r.text


async def test_a_decision_on_a_decided_message_is_a_409_page(
    desk: Desk, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    mid = desk.world.hold()
    token = csrf((await alice.get(f"/console/case/{mid}")).text)
    bobs = csrf((await bob.get(f"/console/case/{mid}")).text)  # bob has the page open too
    r = await alice.post(f"/console/case/{mid}/decide", data={"csrf": token, "verdict": "approve"})
    assert r.status_code == 303 and r.headers["location"] == "/console/queue?done=delivered"
    r = await bob.post(f"/console/case/{mid}/decide", data={"csrf": bobs, "verdict": "approve"})
    assert r.status_code == 409 and "déjà" in r.text  # bob reads French
    assert (await alice.get(f"/console/case/{mid}")).status_code == 409
    assert len(desk.world.app.executed) == 1


# --- queue and case ------------------------------------------------------------------------


async def test_the_queue_lists_holds_with_countdowns_and_filters(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    w = desk.world
    fr = w.hold()
    jp = w.hold("Insulting the head of state, and fraud.", sender="JP")
    page = (await alice.get("/console/queue")).text
    assert page.index(fr) < page.index(jp)  # same precedence: oldest first
    assert "24 h 00 min left" in page or "1 d 0 h left" in page
    only_jp = (await alice.get("/console/queue", params={"sender": "JP"})).text
    assert jp in only_jp and fr not in only_jp
    assert fr in (await alice.get("/console/queue", params={"kind": "RED_NOTICE_REQUEST"})).text
    assert fr not in (await alice.get("/console/queue", params={"kind": "DIFFUSION"})).text
    assert fr not in (await alice.get("/console/queue", params={"rule": "NO-SUCH"})).text
    assert fr in (await alice.get("/console/queue", params={"lang": "en"})).text
    assert fr not in (await alice.get("/console/queue", params={"lang": "fr"})).text
    w.clock.now += 25 * rw.HOUR_MS
    await sign_in(alice, "reviewer.alice", ALICE_PW)  # the session of yesterday has ended
    page = (await alice.get("/console/queue")).text
    assert "Overdue by 1 h 00 min" in page and 'class="overdue"' in page


async def test_the_case_view_marks_the_screens_words_and_escapes_the_senders_text(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    hostile = "Opposition journalist <script>alert(1)</script> & elections"
    mid = desk.world.hold(hostile)
    page = (await alice.get(f"/console/case/{mid}")).text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in page
    marked = re.findall(r'<mark class="hit">([^<]*)</mark>', page)
    assert {m.lower() for m in marked} >= {"journalist", "elections"}, marked
    screen = desk.world.svc.show(mid)["screen"]
    assert screen["also_matched"], screen  # this text matches more than one rule
    assert f'id="rule">{screen["rule"]}<' in page
    assert all(f"<code>{r}</code>" in page for r in screen["also_matched"])
    assert 'id="record"' in page and "HELD" in page  # the trail's first line
    # fields by their labels, in the reviewer's language; booleans as words
    assert re.search(r"<dt>Extradition assured</dt>\s*<dd>\s*Yes", page)


def test_highlight_escapes_every_piece_and_marks_whole_words_only() -> None:
    out = str(highlight('a <b>"vote"</b> & voters; Vote!', ["vote", "<b>"]))
    assert out == (
        'a <mark class="hit">&lt;b&gt;</mark>&#34;<mark class="hit">vote</mark>&#34;&lt;/b&gt; '
        '&amp; voters; <mark class="hit">Vote</mark>!'
    )
    assert str(highlight("élections", ["élections"])) == '<mark class="hit">élections</mark>'


# --- four-eyes through the forms ----------------------------------------------------------


async def test_four_eyes_refusal_proposed_by_one_reviewer_confirmed_by_another(
    desk: Desk, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    w = desk.world
    mid = w.hold()
    token = csrf((await alice.get(f"/console/case/{mid}")).text)
    r = await alice.post(
        f"/console/case/{mid}/decide",
        data={
            "csrf": token,
            "verdict": "reject",
            "grounds": "POLITICAL",
            "explanation": "Political offence (Art. 3)",
        },
    )
    assert r.status_code == 303 and r.headers["location"].endswith("done=proposed")
    page = (await alice.get(r.headers["location"])).text
    assert "Waiting for a second reviewer" in page and 'id="confirm"' not in page
    pid = proposal_id(page)
    r = await alice.post(f"/console/case/{mid}/confirm", data={"csrf": token, "proposal_id": pid})
    assert r.status_code == 403 and w.app.executed == []

    page = (await bob.get(f"/console/case/{mid}")).text
    assert 'id="confirm"' in page and "reviewer.alice" in page
    r = await bob.post(
        f"/console/case/{mid}/confirm", data={"csrf": csrf(page), "proposal_id": pid}
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/queue?done=rejected"
    n = w.notice_to("FR", w.committed())
    assert (n["status"], n["reason"], n["explanation"]) == (
        "REJECTED",
        "POLITICAL",
        "Political offence (Art. 3)",
    )
    (entry,) = (e for d in w.committed() for e in d.audit)
    assert entry.actor == "reviewer.bob" and "proposed:reviewer.alice" in (entry.reason or "")


async def test_a_refusal_on_other_grounds_without_a_reason_is_refused_by_the_form(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    mid = desk.world.hold()
    token = csrf((await alice.get(f"/console/case/{mid}")).text)
    r = await alice.post(
        f"/console/case/{mid}/decide",
        data={"csrf": token, "verdict": "reject", "grounds": "OTHER", "explanation": "no"},
    )
    assert r.status_code == 422 and "20 characters" in r.text
    assert desk.world.log.records == []


async def test_an_explanation_with_a_terminal_escape_is_refused_by_the_form(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    mid = desk.world.hold()
    token = csrf((await alice.get(f"/console/case/{mid}")).text)
    r = await alice.post(
        f"/console/case/{mid}/decide",
        data={
            "csrf": token,
            "verdict": "reject",
            "grounds": "POLITICAL",
            "explanation": "Political\x1b]8;;https://evil.example\x07 case",
        },
    )
    assert r.status_code == 422 and "plain text and line breaks" in r.text
    assert desk.world.log.records == []


# --- transparency report ---------------------------------------------------------------------


async def test_the_report_page_shows_the_verified_report_without_names_or_ids(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    w = desk.world
    mids = [w.hold(), w.hold("Insulting the head of state, and fraud.")]
    form = await alice.get("/console/report")
    assert form.status_code == 200 and 'id="report-form"' in form.text
    day = datetime.fromtimestamp(rw.T0 / 1000, UTC).date().isoformat()
    r = await alice.get("/console/report", params={"from": day, "to": day})
    assert r.status_code == 200, r.text
    assert "<script" not in r.text and "script-src" not in r.headers["content-security-policy"]
    assert "Transparency" in r.text and "held" in r.text
    person = red_notice("x")["subject"]
    for secret in (*mids, person["family_name"], "Opposition journalist"):
        assert not re.search(rf"\b{re.escape(secret)}\b", r.text), secret


async def test_a_report_from_a_broken_chain_is_refused(
    desk: Desk, alice: httpx.AsyncClient
) -> None:
    w = desk.world
    w.hold()
    w.hold("Insulting the head of state, and fraud.")
    del w.audit[0]  # a gap at the start of the chain
    day = datetime.fromtimestamp(rw.T0 / 1000, UTC).date().isoformat()
    r = await alice.get("/console/report", params={"from": day, "to": day})
    assert r.status_code == 503 and "failed verification" in r.text
    r = await alice.get("/console/report", params={"from": day, "to": "2000-01-01"})
    assert r.status_code == 422


# --- languages ------------------------------------------------------------------------------


async def test_each_reviewer_reads_their_language_and_may_switch(
    desk: Desk, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    assert "Held messages" in (await alice.get("/console/queue")).text
    page = (await bob.get("/console/queue")).text  # bob's entry says fr
    assert 'lang="fr"' in page and "Messages retenus" in page
    r = await alice.post("/console/language", data={"csrf": csrf(page), "lang": "ar"})
    assert r.status_code == 403  # bob's token in alice's session
    token = csrf((await alice.get("/console/queue")).text)
    await alice.post("/console/language", data={"csrf": token, "lang": "ar"})
    page = (await alice.get("/console/queue")).text
    assert 'dir="rtl"' in page and 'lang="ar"' in page and "الرسائل المحتجزة" in page


@pytest.mark.parametrize("lang", ["ar", "en", "es", "fr"])
async def test_the_sign_in_page_in_each_language(desk: Desk, lang: str) -> None:
    async with desk.browser() as b:
        page = (await b.get("/console/signin", params={"lang": lang})).text
    _ = load_catalogues().gettext(lang)
    assert f'lang="{lang}"' in page and _("Password or token") in page
    assert ('dir="rtl"' in page) is (lang == "ar")


def test_every_console_string_is_translated_in_every_catalogue() -> None:
    cats = load_catalogues()
    assert set(cats.languages) == {"ar", "en", "es", "fr"}
    strings = ui_strings()
    assert len(strings) > 100
    for lang in ("ar", "es", "fr"):
        missing = sorted(s for s in strings if s not in cats.tables[lang])
        assert not missing, (lang, missing)
        same = [s for s in strings if cats.tables[lang][s] == s and len(s) > 4]
        assert len(same) <= len(strings) // 20, (lang, same)  # a few are (Description...)


def test_the_cli_adds_a_reviewer_from_a_password_file(tmp_path: Path) -> None:
    from i24net.cli import main

    pw = tmp_path / "pw"
    pw.write_text(ALICE_PW + "\n")
    f = tmp_path / "reviewers.toml"
    argv = ["review", "reviewers", "add", "reviewer.alice", "--file", str(f)]
    assert main([*argv, "--password-file", str(pw), "--language", "es"]) == 0
    r = Reviewers.load(f)
    assert r.check("reviewer.alice", ALICE_PW) is not None  # the newline is not part of it
    assert r.entries["reviewer.alice"].language == "es"
    pw.write_text("short\n")
    assert main([*argv, "--password-file", str(pw)]) != 0  # too short: refused
    assert Reviewers.load(f).check("reviewer.alice", ALICE_PW) is not None


def test_the_cli_takes_a_password_piped_on_standard_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``echo PW | i24net review reviewers add ...`` (a script, a secrets manager) ended in
    a traceback: ``getpass`` found no terminal and the confirmation hit end of input. A
    password on standard input is read once; an empty one is a clear error."""
    import io

    from i24net.cli import main

    f = tmp_path / "reviewers.toml"
    argv = ["review", "reviewers", "add", "reviewer.alice", "--file", str(f)]
    monkeypatch.setattr(sys, "stdin", io.StringIO(ALICE_PW + "\n"))
    assert main(argv) == 0
    assert Reviewers.load(f).check("reviewer.alice", ALICE_PW) is not None
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    capsys.readouterr()
    assert main(["review", "reviewers", "add", "reviewer.bob", "--file", str(f)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "standard input" in err
