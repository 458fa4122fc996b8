"""The review desk as reviewers use it: a real headless browser, two routers, the broker.

Two router instances (``a`` and ``b``) share FR's traffic; each runs the review
service and serves the console over real HTTP (uvicorn on a free port). Alice
works on instance ``a``, Bob on instance ``b``, in Debian's Chromium driven by
Selenium (``SE_OFFLINE=true``: Selenium Manager never downloads anything). The
four-eyes proposal Alice makes on ``a`` reaches Bob on ``b`` through
``i24.review`` only. FR's gateway is played by reading ``i24.in.FR``.

A second test races two decisions on the same hold through the JSON API of the
two instances at once: one answers 200, the other 409, and the broker shows one
decision (one closing audit entry, no delivery to JP when the refusal won, one
when the approval won).

``I24NET_SCREENSHOTS=<dir>`` saves ``review-queue.png`` and ``review-case.png``
(docs/img/ holds the committed ones).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from i24net.audit import read_records
from i24net.envelope import Precedence, Receiver, Recipients
from i24net.replay import ReplayWindow
from i24net.router.console.auth import add_reviewer
from i24net.router.review import ReviewService, review_router
from i24net.router.testing import hints, red_notice
from i24net.service import HttpServer

pytestmark = pytest.mark.kafka

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ALICE_PW = "alice's long review password"
BOB_PW = "bob's long review password!"
POLITICAL = "Opposition journalist accused of fraud after the elections."


def now() -> int:
    return time.time_ns() // 1_000_000


async def until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@dataclass
class Desk:
    """One router instance with its review service and console on a real port."""

    svc: ReviewService
    http: HttpServer
    stop: asyncio.Event
    tasks: list[asyncio.Task[Any]]
    host: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http.port}"

    async def close(self) -> None:
        self.stop.set()
        self.http.stop()
        for t in self.tasks:
            await asyncio.wait_for(t, 20)


@pytest.fixture
def reviewers_file(tmp_path: Path) -> Path:
    f = tmp_path / "reviewers.toml"
    add_reviewer(f, "reviewer.alice", ALICE_PW, "en")
    add_reviewer(f, "reviewer.bob", BOB_PW, "en")
    return f


@pytest.fixture
async def desks(
    router_world: Any, reviewers_file: Path
) -> AsyncIterator[Callable[..., Awaitable[Desk]]]:
    made: list[Desk] = []

    async def start(instance: str, host: str = "127.0.0.1", **review: Any) -> Desk:
        running = await router_world.router(instance)
        s = running.app.settings
        rs = s.review.model_copy(
            update={"reviewers_file": reviewers_file, "signin_delay_ms": 100, **review}
        )
        s = s.model_copy(update={"review": rs})
        svc = ReviewService(running.app, s)
        api = FastAPI()
        api.include_router(review_router(svc))
        http = HttpServer(api, "127.0.0.1", 0)
        stop = asyncio.Event()
        ready = asyncio.Event()
        tasks = [
            asyncio.create_task(svc.run(stop), name=f"review-{instance}"),
            asyncio.create_task(http.serve(ready=ready, stop=stop), name=f"http-{instance}"),
        ]
        await asyncio.wait_for(ready.wait(), 20)
        await asyncio.wait_for(svc.loaded.wait(), 60)
        desk = Desk(svc, http, stop, tasks, host)
        made.append(desk)
        return desk

    try:
        yield start
    finally:
        for d in made:
            await d.close()


def hold(world: Any, text: str, precedence: Precedence = Precedence.ROUTINE) -> Any:
    """FR's gateway seals a Red Notice request for JP that the screen will hold."""
    t = now()
    h, data = world.net.gateway("FR", t).message(
        "RED_NOTICE_REQUEST", red_notice(text), Recipients.to("JP"), t, precedence=precedence
    )
    return h, data


async def send_holds(world: Any, *items: tuple[str, Precedence]) -> list[str]:
    mids = []
    for text, precedence in items:
        h, data = hold(world, text, precedence)
        await world.send(data, hints(h))
        mids.append(h.message_id)
    return mids


# --- the browser -----------------------------------------------------------------------


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    o = Options()
    o.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        "--lang=en-GB",
    ):
        o.add_argument(arg)
    return webdriver.Chrome(options=o, service=Service(executable_path=str(CHROMEDRIVER)))


