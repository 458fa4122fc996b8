"""The transparency report (i24net.report): figures, verification first, no personal data.

The corpus is an audit chain written the way the router and the review service
write it (pipeline.py ``_entry``, review.py ``_close``), with reviewers' names
as actors and people's names and message ids in the reviewers' notes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest

from i24net.audit import Action, Chain, Entry, RawRecord, digest, encode_reason
from i24net.cli import main
from i24net.errors import UnverifiedAuditError
from i24net.report import (
    Period,
    Table,
    Turnaround,
    build_report,
    publish,
    render_csv,
    render_html,
    render_json,
)
from i24net.report._public import PRIMARY, SECONDARY, publish_table
from i24net.schemas import SchemaStore

STORE = SchemaStore.default()
POLICY = "3f2a9c1d0b7e6a55"
H = 3_600_000


def ms(day: str, hour: float = 0) -> int:
    d = dt.date.fromisoformat(day)
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 1000 + int(
        hour * H
    )


class Corpus:
    """An audit topic with two router chains, records appended in time order."""

    def __init__(self) -> None:
        self.chains = {c: Chain(c, STORE) for c in ("router/a", "router/b")}
        self.records: list[RawRecord] = []

    def add(self, entry: Entry, at_ms: int, chain: str = "router/a") -> None:
        a = self.chains[chain].append(entry, at_ms)
        self.records.append(RawRecord(len(self.records), a.key, a.value, tuple(a.headers)))

    def screened(
        self,
        action: Action,
        mid: str,
        kind: str,
        sender: str,
        at: int,
        rule: str,
        reasons: list[str],
        chain: str = "router/a",
    ) -> None:
        self.add(
            Entry(
                action,
                chain,
                message_id=mid,
                kind=kind,
                sender=sender,
                recipients=("JP", "DE") if action is Action.DELIVERED else (),
                reason=encode_reason(rule, reasons, POLICY),
                envelope_digest=digest(mid.encode()),
            ),
            at,
            chain,
        )

    def deliver(self, mid: str, kind: str, sender: str, at: int) -> None:
        self.screened(Action.DELIVERED, mid, kind, sender, at, "DEFAULT", ["default_deliver"])

    def hold(
        self, mid: str, kind: str, sender: str, at: int, rule: str, reasons: list[str]
    ) -> None:
        self.screened(Action.HELD, mid, kind, sender, at, rule, reasons)

    def reviewed(
        self,
        action: Action,
        mid: str,
        kind: str,
        sender: str,
        at: int,
        reviewer: str,
        reasons: list[str],
    ) -> None:
        self.add(
            Entry(
                action,
                reviewer,
                message_id=mid,
                kind=kind,
                sender=sender,
                reason=encode_reason("REVIEW", reasons),
                envelope_digest=digest(mid.encode()),
            ),
            at,
        )

    def reject(
        self,
        mid: str,
        kind: str,
        sender: str,
        at: int,
        grounds: str,
        note: str,
        reviewer: str = "reviewer.jeanne.moreau",
        proposer: str | None = None,
    ) -> None:
        reasons = [f"grounds:{grounds}", "review:R-0123456789abcdef", "note:" + note]
        if proposer:
            reasons += ["proposal:P-42", f"proposed:{proposer}"]
        self.reviewed(Action.REJECTED, mid, kind, sender, at, reviewer, reasons)

    def approve(self, mid: str, kind: str, sender: str, at: int, note: str) -> None:
        reasons = ["review:R-fedcba9876543210", "reviewer:reviewer.omar.haddad", "note:" + note]
        self.reviewed(Action.APPROVED, mid, kind, sender, at, "reviewer.omar.haddad", reasons)


SECRETS = (
    # people named in reviewers' notes
    "Ahmed Al-Rashid",
    "Rashid",
    "Maria Gonzalez",
    "Gonzalez",
    "Li Wei",
    # reviewers
    "jeanne.moreau",
    "omar.haddad",
    "sven.larsson",
    # message ids, review and proposal ids
    "FR-2026-000123",
    "AR-2026-777001",
    "CN-2026-000042",
    "TR-2026-31337",
    "R-0123456789abcdef",
    "R-fedcba9876543210",
    "P-42",
    # sender country codes are reported by region only
    '"FR"',
    '"AR"',
)


def corpus() -> Corpus:
    """March and April 2026: 10 deliveries, 9 holds, 6 refusals, 2 approvals, ..."""
    c = Corpus()
    for i in range(6):
        c.deliver(f"FR-2026-0001{i:02d}", "POLICE_MESSAGE", "FR", ms("2026-03-02", i))
    for i in range(4):
        c.deliver(f"JP-2026-0002{i:02d}", "DIFFUSION", "JP", ms("2026-04-03", i))
    c.screened(
        Action.DELIVERED,
        "FR-2026-receipt",
        "DELIVERY_RECEIPT",
        "FR",
        ms("2026-03-03"),
        "KIND-RECEIPT",
        ["receipt"],
    )
    political = ["political_offence", "indicator:political:political.nature"]
    holds = [
        ("FR-2026-000123", "RED_NOTICE_REQUEST", "FR", "A3-POLITICAL", political),
        ("AR-2026-777001", "RED_NOTICE_REQUEST", "AR", "A3-POLITICAL", political),
        (
            "CN-2026-000042",
            "RED_NOTICE_REQUEST",
            "CN",
            "A2-REFUGEE-FLED",
            ["refugee_from_country_fled"],
        ),
        ("TR-2026-31337", "WANTED_PERSON_DIFFUSION", "TR", "A3-POLITICAL", political),
        (
            "FR-2026-000124",
            "RED_NOTICE_REQUEST",
            "FR",
            "WANTED-PERSON-RISK",
            ["wanted_person_risk"],
        ),
        (
            "FR-2026-000125",
            "RED_NOTICE_REQUEST",
            "FR",
            "WANTED-PERSON-RISK",
            ["wanted_person_risk"],
        ),
        (
            "AR-2026-777002",
            "RED_NOTICE_REQUEST",
            "AR",
            "WANTED-PERSON-RISK",
            ["wanted_person_risk"],
        ),
        ("DE-2026-000001", "RED_NOTICE_REQUEST", "DE", "A3-MILITARY", ["military_offence"]),
        ("DE-2026-000002", "RED_NOTICE_REQUEST", "DE", "A3-MILITARY", ["military_offence"]),
    ]
    for n, (mid, kind, sender, rule, reasons) in enumerate(holds):
        c.hold(mid, kind, sender, ms("2026-03-10", n), rule, reasons)
    # Decisions: turnarounds 2 h, 5 h, 10 h, 20 h, 30 h, 40 h (rejections), 1 h, 3 h (approvals)
    note = "Ahmed Al-Rashid is a journalist; FR-2026-000123 cites his articles (Maria Gonzalez)"
    c.reject("FR-2026-000123", "RED_NOTICE_REQUEST", "FR", ms("2026-03-10", 0 + 2), "OTHER", note)
    c.reject(
        "AR-2026-777001",
        "RED_NOTICE_REQUEST",
        "AR",
        ms("2026-03-10", 1 + 5),
        "OTHER",
        "Li Wei testified; AR-2026-777001 is a copy of TR-2026-31337",
        reviewer="reviewer.sven.larsson",
        proposer="reviewer.jeanne.moreau",
    )
    c.reject(
        "CN-2026-000042",
        "RED_NOTICE_REQUEST",
        "CN",
        ms("2026-03-10", 2 + 10),
        "REFUGEE_PROTECTION",
        "Li Wei holds refugee status in FR (CN-2026-000042)",
    )
    c.reject(
        "TR-2026-31337",
        "WANTED_PERSON_DIFFUSION",
        "TR",
        ms("2026-03-10", 3 + 20),
        "POLITICAL",
        "opposition MP Maria Gonzalez",
    )
    c.reject(
        "FR-2026-000124",
        "RED_NOTICE_REQUEST",
        "FR",
        ms("2026-03-10", 4 + 30),
        "OTHER",
        "duplicate of FR-2026-000123",
    )
    c.reject(
        "FR-2026-000125",
        "RED_NOTICE_REQUEST",
        "FR",
        ms("2026-03-10", 5 + 40),
        "INSUFFICIENT_DATA",
        "no facts about Ahmed Al-Rashid",
    )
    c.approve("AR-2026-777002", "RED_NOTICE_REQUEST", "AR", ms("2026-03-10", 6 + 1), "ok, Li Wei")
    c.approve(
        "DE-2026-000001", "RED_NOTICE_REQUEST", "DE", ms("2026-03-10", 7 + 3), "fraud, Gonzalez"
    )
    # the screen refuses one; one envelope fails verification (no rule); one hold expires
    c.screened(
        Action.REFUSED,
        "FR-2026-000126",
        "POLICE_MESSAGE",
        "FR",
        ms("2026-04-05"),
        "KIND-GS-ONLY",
        ["kind_reserved_to_gs"],
        chain="router/b",
    )
    c.add(
        Entry(
            Action.REFUSED,
            "router/b",
            message_id="FR-2026-forged",
            sender="FR",
            reason=encode_reason(None, ["bad_signature"]),
        ),
        ms("2026-04-06"),
        "router/b",
    )
    c.reviewed(
        Action.EXPIRED,
        "DE-2026-000002",
        "RED_NOTICE_REQUEST",
        "DE",
        ms("2026-04-20"),
        "reviewer.sven.larsson",
        ["expired", "review:R-0123456789abcdef"],
    )
    # outside the period: must not count
    c.deliver("FR-2026-000999", "POLICE_MESSAGE", "FR", ms("2026-05-01", 1))
    return c


MARCH_APRIL = Period(dt.date(2026, 3, 1), dt.date(2026, 4, 30))
NOW = ms("2026-05-02")


def row(report_table: Table, label: str) -> dict[str, int]:
    cells = dict(report_table.rows)[label]
    return dict(zip(report_table.columns, cells, strict=True))


def test_decisions_by_outcome_kind_region_month_and_rule() -> None:
    r = build_report(corpus().records, STORE, MARCH_APRIL, NOW)
    assert r.totals == {
        "delivered": 10,
        "held": 9,
        "approved": 2,
        "rejected": 6,
        "refused_by_screen": 1,
        "refused_unverified": 1,
        "expired": 1,
    }
    assert [label for label, _ in r.table("by_month").rows] == ["2026-03", "2026-04"]
    assert row(r.table("by_month"), "2026-04")["delivered"] == 4
    assert row(r.table("by_kind"), "RED_NOTICE_REQUEST") == {
        "delivered": 0,
        "held": 8,
        "approved": 2,
        "rejected": 5,
        "refused_by_screen": 0,
        "refused_unverified": 0,
        "expired": 1,
    }
    # FR and DE are EUROPE, AR AMERICAS, CN and JP ASIA-SOUTH-PACIFIC, TR EUROPE
    regions = {label: sum(cells) for label, cells in r.table("by_region").rows}
    assert regions == {"AMERICAS": 4, "ASIA-SOUTH-PACIFIC": 6, "EUROPE": 20}
    assert row(r.table("by_rule"), "A3-POLITICAL")["held"] == 3
    assert row(r.table("by_rule"), "DEFAULT")["delivered"] == 10
    assert row(r.table("by_indicator"), "political")["held"] == 3
    assert dict(r.table("by_article").rows) == {
        "Article 3": (1,),
        "Article 2": (0,),
        "Refugee policy (Articles 2 and 3)": (1,),
        "Rules on the Processing of Data": (1,),
        "Other": (3,),
    }
    assert r.four_eyes_decisions == 1
    assert r.policies == ((POLICY, 20),)  # 10 delivered, 9 held, 1 refused by the screen


def test_turnaround_percentiles_from_hold_to_decision() -> None:
    r = build_report(corpus().records, STORE, MARCH_APRIL, NOW)
    every = r.turnaround[0]
    assert every.label == "all"
    # 6 rejections, 2 approvals and the expiry (DE-2026-000002 held 2026-03-10 08:00)
    expiry = ms("2026-04-20") - ms("2026-03-10", 8)
    assert sorted(every.durations_ms) == sorted(
        [2 * H, 5 * H, 10 * H, 20 * H, 30 * H, 40 * H, H, 3 * H, expiry]
    )
    assert every.percentile(50) == 10 * H
    # nearest rank of 9 values: p90 is the 9th (ceil 8.1), so is p99
    assert every.percentile(90) == expiry
    assert every.percentile(99) == expiry
    assert Turnaround("x", tuple(range(1, 101))).percentile(90) == 90
    by_kind = {t.label: t for t in r.turnaround[1:]}
    assert by_kind["WANTED_PERSON_DIFFUSION"].durations_ms == (20 * H,)


def test_other_is_the_largest_bucket_and_the_report_says_why() -> None:
    r = build_report(corpus().records, STORE, MARCH_APRIL, NOW)
    assert r.other.refusals == 3 and r.other.largest
    assert dict(r.other.by_hold_rule.rows) == {"A3-POLITICAL": (2,), "WANTED-PERSON-RISK": (1,)}
    p = publish(r)
    assert p.other_statement.startswith("OTHER is the largest grounds bucket in this period")
    for text in (render_html(r), render_json(r), render_csv(r)):
        assert "OTHER is the largest grounds bucket" in text
        assert "A3-POLITICAL" in text


def test_other_not_the_largest_is_still_explained() -> None:
    c = corpus()
    for i in range(4):
        mid = f"RU-2026-1000{i}"
        c.hold(
            mid,
            "RED_NOTICE_REQUEST",
            "RU",
            ms("2026-04-01", i),
            "A3-POLITICAL",
            ["political_offence"],
        )
        c.reject(mid, "RED_NOTICE_REQUEST", "RU", ms("2026-04-02", i), "POLITICAL", "x" * 20)
    r = build_report(c.records, STORE, MARCH_APRIL, NOW)
    assert not r.other.largest
    s = publish(r).other_statement
    assert "were filed under OTHER grounds" in s and "largest" not in s


def every_format(report: object) -> dict[str, str]:
    from i24net.report import TransparencyReport

    assert isinstance(report, TransparencyReport)
    return {
        "html": render_html(report),
        "json": render_json(report),
        "csv": render_csv(report),
    }


def test_no_personal_data_and_no_message_ids_in_any_format() -> None:
    c = corpus()
    # Hostile values where an identifier belongs: a rule that is a message id, a reason code
    # that is a reviewer, an unknown grounds symbol carrying a name.
    c.hold(
        "XX-1",
        "RED_NOTICE_REQUEST",
        "FR",
        ms("2026-04-07"),
        "FR-2026-000123",
        ["political_offence"],
    )
    c.hold(
        "XX-2",
        "RED_NOTICE_REQUEST",
        "FR",
        ms("2026-04-07"),
        "A3-POLITICAL",
        ["reviewer.omar.haddad"],
    )
    c.reject("XX-2", "RED_NOTICE_REQUEST", "FR", ms("2026-04-08"), "Maria Gonzalez", "z" * 20)
    r = build_report(c.records, STORE, MARCH_APRIL, NOW)
    texts = every_format(r)
    for fmt, text in texts.items():
        # Charts are drawn from the published tables; their base64 could hold any letters.
        text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:", text)
        low = text.lower()
        for secret in SECRETS:
            assert secret.lower() not in low, f"{secret!r} in the {fmt} report"
        # no message id of the corpus at all, whatever its form
        assert not re.search(r"\b[A-Z]{2}-2026-\d{5,6}\b", text), fmt
        assert "XX-1" not in text and "XX-2" not in text
    assert "(unrecognised)" in texts["json"]
    # sender codes appear in no CSV field (regions only)
    fields = {v for row in csv.reader(io.StringIO(texts["csv"])) for v in row}
    assert not fields & {"FR", "AR", "CN", "TR", "DE", "JP"}


def test_the_secrets_are_in_the_corpus() -> None:
    """The test above would pass vacuously if the corpus carried none of the strings."""
    blob = b"".join(r.value or b"" for r in corpus().records).lower()
    for secret in SECRETS:
        if secret.startswith('"'):
            continue
        assert secret.lower().encode() in blob, secret


def test_a_broken_chain_is_refused_with_a_clear_error() -> None:
    records = corpus().records
    _, rec = STORE.decode_single(records[7].value or b"")
    rec["sender"] = "DE"
    forged = replace(records[7], value=STORE.encode_single("net.i24.AuditRecord", rec))
    with pytest.raises(UnverifiedAuditError, match=r"failed verification .*EDIT: chain router/a"):
        build_report([*records[:7], forged, *records[8:]], STORE, MARCH_APRIL, NOW)
    with pytest.raises(UnverifiedAuditError, match="GAP"):
        build_report([*records[:7], *records[8:]], STORE, MARCH_APRIL, NOW)
    # a removed tail is only visible against a recorded head
    r = build_report(records, STORE, MARCH_APRIL, NOW)
    length, head = next((n, h) for c, n, h in r.audit.chains if c == "router/a")
    tail = [x for x in records if x.key == b"router/a"][-1]
    with pytest.raises(UnverifiedAuditError, match="TRUNCATED"):
        build_report(
            [x for x in records if x is not tail],
            STORE,
            MARCH_APRIL,
            NOW,
            expect={"router/a": (length, bytes.fromhex(head))},
        )


def test_small_cells_are_withheld_and_cannot_be_recovered_from_totals() -> None:
    t = Table(
        "t", "t", "row", ("a", "b", "c"), (("r1", (2, 7, 0)), ("r2", (5, 9, 4)), ("r3", (0, 0, 12)))
    )
    p = publish_table(t)
    cells = {label: cs for label, cs, _ in p.rows}
    assert cells["r1"][0] == PRIMARY and cells["r1"][2] == 0
    assert cells["r3"] == (0, 0, 12)
    assert_no_single_withheld(p)
    assert p.totals[1] == 39


def assert_no_single_withheld(p: object) -> None:
    from i24net.report import PublicTable

    assert isinstance(p, PublicTable)
    grid = [[*cs, total] for _, cs, total in p.rows] + [[*p.totals[0], p.totals[1]]]
    lines = grid + [list(col) for col in zip(*grid, strict=True)]
    for line in lines:
        hidden = [c for c in line if isinstance(c, str)]
        assert len(hidden) != 1, line


def test_suppression_holds_on_random_tables() -> None:
    rnd = random.Random(14)
    for _ in range(300):
        nrows, ncols = rnd.randint(1, 6), rnd.randint(1, 5)
        rows = tuple(
            (f"r{i}", tuple(rnd.choice((0, 0, 1, 2, 3, 5, 8, 20)) for _ in range(ncols)))
            for i in range(nrows)
        )
        t = Table("t", "t", "row", tuple(f"c{j}" for j in range(ncols)), rows)
        p = publish_table(t)
        assert_no_single_withheld(p)
        for (_, exact), (_, shown, _) in zip(t.rows, p.rows, strict=True):
            for v, s in zip(exact, shown, strict=True):
                if 0 < v < 3:
                    assert s == PRIMARY
                elif isinstance(s, int):
                    assert s == v
                else:
                    assert s == SECONDARY


def test_html_is_one_file_with_charts() -> None:
    html = render_html(build_report(corpus().records, STORE, MARCH_APRIL, NOW))
    assert html.count('src="data:image/png;base64,') == 3
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)
    assert "<script" not in html


def test_the_three_formats_agree() -> None:
    r = build_report(corpus().records, STORE, MARCH_APRIL, NOW)
    j = json.loads(render_json(r))
    assert j["period"] == {"from": "2026-03-01", "to": "2026-04-30"}
    assert j["totals"]["total"] == 30
    assert j["tables"]["by_kind"]["column_totals"]["rejected"] == 6
    assert j["turnaround"]["WANTED_PERSON_DIFFUSION"] == {
        "n": "<3",
        "p50_s": None,
        "p90_s": None,
        "p99_s": None,
    }
    rows = list(csv.DictReader(io.StringIO(render_csv(r))))
    got = {(x["table"], x["row"], x["column"]): x["value"] for x in rows}
    assert got[("by_kind", "total", "rejected")] == "6"
    assert got[("refusals_by_grounds", "RED_NOTICE_REQUEST", "OTHER")] == "3"
    assert j["tables"]["refusals_by_grounds"]["rows"][0]["cells"]["OTHER"] == 3
    assert got[("turnaround", "all", "p50_s")] == str(10 * H / 1000)


def test_period_bounds() -> None:
    one_day = Period(dt.date(2026, 4, 6), dt.date(2026, 4, 6))
    r = build_report(corpus().records, STORE, one_day, NOW)
    assert r.totals["refused_unverified"] == 1 and sum(r.totals.values()) == 1
    with pytest.raises(ValueError, match="ends"):
        Period(dt.date(2026, 4, 6), dt.date(2026, 4, 5))


def test_cli_writes_the_report_and_refuses_a_broken_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import i24net.report as report_pkg

    records = corpus().records

    async def fake_read(conn: object, topic: str) -> list[RawRecord]:
        assert topic == "i24.audit"
        return records

    monkeypatch.setattr(report_pkg, "read_audit", fake_read)
    out = tmp_path / "report.json"
    args = ["report", "transparency", "--from", "2026-03-01", "--to", "2026-04-30"]
    rc = main([*args, "--bootstrap", "127.0.0.1:9", "--format", "json", "--out", str(out)])
    assert rc == 0
    assert json.loads(out.read_text())["totals"]["total"] == 30

    records = records[:3] + records[4:]
    bad = tmp_path / "bad.html"
    rc = main([*args, "--bootstrap", "127.0.0.1:9", "--out", str(bad)])
    assert rc == 2
    assert "failed verification" in capsys.readouterr().err
    assert not bad.exists()
    assert main([*args[:3], "2026-13-01", *args[4:], "--bootstrap", "x:1"]) == 2
    assert "--from '2026-13-01': expected a date" in capsys.readouterr().err


def test_audit_verify_and_the_report_read_the_same_source_and_recorded_heads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both commands take the topic and the recorded heads from the same options
    (``i24net.cli.audit``): the router's topic name from ``--config``, a removed tail
    refused against ``--expect``, a malformed ``--expect`` a usage error."""
    import i24net.report as report_pkg
    from i24net.router.testing import settings_toml

    records = corpus().records
    read: list[str] = []

    async def fake_read(conn: object, topic: str) -> list[RawRecord]:
        read.append(topic)
        return [r for r in records if r is not tail]

    monkeypatch.setattr(report_pkg, "read_audit", fake_read)
    r = build_report(records, STORE, MARCH_APRIL, NOW)
    length, head = next((n, h) for c, n, h in r.audit.chains if c == "router/a")
    tail = [x for x in records if x.key == b"router/a"][-1]
    expect = ["--expect", f"router/a={length}:{head}"]
    cfg = tmp_path / "router.toml"
    cfg.write_text(
        settings_toml(
            instance="a",
            bootstrap="127.0.0.1:9",
            prefix="p.",
            keys_dir=tmp_path / "keys",
            state_dir=tmp_path / "state",
            policy=tmp_path / "policy.toml",
        ),
        encoding="utf-8",
    )
    verify = ["audit", "verify", "--no-heads", "--config", str(cfg)]
    transparency = ["report", "transparency", "--from", "2026-03-01", "--to", "2026-04-30"]
    out = tmp_path / "r.json"
    assert main([*verify]) == 0  # without the recorded head the shorter chain passes
    assert "OK: chain intact" in capsys.readouterr().out
    assert main([*verify, *expect]) == 1
    assert "TRUNCATED" in capsys.readouterr().out
    assert main([*transparency, "--config", str(cfg), *expect, "--out", str(out)]) == 2
    assert "TRUNCATED" in capsys.readouterr().err and not out.exists()
    assert read == ["p.i24.audit"] * 3
    for command in (verify, [*transparency, "--bootstrap", "x:1"]):
        assert main([*command, "--expect", "router/a=three:00"]) == 2
        assert "expected CHAIN=LENGTH:HEXHASH" in capsys.readouterr().err
        assert main([*command[:-2]]) == 2  # neither --config nor --bootstrap
        assert "give --config or --bootstrap" in capsys.readouterr().err


