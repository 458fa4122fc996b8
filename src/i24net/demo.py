"""``i24net demo``: the whole network on one machine, narrated.

What it does, with real parts only (a Kafka 4.x broker, the ``i24net gateway``
and ``i24net router`` daemons as separate processes, PyNaCl, Avro, SQLite):

1. starts a local Kafka broker (KRaft, loopback);
2. generates keys for every member country's NCB and the GS, signs the
   directory with a fresh GS root key, creates the topics; every station
   publishes a v1 key and an envelope-v2 key (post-quantum hybrid HPKE,
   ML-KEM-768 + X25519) but one (``V1_ONLY``, not migrated yet), so the
   gateways choose per message (``[envelope] version = "auto"``) and the
   demo shows which version each message travelled in;
3. starts the router and three bureau gateways (FR, JP, BR), their APIs over
   TLS (a development CA), each with one integrator (the bureau's
   case-management system) authenticated by a bearer token: a request
   without one is refused 401;
4. FR asks for a Red Notice about a fraud suspect, to ALL stations: the
   router screens it and delivers it to every station; JP and BR show it,
   verified, in their inboxes and FR sees the receipts;
5. JP sends a diffusion to FR and BR;
6. BR sends a wanted-person diffusion whose facts are political (taking part
   in a demonstration): the router holds it for review, a GS reviewer proposes
   to refuse it, a second reviewer confirms (four-eyes), and BR is told why;
7. the Article 3 screen as an operator sees it (``demo_policy``): a
   predominance case (an ordinary charge against a former minister after a
   change of government) is held with its rule, reasons and matched words;
   a candidate policy is checked, evaluated on the corpus and put in place,
   and the router reloads it without a restart;
8. the audit chain is walked and verified;
9. everything is stopped, the broker too (``--keep`` first keeps the network
   running, with the reviewers' console open, until Ctrl-C).

State goes to ``var/demo/`` (wiped at each run); logs of each process are kept
there for a look afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from i24net import demo_policy
from i24net.client import GatewayClient
from i24net.directory import MANIFEST_KEY
from i24net.envelope import envelope_version
from i24net.gateway.auth import create_integrator
from i24net.kafka import Broker, BrokerSettings, KafkaConnection
from i24net.kafka.broker import free_port
from i24net.kafka.security import CertificateAuthority, issue_certificate, write_dev_pki
from i24net.router.console.auth import add_reviewer
from i24net.router.settings import Topics
from i24net.router.testing import (
    build_network,
    police_message,
    provision,
    red_notice,
    settings_toml,
)
from i24net.stations import all_stations

GATEWAYS = ("FR", "JP", "BR")
V1_ONLY = ("SY",)
"""Stations with only a v1 encryption key in the demo's directory (the migration to
envelope v2 in progress): a broadcast to ALL reaches them, so it travels in v1."""
REVIEWERS = ("gs-reviewer-1", "gs-reviewer-2")
DESK_PASSWORD = "demo review desk"
POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"


def say(text: str = "") -> None:
    print(text, flush=True)


def step(n: int, text: str) -> None:
    say(f"\n[{n}] {text}")


class Processes:
    """Child daemons, stopped with SIGTERM (then SIGKILL) whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        cmd = [sys.executable, "-m", "i24net", *args]
        self.children[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

    def check_alive(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {proc.returncode}; see {self.logs / (name + '.log')}"
                )

    def stop(self, timeout_s: float = 15.0) -> dict[str, int | None]:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + timeout_s
        for name, proc in self.children.items():
            try:
                codes[name] = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        self.children.clear()
        return codes


def wait_until(check: Callable[[], bool], within_s: float, what: str, procs: Processes) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        procs.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {within_s:.0f}s waiting for {what}")


def ready(url: str, verify: ssl.SSLContext | bool = True) -> bool:
    return httpx.get(f"{url}/readyz", timeout=2, verify=verify).status_code == 200


@dataclass(frozen=True)
class ApiTls:
    """The gateways' API certificates, issued by a development CA (the project's CA code)."""

    directory: Path
    ca_file: Path
    ca: CertificateAuthority

    @classmethod
    def create(cls, directory: Path) -> ApiTls:
        pki = write_dev_pki(directory, broker_names=())
        return cls(
            directory,
            pki.ca_file,
            CertificateAuthority(pki.ca_file.read_bytes(), pki.ca_key_file.read_bytes()),
        )

    def server(self, code: str) -> tuple[Path, Path]:
        """Certificate and key files (0600) of ``code``'s gateway API."""
        issued = issue_certificate(self.ca, f"gateway-{code}")
        cert, key = self.directory / f"gateway-{code}.pem", self.directory / f"gateway-{code}.key"
        cert.write_bytes(issued.cert_pem + issued.ca_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(issued.key_pem)
        return cert, key

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@dataclass(frozen=True)
class Net:
    """How the demo's processes reach the broker: plaintext, or TLS + SCRAM per principal."""

    bootstrap: str
    admin: KafkaConnection
    ca_file: Path | None = None
    credentials: Path | None = None

    def kafka_toml(self, user: str) -> list[str]:
        lines = [f'bootstrap = "{self.bootstrap}"']
        if self.credentials is not None:
            lines += [
                'security_protocol = "SASL_SSL"',
                'sasl_mechanism = "SCRAM-SHA-512"',
                f'username = "{user}"',
                f'password_file = "{self.credentials / (user + ".password")}"',
                f'ca_file = "{self.ca_file}"',
            ]
        return lines


def gateway_toml(code: str, base: Path, net: Net, port: int, tls: ApiTls | None = None) -> Path:
    """``code``'s gateway settings; with ``tls``, its API over TLS (client certificates from
    the same CA accepted), else plain HTTP on loopback."""
    path = base / f"gateway-{code}.toml"
    api_tls: list[str] = []
    if tls is not None:
        cert, key = tls.server(code)
        api_tls = [
            "[api.tls]",
            f'cert_file = "{cert}"',
            f'key_file = "{key}"',
            f'client_ca_file = "{tls.ca_file}"',
            'client_cert = "optional"',
        ]
    path.write_text(
        "\n".join(
            [
                f'station = "{code}"',
                f'data_dir = "{base / ("gw-" + code)}"',
                "shutdown_grace_s = 5",
                "[keys]",
                f'secret = "{base / "keys" / (code + ".secret.json")}"',
                f'root_public = "{base / "keys" / "gs-root.public.json"}"',
                "[directory]",
                f'entries = "{base / "directory"}"',
                "[kafka]",
                *net.kafka_toml(code),
                "[api]",
                'host = "127.0.0.1"',
                f"port = {port}",
                *api_tls,
                "[outbox]",
                "retry_backoff_s = 0.5",
                "",
            ]
        )
    )
    return path


def wait_status(
    client: GatewayClient, message_id: str, done: Callable[[dict[str, Any]], bool], within_s: float
) -> dict[str, Any]:
    """Long-poll the sender's status view until ``done`` holds or time runs out."""
    deadline = time.monotonic() + within_s
    status: dict[str, Any] = client.status(message_id)
    while not done(status) and time.monotonic() < deadline:
        time.sleep(0.2)
        status = client.status(message_id, wait=2, since=status["status"])
    return status


def receipted(status: dict[str, Any]) -> list[str]:
    return [s["station"] for s in status["stations"] if s["receipted_ms"]]


def delivered(status: dict[str, Any]) -> list[str]:
    return [s["station"] for s in status["stations"] if s["delivered_ms"]]


def inbox_has(client: GatewayClient, message_id: str) -> bool:
    try:
        client.fetch(message_id)
    except Exception:
        return False
    return True


@contextlib.contextmanager
def local_broker(base: Path, secure: bool) -> Iterator[tuple[Broker, Net]]:
    """A plaintext broker, or with ``secure`` TLS + SCRAM + ACLs provisioned per station."""
    if not secure:
        broker = Broker(BrokerSettings(data_dir=base / "kafka", heap="768m"))
        broker.start()
        try:
            yield broker, Net(broker.bootstrap, KafkaConnection(broker.bootstrap, client_id="demo"))
        finally:
            broker.stop()
        return
    from i24net.provision import start_secured_broker

    with start_secured_broker(base / "kafka", sorted(all_stations()), heap="768m") as sb:
        say(f"    TLS (dev CA {sb.ca_file}), SCRAM-SHA-512 users and ACLs: {sb.report.summary()}")
        yield sb.broker, Net(sb.bootstrap, sb.admin, sb.ca_file, sb.credentials_dir)


def run(base: Path = Path("var/demo"), *, secure: bool = False, keep: bool = False) -> int:
    # The narration is the output; client libraries' chatter goes to the process logs.
    for noisy in ("httpx", "aiokafka", "i24net.kafka", "i24net.provision"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    base = base.resolve()
    if base.exists():
        shutil.rmtree(base)
    (base / "logs").mkdir(parents=True)
    t0 = time.monotonic()
    say("i24net demo: a real Kafka broker, the GS router and three bureau gateways\n")

    what = "with TLS, per-station credentials and ACLs" if secure else "plaintext"
    step(1, f"starting a local Apache Kafka broker (KRaft, loopback, {what}) ...")
    with local_broker(base, secure) as (broker, net):
        say(
            f"    broker ready at {broker.bootstrap} in {broker.started_in_s:.1f}s "
            f"(log {broker.log_path})"
        )
        procs = Processes(base / "logs")
        try:
            return _scenario(base, net, procs, t0, keep)
        finally:
            codes = procs.stop()
            if codes:
                say(f"\nstopped: {', '.join(f'{n} (exit {c})' for n, c in codes.items())}")
            say("stopping the broker ...")


def _scenario(base: Path, kafka: Net, procs: Processes, t0: float, keep: bool) -> int:
    now_ms = int(time.time() * 1000)
    step(2, "keys for every station, the GS-signed directory, topics ...")
    stations = sorted(all_stations())
    net = build_network(stations, base / "keys", now_ms=now_ms, v1_only=V1_ONLY)
    entries = base / "directory"
    entries.mkdir()
    for code, entry in net.entries.items():
        (entries / f"{code}.entry").write_bytes(entry)
    if net.manifest is not None:  # what `i24net directory manifest` re-signs
        (entries / MANIFEST_KEY).write_bytes(net.manifest)
    say(
        f"    {len(net.directory)} stations in the directory (the 196 member NCBs, the GS, "
        "regional bureaus, UN/EU offices), each record signed by the GS root key"
    )
    say(
        "    each publishes a v1 (X25519) and a v2 (HPKE ML-KEM-768 + X25519, post-quantum "
        f"hybrid) encryption key, but {', '.join(V1_ONLY)} (v1 only: not migrated yet)"
    )
    asyncio.run(provision(kafka.admin, net, Topics(), legacy=False))
    say(
        f"    the ingress topic {Topics().ingress} and i24.in.<station> for "
        f"{len(net.directory)} stations created"
    )

    step(3, "starting the router and the gateways FR, JP, BR (separate processes) ...")
    live_policy = base / "policy.toml"  # the copy an operator edits (step 7)
    shutil.copy(POLICY, live_policy)
    router_port = free_port()
    router_cfg = base / "router.toml"
    router_toml = settings_toml(
        instance="demo",
        bootstrap=kafka.bootstrap,
        prefix="",
        keys_dir=base / "keys",
        state_dir=base / "router",
        policy=live_policy,
        port=router_port,
    )
    router_toml = router_toml.replace(
        f'bootstrap = "{kafka.bootstrap}"', "\n".join(kafka.kafka_toml("router"))
    )
    # the review desk's reviewers (docs/review.md): two, for four-eyes refusals
    reviewers = base / "reviewers.toml"
    for who in REVIEWERS:
        add_reviewer(reviewers, who, DESK_PASSWORD, "en")
    router_toml += f'\n[review]\nreviewers_file = "{reviewers}"\n'
    router_cfg.write_text(router_toml)
    procs.start("router", "router", "--config", str(router_cfg))
    urls: dict[str, str] = {}
    tokens: dict[str, str] = {}
    tls = ApiTls.create(base / "api-tls")
    for code in GATEWAYS:
        port = free_port()
        urls[code] = f"https://127.0.0.1:{port}"
        # what `i24net gateway integrators add` does; the token is shown once, kept here
        token = create_integrator(
            base / f"gw-{code}" / "integrators.sqlite3",
            "case-management",
            ["send", "inbox:read", "status:read"],
        )
        assert token is not None
        tokens[code] = token
        procs.start(
            f"gateway-{code}",
            "gateway",
            "--config",
            str(gateway_toml(code, base, kafka, port, tls)),
        )
    router_url = f"http://127.0.0.1:{router_port}"
    wait_until(lambda: ready(router_url), 90, "the router", procs)
    ctx = tls.context()
    for code, url in urls.items():
        wait_until(lambda url=url: ready(url, ctx), 60, f"gateway {code}", procs)  # type: ignore[misc]
    say(f"    router {router_url}  gateways " + "  ".join(f"{c} {u}" for c, u in urls.items()))
    anonymous = httpx.get(f"{urls['FR']}/v1/inbox", timeout=5, verify=ctx)
    say(
        "    gateway APIs over TLS (dev CA); each bureau's case-management system holds a "
        "bearer token (integrator case-management: send, inbox:read, status:read); "
        f"FR's inbox without one: {anonymous.status_code} {anonymous.json().get('error')}"
    )
    if kafka.credentials is not None:
        answer = asyncio.run(try_read_as("FR", "i24.in.JP", kafka))
        say(f"    FR's broker credentials trying to read JP's inbox topic: {answer}")
    clients = {
        code: GatewayClient(url, timeout=30, token=tokens[code], ca_file=tls.ca_file)
        for code, url in urls.items()
    }
    try:
        return _exchanges(
            clients, router_url, router_cfg, live_policy, procs, t0, keep, kafka=kafka
        )
    finally:
        for client in clients.values():
            client.close()


def _exchanges(
    clients: dict[str, GatewayClient],
    router_url: str,
    router_cfg: Path,
    live_policy: Path,
    procs: Processes,
    t0: float,
    keep: bool = False,
    *,
    kafka: Net | None = None,
) -> int:
    fr, jp, br = clients["FR"], clients["JP"], clients["BR"]
    failures: list[str] = []

    def show_version(message_id: str, at: str, expected: int, why: str) -> None:
        """Which envelope version the delivery of ``message_id`` to ``at`` travelled in."""
        if kafka is None:
            return
        got = asyncio.run(delivered_version(kafka.admin, f"i24.in.{at}", message_id))
        say(f"    envelope version of the delivery to {at}: v{got} ({why})")
        if got != expected:
            failures.append(f"{message_id} reached {at} in v{got}, not v{expected}")

    step(4, "FR asks for a Red Notice (fraud suspect) to ALL stations ...")
    red = fr.send(
        "RED_NOTICE_REQUEST",
        to_all=True,
        payload=red_notice(
            "Organised investment fraud: 240 victims, EUR 3.1 million diverted "
            "through shell companies.",
            family_name="Martin",
            forenames="Paul",
            nationalities=["FR"],
        ),
        precedence="PRIORITY",
        offence_categories=["FRAUD"],
    )
    say(f"    accepted at FR: message {red}")
    wait_until(
        lambda: inbox_has(jp, red) and inbox_has(br, red), 60, "the Red Notice at JP and BR", procs
    )
    item = jp.fetch(red)
    say("    JP stored it after verifying the sender's signature and the router's attestation:")
    say(
        f"      sender {item['sender']}, kind {item['kind']}, router decision {item['decision']}, "
        f"subject {item['payload']['subject']['family_name']}"
    )
    st = wait_status(fr, red, lambda s: {"JP", "BR"} <= set(receipted(s)), 30)
    say(
        f"    FR status: {st['status']}; delivered to {len(delivered(st))} stations; "
        f"signed receipts from {', '.join(receipted(st)) or 'none yet'} (the only gateways running)"
    )
    if not {"JP", "BR"} <= set(receipted(st)):
        failures.append("FR did not get receipts from JP and BR")
    show_version(red, "JP", 1, f"ALL includes {', '.join(V1_ONLY)}, which reads only v1")

    step(5, "JP sends a diffusion to FR and BR ...")
    dif = jp.send(
        "POLICE_MESSAGE",
        to=["FR", "BR"],
        payload=police_message(
            "Stolen vehicle VIN WVWZZZ1JZXW000001 seen at the port of Kobe.", "Stolen vehicle"
        ),
        precedence="IMMEDIATE",
    )
    wait_until(
        lambda: inbox_has(fr, dif) and inbox_has(br, dif), 60, "the diffusion at FR and BR", procs
    )
    say(f"    FR and BR stored {dif}: {fr.fetch(dif)['payload']['text']!r}")
    st = wait_status(jp, dif, lambda s: {"FR", "BR"} <= set(receipted(s)), 30)
    say(f"    JP status: {st['status']}; receipts from {', '.join(receipted(st))}")
    show_version(dif, "FR", 2, "FR, BR and the GS all publish v2 keys: forward secret, hybrid")

    step(6, "BR sends a wanted-person diffusion whose facts are political ...")
    facts = (
        "Took part in an unauthorised demonstration against the government "
        "and insulted the head of state."
    )
    wanted = red_notice(
        facts, category="OTHER", family_name="Silva", forenames="Ana", nationalities=["BR"]
    )
    del wanted["countries_likely_visited"]
    wanted["action_requested"] = "Locate and arrest with a view to extradition"
    pol = br.send("WANTED_PERSON_DIFFUSION", to=["FR", "JP"], payload=wanted, precedence="ROUTINE")
    held = wait_status(br, pol, lambda s: s["status"] != "SENT" and s["status"] != "ACCEPTED", 30)
    say(f"    BR status: {held['status']} (the GS router held it before any delivery)")
    if held["status"] != "HELD_FOR_REVIEW":
        failures.append(f"the political diffusion was {held['status']}, not held")
    review = httpx.Client(
        base_url=router_url, headers={"X-I24-Reviewer": "gs-reviewer-1"}, timeout=10
    )
    with review:
        queue = review.get("/review/held").json()
        say(
            f"    GS review queue: {len(queue)} held: "
            + ", ".join(f"{h['message_id']} from {h['sender']} ({h['rule']})" for h in queue)
        )
        detail = review.get(f"/review/held/{pol}").json()
        screen = detail.get("screen", {})
        say(
            f"    the reviewer sees the screen's reasons {screen.get('reasons')} "
            f"(would otherwise match {screen.get('also_matched')})"
        )
        facts = (detail.get("payload") or {}).get("case", {}).get("facts")
        if facts:
            say(f"    and the facts, decrypted with the GS key: {facts!r}")
        res = review.post(
            f"/review/held/{pol}/reject",
            json={"grounds": "POLITICAL", "explanation": "Predominantly political (Article 3)."},
        )
        proposal = res.json() if res.status_code == 200 else {}
        say(
            f"    reviewer gs-reviewer-1 proposes to refuse it: HTTP {res.status_code} "
            f"{proposal.get('status', res.text[:200])} (four-eyes: a refusal needs a second "
            "reviewer)"
        )
        if proposal.get("status") == "proposed":
            own = review.post(
                f"/review/held/{pol}/confirm", json={"proposal_id": proposal["proposal_id"]}
            )
            say(f"    gs-reviewer-1 confirming their own proposal: HTTP {own.status_code}")
            if own.status_code != 403:
                failures.append(f"a reviewer confirmed their own proposal: {own.status_code}")
            second = review.post(
                f"/review/held/{pol}/confirm",
                json={"proposal_id": proposal["proposal_id"]},
                headers={"X-I24-Reviewer": "gs-reviewer-2"},
            )
            say(f"    gs-reviewer-2 confirms the refusal: HTTP {second.status_code}")
        elif res.status_code != 200:
            failures.append(f"the reviewer's refusal was answered {res.status_code}")
    refused = wait_status(br, pol, lambda s: s["status"] in ("REJECTED", "REFUSED"), 30)
    say(
        f"    BR status: {refused['status']}; reason: {refused['reason']}; "
        f"explanation: {refused['explanation']}"
    )
    if refused["status"] not in ("REJECTED", "REFUSED"):
        failures.append("BR was not told of the rejection")
    if inbox_has(jp, pol):
        failures.append("the rejected message reached JP")

    step(7, "the Article 3 screen as an operator sees it ...")
    failures += demo_policy.run(fr, router_url, live_policy, say=say)

    step(8, "walking and verifying the audit chain ...")
    proc = subprocess.run(
        [sys.executable, "-m", "i24net", "audit", "verify", "--config", str(router_cfg)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if " INFO " not in ln]
    say("    " + "\n    ".join(lines[-6:]))
    if proc.returncode != 0:
        failures.append("audit verify failed")

    if keep and not failures:
        again = br.send(
            "WANTED_PERSON_DIFFUSION", to=["FR", "JP"], payload=wanted, precedence="IMMEDIATE"
        )
        wait_status(br, again, lambda s: s["status"] == "HELD_FOR_REVIEW", 30)
        say(
            f"\nthe review desk: {router_url}/console/  (BR's request {again} waits there)\n"
            f"    sign in as {' or '.join(REVIEWERS)}, password {DESK_PASSWORD!r} "
            "(a demo password: never in production)\n"
            "    everything keeps running until Ctrl-C"
        )
        # Ctrl-C reaches the whole process group: the daemons stop by themselves, so stop
        # checking on them as soon as it arrives, then stop everything as usual.
        interrupted = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
        try:
            while not interrupted.wait(1):
                procs.check_alive()
        finally:
            signal.signal(signal.SIGINT, previous)
        say("\nCtrl-C")
    step(
        9, f"done in {time.monotonic() - t0:.0f}s; stopping the gateways, the router and the broker"
    )
    for f in failures:
        say(f"    PROBLEM: {f}")
    return 1 if failures else 0


async def delivered_version(conn: KafkaConnection, topic: str, message_id: str) -> int | None:
    """The envelope version of the record keyed ``message_id`` in ``topic`` (read from
    the start with the admin's credentials; the router keys deliveries by message id)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from i24net.audit.topic import prime

    consumer = AIOKafkaConsumer(
        **conn.client_kwargs(), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        await prime(consumer, [topic])
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    if r.key == message_id.encode() and r.value is not None:
                        return envelope_version(r.value)
            positions = [await consumer.position(tp) for tp in tps]
            if all(p >= ends[tp] for p, tp in zip(positions, tps, strict=True)):
                break
        return None
    finally:
        await consumer.stop()


async def try_read_as(user: str, topic: str, kafka: Net) -> str:
    """What the broker answers when ``user`` tries to read ``topic``."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    assert kafka.credentials is not None and kafka.ca_file is not None
    conn = KafkaConnection(
        kafka.bootstrap,
        "SASL_SSL",
        "SCRAM-SHA-512",
        user,
        (kafka.credentials / f"{user}.password").read_text().strip(),
        kafka.ca_file,
    )
    consumer = AIOKafkaConsumer(topic, group_id=f"i24.gw.{user}", **conn.client_kwargs())
    try:
        await consumer.start()
        await asyncio.wait_for(consumer.getone(), 10)
    except KafkaError as exc:
        return f"refused by the broker: {type(exc).__name__}"
    except TimeoutError:
        return "no error within 10 s (NOT refused)"
    finally:
        await consumer.stop()
    return "read a record (NOT refused)"