class Person:
    """A reviewer at the browser; every call blocks, so tests run them in a thread."""

    def __init__(self, driver: Any, base: str) -> None:
        self.d = driver
        self.base = base

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.d, 20).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, css))
        )

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.d.find_elements(By.CSS_SELECTOR, css))

    def sign_in(self, name: str, password: str) -> None:
        self.d.get(f"{self.base}/console/signin")
        self.find("#name").send_keys(name)
        self.find("#password").send_keys(password)
        self.find("#signin").click()
        assert name in self.find("#who").text

    def open_case(self, message_id: str) -> None:
        self.find(f'tr[data-message-id="{message_id}"] a.open').click()
        self.find("#decision")

    def status(self) -> int:
        el = self.all("#error")
        return int(el[0].get_attribute("data-status")) if el else 200

    def shot(self, name: str) -> None:
        out = os.environ.get("I24NET_SCREENSHOTS")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            size = self.d.get_window_size()
            height = self.d.execute_script("return document.documentElement.scrollHeight")
            self.d.set_window_size(size["width"], min(2400, max(size["height"], height)))
            self.d.save_screenshot(str(Path(out) / name))
            self.d.set_window_size(size["width"], size["height"])


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Any:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) or not shutil.which("chromium"):
        missing = "Debian chromium and chromium-driver are not installed (make deps)"
        if os.environ.get("CI"):  # CI runs make test, whose make deps installs them
            pytest.fail(missing)
        pytest.skip(missing)
    monkeypatch.setenv("SE_OFFLINE", "true")
    driver = _browser()
    try:
        yield driver
    finally:
        driver.quit()


async def test_refusal_proposed_in_the_browser_confirmed_by_a_second_reviewer_elsewhere(
    router_world: Any, desks: Callable[..., Awaitable[Desk]], browser: Any
) -> None:
    a = await desks("a", "127.0.0.1")
    b = await desks("b", "localhost")  # another host name: the browser keeps two cookie jars
    political, *others = await send_holds(
        router_world,
        (POLITICAL, Precedence.IMMEDIATE),
        ("Insulting the head of state on television, and fraud.", Precedence.ROUTINE),
        ("Member of the banned opposition party, accused of embezzlement.", Precedence.FLASH),
    )
    mids = [political, *others]
    await until(
        lambda: all(m in a.svc.held and m in b.svc.held for m in mids), 60, "holds on a and b"
    )
    alice, bob = Person(browser, a.url), Person(browser, b.url)

    def alice_proposes() -> None:
        alice.sign_in("reviewer.alice", ALICE_PW)
        rows = alice.all("#queue tbody tr")
        order = [r.get_attribute("data-message-id") for r in rows]
        assert order == [others[1], political, others[0]]  # FLASH, IMMEDIATE, ROUTINE
        alice.shot("review-queue.png")
        alice.open_case(political)
        marked = {m.text.lower() for m in alice.all("#payload mark.hit")}
        assert {"journalist", "elections"} <= marked, marked
        assert alice.find("#rule").text == "WANTED-PERSON-RISK"
        alice.shot("review-case.png")
        from selenium.webdriver.support.ui import Select

        Select(alice.find("#grounds")).select_by_value("POLITICAL")
        alice.find("#explanation").send_keys("Political offence: Article 3 applies.")
        alice.find("#refuse").click()
        assert "second reviewer" in alice.find("#flash").text
        assert alice.all("#confirm") == []  # not offered to the proposer

        # a forged confirmation of her own proposal: refused
        alice.d.execute_script(
            "const f = document.querySelector('#withdraw').form;"
            "f.action = f.action.replace('/withdraw', '/confirm'); f.submit();"
        )
        alice.find("#error")
        assert alice.status() == 403

        # a form without its CSRF token: refused
        alice.d.get(f"{a.url}/console/case/{others[0]}")
        alice.d.execute_script(
            "const f = document.querySelector('#approve-form');"
            "f.querySelector('[name=csrf]').remove(); f.submit();"
        )
        alice.find("#error")
        assert alice.status() == 403

    await asyncio.to_thread(alice_proposes)
    assert political in a.svc.held and others[0] in a.svc.held  # nothing was decided
    await until(lambda: political in b.svc.proposals, 30, "the proposal read on b")

    def bob_confirms() -> None:
        bob.sign_in("reviewer.bob", BOB_PW)
        bob.open_case(political)
        assert "reviewer.alice" in bob.find("#proposal").text
        bob.find("#confirm").click()
        assert "took effect" in bob.find("#flash").text
        assert political not in bob.d.page_source
        # Bob switches the console to Arabic: right to left, his session keeps it
        from selenium.webdriver.support.ui import Select

        Select(bob.find("#lang-switch")).select_by_value("ar")
        bob.find("#lang-switch").find_element("xpath", "./ancestor::form").submit()
        bob.find('html[dir="rtl"]')
        assert "الرسائل المحتجزة" in bob.find("h1").text
        bob.shot("review-queue-ar.png")

    await asyncio.to_thread(bob_confirms)

    # FR's gateway receives the refusal with Alice's grounds and explanation
    notices = await router_world.notices(len(mids) + 1)
    n = notices[political]
    assert (n["status"], n["reason"], n["explanation"]) == (
        "REJECTED",
        "POLITICAL",
        "Political offence: Article 3 applies.",
    )
    await until(lambda: political in a.svc.closed, 30, "a reads the decision")

    def alice_sees_it_decided() -> None:
        alice.d.get(f"{a.url}/console/case/{political}")
        alice.find("#error")
        assert alice.status() == 409

    await asyncio.to_thread(alice_sees_it_decided)


