"""Small-cell suppression: what of a :class:`TransparencyReport` may be published.

The report holds no names or ids, but a cell of 1 or 2 can still point at one
case that people know of ("the one Red Notice request from that region
refused on religious grounds in March"). So:

* **primary**: a count of 1 or 2 is shown as ``<3`` (zero is shown: that
  nothing happened identifies no one);
* **complementary**: every table is published with row and column totals, and
  a line (row or column with its total) with exactly one withheld cell would
  let a reader subtract it back out, so one more cell of that line, the
  smallest non-zero one, is withheld too and shown as ``x``; repeated until no
  line has a single withheld cell;
* turnaround percentiles over fewer than 3 decisions are withheld (``n`` is
  then ``<3``).

Totals across tables are the same numbers suppressed the same way, so tables
agree with each other. Not addressed: a reader combining two *different*
breakdowns of the same decisions (kind and region, say) can in rare cases narrow a
withheld cell; the tables are one-dimensional (one category by outcome) to keep
that small.
"""

from __future__ import annotations

from dataclasses import dataclass

from i24net.report._build import Table, TransparencyReport, Turnaround

SMALL_CELL = 3
"""Counts from 1 to ``SMALL_CELL - 1`` are never published."""
PRIMARY = f"<{SMALL_CELL}"
SECONDARY = "x"

Cell = int | str


@dataclass(frozen=True, slots=True)
class PublicTable:
    name: str
    title: str
    row_label: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Cell, ...], Cell], ...]
    """(label, cells, row total)."""
    totals: tuple[tuple[Cell, ...], Cell]
    """(column totals, grand total)."""

    @property
    def suppressed(self) -> bool:
        cells = [c for _, cs, t in self.rows for c in (*cs, t)]
        cells += [*self.totals[0], self.totals[1]]
        return any(isinstance(c, str) for c in cells)


@dataclass(frozen=True, slots=True)
class PublicTurnaround:
    label: str
    n: Cell
    p50_ms: int | None
    p90_ms: int | None
    p99_ms: int | None


def publish_table(t: Table) -> PublicTable:
    """``t`` with small cells withheld (see the module docstring)."""
    nrows, ncols = len(t.rows), len(t.columns)
    # The grid with totals: rows 0..nrows-1 and the totals row nrows; columns likewise.
    grid = [[*cells, sum(cells)] for _, cells in t.rows]
    grid.append([sum(r[j] for r in grid) for j in range(ncols + 1)])
    withheld: dict[tuple[int, int], str] = {}
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if 0 < v < SMALL_CELL:
                withheld[(i, j)] = PRIMARY
    lines = [[(i, j) for j in range(ncols + 1)] for i in range(nrows + 1)]
    lines += [[(i, j) for i in range(nrows + 1)] for j in range(ncols + 1)]
    changed = True
    while changed:
        changed = False
        for line in lines:
            hidden = [p for p in line if p in withheld]
            if len(hidden) != 1:
                continue
            # Prefer an inner cell over a total, then the smallest count.
            candidates = [p for p in line if p not in withheld and grid[p[0]][p[1]] > 0]
            if not candidates:
                continue  # the others are all zero: the line's total is the hidden cell
            inner = [p for p in candidates if p[0] < nrows and p[1] < ncols] or candidates
            pick = min(inner, key=lambda p: (grid[p[0]][p[1]], p))
            withheld[pick] = SECONDARY
            changed = True

    def cell(i: int, j: int) -> Cell:
        return withheld.get((i, j), grid[i][j])

    return PublicTable(
        t.name,
        t.title,
        t.row_label,
        t.columns,
        tuple(
            (label, tuple(cell(i, j) for j in range(ncols)), cell(i, ncols))
            for i, (label, _) in enumerate(t.rows)
        ),
        (tuple(cell(nrows, j) for j in range(ncols)), cell(nrows, ncols)),
    )


def publish_turnaround(t: Turnaround) -> PublicTurnaround:
    if t.n < SMALL_CELL:
        return PublicTurnaround(t.label, PRIMARY if t.n else 0, None, None, None)
    return PublicTurnaround(t.label, t.n, t.percentile(50), t.percentile(90), t.percentile(99))


def publish_count(n: int) -> Cell:
    return PRIMARY if 0 < n < SMALL_CELL else n


@dataclass(frozen=True, slots=True)
class PublicReport:
    """Everything the three formats print, and nothing else."""

    source: TransparencyReport
    totals: PublicTable
    tables: tuple[PublicTable, ...]
    turnaround: tuple[PublicTurnaround, ...]
    other_statement: str
    other_tables: tuple[PublicTable, ...]
    four_eyes: Cell
    policies: PublicTable


def publish(r: TransparencyReport) -> PublicReport:
    from i24net.report._build import OUTCOME_TITLES, OUTCOMES

    totals = publish_table(
        Table(
            "totals",
            "Decisions by outcome",
            "outcome",
            ("decisions",),
            tuple((OUTCOME_TITLES[o], (r.totals[o],)) for o in OUTCOMES),
        )
    )
    policies = publish_table(
        Table(
            "policies",
            "Screening policies in force (digest of the policy file), by screened decisions",
            "policy digest",
            ("decisions",),
            tuple((d, (n,)) for d, n in r.policies),
        )
    )
    tables = tuple(publish_table(t) for t in r.tables)
    grounds = next(t for t in tables if t.name == "refusals_by_grounds")
    return PublicReport(
        source=r,
        totals=totals,
        tables=tables,
        turnaround=tuple(publish_turnaround(t) for t in r.turnaround),
        other_statement=other_statement(r, grounds),
        other_tables=(
            publish_table(r.other.by_hold_rule),
            publish_table(r.other.by_hold_reason),
        ),
        four_eyes=publish_count(r.four_eyes_decisions),
        policies=policies,
    )


def other_statement(r: TransparencyReport, grounds: PublicTable) -> str:
    """What the report says about refusals filed under OTHER: never silence when it is
    the largest bucket. The counts are the published cells of ``grounds`` (the
    refusals-by-grounds table), so the sentence reveals nothing the table withholds."""
    o = r.other
    if o.refusals == 0:
        return "No refusal in the period was filed under OTHER grounds."
    col = grounds.columns.index("OTHER")

    def said(c: Cell) -> str:
        return f"a number withheld to protect small cells ({c})" if c == SECONDARY else str(c)

    share = f"{said(grounds.totals[0][col])} of {said(grounds.totals[1])} refusals"
    why = (
        "Each OTHER refusal carries the reviewer's written reason (at least 20 characters, "
        "sent to the requesting bureau); that text is not published and not classified here, "
        "because it may name people. What the audit chain records in enumerated form is the "
        "screen rule and reason code that held each of these messages, counted in the two "
        "tables below."
    )
    if not o.largest:
        return f"{share} were filed under OTHER grounds. {why}"
    return (
        f"OTHER is the largest grounds bucket in this period: {share}. The enumerated "
        f"grounds (Article 3 political, military, religious, racial; Article 2 human rights; "
        f"refugee protection; insufficient data) did not fit these decisions in the reviewers' "
        f"judgement. {why} A large OTHER bucket is a finding in itself: the grounds list or "
        f"the reviewers' guidance may need a new category."
    )
