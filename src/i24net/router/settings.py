"""The router's settings file (TOML), validated by pydantic; read once at the entry point."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from i24net.errors import ConfigError
from i24net.kafka.settings import KafkaSettings
from i24net.router.deadlines import ReviewDeadlines


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topics(_S):
    """Topic names; ``prefix`` is prepended to all of them (tests use a unique one)."""

    prefix: str = ""

    def out(self, station: str) -> str:
        """The per-station topic of the old layout (``i24.out.<station>``), which routers
        drain while ``[router] legacy_out_topics`` is on (docs/topics.md, migration)."""
        return f"{self.prefix}i24.out.{station}"

    def inbox(self, station: str) -> str:
        return f"{self.prefix}i24.in.{station}"

    @property
    def ingress(self) -> str:
        """The shared ingress topic every station's gateway writes to, partitioned by
        sender (docs/topics.md): one subscription of a dozen partitions, not one per
        station (aiokafka lists every assigned partition in every fetch)."""
        return f"{self.prefix}i24.out"

    @property
    def out_prefix(self) -> str:
        return f"{self.prefix}i24.out."

    def out_pattern(self, *, legacy: bool) -> str:
        """The router's subscription: the ingress topic, and with ``legacy`` every
        per-station ``i24.out.<station>`` topic too."""
        ingress = re.escape(self.ingress)
        return f"^{ingress}(\\..+)?$" if legacy else f"^{ingress}$"

    @property
    def quarantine(self) -> str:
        return f"{self.prefix}i24.quarantine"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}i24.dlq"

    @property
    def audit(self) -> str:
        return f"{self.prefix}i24.audit"

    @property
    def seen(self) -> str:
        """The routers' replay window changelog (written in each routing transaction)."""
        return f"{self.prefix}i24.router.seen"

    @property
    def directory(self) -> str:
        return f"{self.prefix}i24.directory"


class RouterSection(_S):
    instance: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    """Stable across restarts: the transactional id is ``i24.router.<instance>``,
    so a restarted instance fences its zombie; the audit chain is ``router/<instance>``."""
    group: str = "i24.router"
    metadata_max_age_ms: Annotated[int, Field(ge=100)] = 5000
    ingress_partitions: Annotated[int, Field(ge=1, le=1000)] = 12
    """Partitions of the ingress topic when the router creates it (tests, demo; ``i24net
    provision`` creates it in production). The router's instances share them."""
    legacy_out_topics: bool = True
    """Drain the per-station ``i24.out.<station>`` topics as well as the ingress topic
    (migration: on while any gateway still writes them; off once they are drained, so
    every fetch lists a dozen partitions instead of hundreds)."""
    batch_max_records: Annotated[int, Field(ge=1, le=10_000)] = 200
    poll_timeout_ms: Annotated[int, Field(ge=1)] = 100
    batch_linger_ms: Annotated[int, Field(ge=0)] = 3
    """A transaction commits this long after its first record was fetched, or as soon as
    ``batch_max_records`` are queued or a FLASH record is (whatever the number of active
    senders): commits cost a few round trips each, so they carry many records under load.
    Every message waits for it once at the router: 10 ms was a third of the end-to-end p50
    at 40 msgs/s (docs/router.md, "Where a message's latency goes"); records arriving during
    a commit queue up anyway, so a short window loses little batching."""
    batch_budget_ms: Annotated[int, Field(ge=1)] = 250
    """Stop deciding a batch (and commit it) once this much time was spent on it."""
    batch_shared_budget_ms: Annotated[int, Field(ge=1)] = 20
    """The budget while two or more senders are active: a quiet station's message then
    waits behind at most one short transaction, whatever another station floods."""
    batch_waking_budget_ms: Annotated[int, Field(ge=1)] = 8
    """A batch holding a waking lane's records (a lane sending under ``batch_waking_rate``
    while another keeps a backlog: a quiet station during a flood) commits once those are
    decided and this much time was spent: the quiet message waits for a few records of the
    flood and one commit, not for a whole ``batch_shared_budget_ms`` (router/scheduler.py)."""
    batch_waking_rate: Annotated[float, Field(gt=0)] = 50.0
    """Records/s under which a lane (an ingress partition) counts as quiet; a busier lane's
    records ride in full batches (receipts during a burst: transactions stay large)."""
    batch_poll_ms: Annotated[int, Field(ge=1)] = 2
    """While a batch is decided, look this often for records of the other lanes (a waking
    lane's records join the batch in progress, which then commits as above)."""
    active_window_ms: Annotated[int, Field(ge=1)] = 2000
    """A sender counts as active for this long after its last fetched record."""
    buffer_per_partition: Annotated[int, Field(ge=1)] = 2000
    lag_interval_ms: Annotated[int, Field(ge=100)] = 5000
    """How often ``i24net_router_consumer_lag_records`` is updated (from the consumer's
    cached high watermarks: no request; every assigned partition is visited)."""
    notice_lifetime_ms: Annotated[int, Field(ge=60_000)] = 3 * 24 * 3_600_000
    directory_refresh_ms: Annotated[int, Field(ge=100)] = 5000
    session_timeout_ms: Annotated[int, Field(ge=6000)] = 10_000
    audit_verify_interval_ms: Annotated[int, Field(ge=0)] = 300_000
    """Walk ``i24.audit`` and verify every chain this often (``i24net_audit_chain_problems``;
    this instance's own chain is also checked against its head, catching truncation);
    0 turns it off. Each run reads the whole topic."""
    transaction_timeout_ms: Annotated[int, Field(ge=1000)] = 60_000
    """An instance killed mid-transaction blocks read_committed readers of the
    topics it wrote until it restarts (fencing aborts at once) or this passes."""