async def test_two_instances_deciding_one_hold_at_once_decide_it_once(
    router_world: Any, desks: Callable[..., Awaitable[Desk]]
) -> None:
    a = await desks("a", four_eyes_refusals=False)
    b = await desks("b", four_eyes_refusals=False)
    (mid,) = await send_holds(router_world, (POLITICAL, Precedence.ROUTINE))
    await until(lambda: mid in a.svc.held and mid in b.svc.held, 60, "the hold on a and b")
    async with httpx.AsyncClient(timeout=60) as http:
        unknown = await http.post(
            f"{a.url}/review/held/01J0000000000000000000000A/approve",
            json={},
            headers={"X-I24-Reviewer": "reviewer.alice"},
        )
        assert unknown.status_code == 404
        approve, reject = await asyncio.gather(
            http.post(
                f"{a.url}/review/held/{mid}/approve",
                json={"explanation": "Fraud predominates"},
                headers={"X-I24-Reviewer": "reviewer.alice"},
            ),
            http.post(
                f"{b.url}/review/held/{mid}/reject",
                json={"grounds": "POLITICAL", "explanation": "Political offence"},
                headers={"X-I24-Reviewer": "reviewer.bob"},
            ),
        )
    codes = sorted((approve.status_code, reject.status_code))
    assert codes == [200, 409], (approve.text, reject.text)
    approved = approve.status_code == 200

    # the broker holds one decision: one closing audit entry, JP got the message iff approved
    from aiokafka import AIOKafkaConsumer

    await until(lambda: mid in a.svc.closed and mid in b.svc.closed, 30, "both read it")
    c = AIOKafkaConsumer(
        **router_world.conn.client_kwargs(),
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await c.start()
    try:
        recs = [r async for r in read_records(c, topic=router_world.topics.audit)]
    finally:
        await c.stop()
    closing = []
    for r in recs:
        assert r.value is not None
        _, e = router_world.net.store.decode_single(r.value)
        if e["message_id"] == mid and e["action"] in ("APPROVED", "REJECTED", "EXPIRED"):
            closing.append(e["action"])
    assert closing == ["APPROVED" if approved else "REJECTED"]
    notices = await router_world.notices(2)
    assert notices[mid]["status"] == ("DELIVERED" if approved else "REJECTED")
    jp = await router_world.read(router_world.topics.inbox("JP"), 1 if approved else 0)
    rx = Receiver(
        router_world.net.secrets["JP"], router_world.net.directory, ReplayWindow(clock=now)
    )
    assert [rx.open(r.value).header.message_id for r in jp] == ([mid] if approved else [])

    # the console's report page reads and verifies the audit topic from the broker
    day = time.strftime("%Y-%m-%d", time.gmtime())
    async with httpx.AsyncClient(base_url=b.url, timeout=60, follow_redirects=True) as web:
        r = await web.post("/console/signin", data={"name": "reviewer.bob", "password": BOB_PW})
        assert r.status_code == 200 and "reviewer.bob" in r.text
        r = await web.get("/console/report", params={"from": day, "to": day})
    assert r.status_code == 200 and "<h1>" in r.text, r.text[:500]
    assert mid not in r.text  # aggregates only