class FakeService:
    """What console_report uses of the router's ReviewService."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.app = SimpleNamespace(conn=object(), store=STORE)
        self.settings = SimpleNamespace(topics=SimpleNamespace(audit="p.i24.audit"))

    def now(self) -> int:
        return NOW


async def test_console_fragment(monkeypatch: pytest.MonkeyPatch) -> None:
    import i24net.report as report_pkg
    from i24net.report import console_report

    records = corpus().records

    async def fake_read(conn: object, topic: str) -> list[RawRecord]:
        assert topic == "p.i24.audit"
        return records

    monkeypatch.setattr(report_pkg, "read_audit", fake_read)
    html = str(await console_report(FakeService(), {"from": "2026-03-01", "to": "2026-04-30"}))
    # embeddable under the console's CSP: no document, no inline style or script
    for banned in ("<html", "<style", "<script", "style="):
        assert banned not in html
    assert html.count('src="data:image/png;base64,') == 3
    assert 'name="from" value="2026-03-01"' in html
    assert "OTHER is the largest grounds bucket" in html
    assert "Ahmed" not in html and "FR-2026-000123" not in html
    # by default, the year so far at the router's clock
    html = str(await console_report(FakeService(), {}))
    assert "from 2026-01-01" in html and "to 2026-05-02" in html
    # a bad period and a broken chain are said, not turned into figures
    html = str(await console_report(FakeService(), {"from": "2026-05-01", "to": "<b>"}))
    assert 'class="report-error"' in html and "&lt;b&gt;" in html and "<b>" not in html
    records = records[:5] + records[6:]
    html = str(await console_report(FakeService(), {}))
    assert 'class="report-error"' in html and "failed verification" in html
    assert "Decisions by outcome" not in html


def test_the_other_statement_reveals_no_withheld_count() -> None:
    """OTHER's count in the sentence is the grounds table's published cell: with one
    POLITICAL refusal (<3) and five OTHER ones of the same kind, the table withholds
    OTHER too (x: 6 - 1 would give it away), and so must the sentence."""
    c = Corpus()
    for i in range(6):
        mid = f"M{i}"
        c.hold(mid, "RED_NOTICE_REQUEST", "FR", ms("2026-03-01", i), "A3-POLITICAL", ["p"])
        grounds = "POLITICAL" if i == 0 else "OTHER"
        c.reject(mid, "RED_NOTICE_REQUEST", "FR", ms("2026-03-02", i), grounds, "n" * 20)
    r = build_report(c.records, STORE, MARCH_APRIL, NOW)
    assert r.other.refusals == 5 and r.other.largest
    p = publish(r)
    table = next(t for t in p.tables if t.name == "refusals_by_grounds")
    assert table.totals[0][table.columns.index("OTHER")] == SECONDARY
    assert "5 of" not in p.other_statement
    assert p.other_statement.startswith(
        "OTHER is the largest grounds bucket in this period: a number withheld"
    )