class KeysSection(_S):
    gs_secret: Path
    """The GS station secrets (signs attestations and status notices, unwraps)."""
    previous: list[Path] = []
    """Older GS key files kept during a rotation; destroyed (overwritten, removed, audited
    ``KEY_DESTROYED``) ``previous_hold_s`` after the current key's ``valid_from_ms``."""
    previous_hold_s: Annotated[float, Field(ge=0)] | None = None
    """How long previous GS keys are kept after the rotation; None (the default): the
    longest of the ``i24.out`` retention, the longest review deadline and the ``i24.dlq``
    retention (30 days with the shipped settings: router/keyring.py)."""
    root_public: Path
    """The pinned GS root public key that signs the directory."""
    roots: list[Path] = []
    """Further trusted GS root public key files (a set by key id, each may carry
    ``valid_from_ms``/``valid_until_ms``); a root rotation on the directory topic extends
    the set by itself (docs/security.md, "Root rotation")."""


class StateSection(_S):
    dir: Path
    """Holds ``replay-<instance>.sqlite3``, the seen-id window."""


class PolicySection(_S):
    file: Path
    watch_interval_ms: Annotated[int, Field(ge=0)] = 2000
    """Look at the file this often and reload it when it changed (SIGHUP reloads at
    once); 0 turns the watch off. A file that does not load leaves the policy in force."""


class HttpSection(_S):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8470


class ReviewSection(_S):
    enabled: bool = True
    """Serve the review API from this instance (run it on one instance only)."""
    tokens_file: Path | None = None
    """TOML ``[tokens]`` table: BLAKE2b-256 hex of a bearer token -> reviewer identity."""
    reviewers_file: Path | None = None
    """TOML ``[reviewers.<identity>]`` tables with an argon2 ``password`` hash and a
    ``language`` (``i24net review reviewers add``): the console's sign-in. Mode 0600."""
    four_eyes_refusals: bool = True
    """A refusal takes effect only when a second, different reviewer confirms it."""
    four_eyes_red_notice_approvals: bool = False
    """The same for approving a held ``RED_NOTICE_REQUEST``."""
    claim_timeout_ms: Annotated[int, Field(ge=10_000)] = 300_000
    """A decision claims its hold on ``i24.review`` before it commits; a claim whose
    instance died before committing stops blocking the hold after this long."""
    console: bool = True
    """Serve the reviewers' web console under ``/console/`` (docs/review.md)."""
    console_language: Literal["ar", "en", "es", "fr"] = "en"
    """The sign-in page's language, and a reviewer's when their entry names none."""
    session_ttl_ms: Annotated[int, Field(ge=60_000)] = 8 * 3_600_000
    """A console session ends this long after sign-in (sessions live in the instance's
    memory: a restart signs everyone out)."""
    cookie_secure: bool = False
    """Mark the session cookie ``Secure``: set it when the console is served over TLS
    (directly or behind a TLS-terminating proxy)."""
    signin_delay_ms: Annotated[int, Field(ge=0, le=60_000)] = 1000
    """A failed sign-in is answered after this delay, doubled for each further failure
    of the same name (up to 30 s): guessing passwords costs time."""
    deadlines: ReviewDeadlines = ReviewDeadlines()
    """``[review.deadlines]``: how long a hold may wait, per precedence and kind
    (router/deadlines.py); the queue sorts by it and ``i24net_review_overdue`` counts
    the holds past it."""


class TestingSection(_S):
    """Fault injection for the crash tests and the soak; never set in production."""

    exit_before_commit_after_batches: Annotated[int, Field(ge=0)] = 0
    """After this many committed transactions, exit the process (status 137, as kill -9
    leaves it) inside the next one, once its records are written to the broker and
    before its commit. 0 (the default) turns it off."""


class RouterSettings(_S):
    router: RouterSection
    kafka: KafkaSettings
    topics: Topics = Topics()
    keys: KeysSection
    state: StateSection
    policy: PolicySection
    http: HttpSection = HttpSection()
    review: ReviewSection = ReviewSection()
    testing: TestingSection = TestingSection()

    @property
    def transactional_id(self) -> str:
        return f"i24.router.{self.router.instance}"

    @property
    def chain_id(self) -> str:
        return f"router/{self.router.instance}"


def load_settings(path: Path) -> RouterSettings:
    """Read and validate ``router.toml``; relative paths are resolved from its folder."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    try:
        s = RouterSettings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path} is invalid: {problems}") from exc
    base = path.resolve().parent

    def rel(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    return s.model_copy(
        update={
            "keys": s.keys.model_copy(
                update={
                    "gs_secret": rel(s.keys.gs_secret),
                    "previous": [rel(p) for p in s.keys.previous],
                    "root_public": rel(s.keys.root_public),
                    "roots": [rel(p) for p in s.keys.roots],
                }
            ),
            "state": StateSection(dir=rel(s.state.dir)),
            "policy": s.policy.model_copy(update={"file": rel(s.policy.file)}),
            "review": s.review.model_copy(
                update={
                    "tokens_file": rel(s.review.tokens_file) if s.review.tokens_file else None,
                    "reviewers_file": (
                        rel(s.review.reviewers_file) if s.review.reviewers_file else None
                    ),
                }
            ),
        }
    )
