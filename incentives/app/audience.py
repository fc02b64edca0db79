"""Staging a promotion's audience in Postgres, where its batches read it by position.

Input staging, not value: no lot or ledger row is written here (only activities write those). The
client stages because it runs where the file is; a worker on another machine may not see it. The
ids stream through COPY and are never held whole in memory. One transaction: a load is staged
entirely or not at all, and the same ids staged again return the load already staged.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

from incentives.adapters.db import Connection, Pool
from incentives.domain.errors import PromotionConflict
from incentives.domain.promotions import AudienceLoad


class _Checksum:
    """The SHA-256 of the ids in order, taken as they pass to COPY as records (line number, id)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def _record(self, line: int, customer_id: str) -> tuple[int, str]:
        self._hash.update(customer_id.encode())
        self._hash.update(b"\n")
        return line, customer_id

    @property
    def checksum(self) -> str:
        return self._hash.hexdigest()


class _Checksummed(_Checksum):
    """Ids read from a file."""

    def __init__(self, ids: Iterable[str]) -> None:
        super().__init__()
        self._ids = ids

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for line, customer_id in enumerate(self._ids, start=1):
            yield self._record(line, customer_id)


class _ChecksummedStream(_Checksum):
    """Ids that arrive while they are copied (an upload streaming in): COPY awaits each."""

    def __init__(self, ids: AsyncIterable[str]) -> None:
        super().__init__()
        self._ids = ids

    async def __aiter__(self) -> AsyncIterator[tuple[int, str]]:
        line = 0
        async for customer_id in self._ids:
            line += 1
            yield self._record(line, customer_id)


async def stage_audience(
    pool: Pool,
    promotion_id: str,
    ids: Iterable[str] | AsyncIterable[str],
    *,
    first_load: bool,
    terms_digest: str | None = None,
) -> AudienceLoad:
    """Stages `ids` (validated by the caller, read from a file or arriving asynchronously) as the
    promotion's next audience load.

    `first_load`: the spec's own audience. Staging it again with the same ids returns it; with
    other ids it is a conflict (a promotion's audience is part of what was started). A later load
    (`add-audience`) is new unless the same ids were staged before. `terms_digest`: the promotion's
    id is claimed for these terms first, under the same lock and in the same transaction, so two
    starts of different terms cannot both pass; other terms under a claimed id are refused, and
    nothing is staged.
    """
    records = _ChecksummedStream(ids) if isinstance(ids, AsyncIterable) else _Checksummed(ids)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('audience:' || $1, 0))", promotion_id)
        if terms_digest is not None:
            await _claim(conn, promotion_id, terms_digest)
        await conn.execute("CREATE TEMP TABLE staged_audience (line bigint, customer_id text) ON COMMIT DROP")
        await conn.copy_records_to_table("staged_audience", records=records, columns=["line", "customer_id"])
        existing = await _existing(conn, promotion_id, records.checksum, first_load=first_load)
        if existing is not None:
            return existing
        return await _insert_load(conn, promotion_id, records.checksum)


async def unstage_audience(pool: Pool, promotion_id: str, load: AudienceLoad) -> None:
    """Removes a later load the promotion refused: a refused `add-audience` leaves nothing staged.
    The spec's own audience (load 0) is never removed."""
    if load.load_no == 0:
        return
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('audience:' || $1, 0))", promotion_id)
        deleted = await conn.execute(
            "DELETE FROM promotion_audience_loads WHERE promotion_id = $1 AND load_no = $2 AND checksum = $3",
            promotion_id,
            load.load_no,
            load.checksum,
        )
        if deleted == "DELETE 1":
            await conn.execute(
                "DELETE FROM promotion_audience WHERE promotion_id = $1 AND position BETWEEN $2 AND $3",
                promotion_id,
                load.first_position,
                load.first_position + load.size - 1,
            )


async def _claim(conn: Connection, promotion_id: str, terms_digest: str) -> None:
    await conn.execute(
        "INSERT INTO promotion_claims (promotion_id, terms_digest) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        promotion_id,
        terms_digest,
    )
    claimed = await conn.fetchval("SELECT terms_digest FROM promotion_claims WHERE promotion_id = $1", promotion_id)
    if claimed != terms_digest:
        raise PromotionConflict(f"promotion {promotion_id} already exists with different terms")


async def _existing(conn: Connection, promotion_id: str, checksum: str, *, first_load: bool) -> AudienceLoad | None:
    rows = await conn.fetch(
        """SELECT load_no, first_position, size, duplicates, checksum FROM promotion_audience_loads
           WHERE promotion_id = $1 AND (load_no = 0 OR checksum = $2) ORDER BY load_no""",
        promotion_id,
        checksum,
    )
    loads = [AudienceLoad(**dict(row)) for row in rows]
    same = next((load for load in loads if load.checksum == checksum), None)
    if first_load and loads and loads[0].checksum != checksum:
        raise PromotionConflict(
            f"promotion {promotion_id} was started with another audience; add customers with `add-audience`"
        )
    if not first_load and not loads:
        raise PromotionConflict(f"promotion {promotion_id} has not been started")
    return same


async def _insert_load(conn: Connection, promotion_id: str, checksum: str) -> AudienceLoad:
    """Appends the staged ids after the promotion's last position, each customer once, in file order."""
    after = await conn.fetchrow(
        """SELECT count(*)::int AS load_no, coalesce(max(first_position + size), 1) AS first
           FROM promotion_audience_loads WHERE promotion_id = $1""",
        promotion_id,
    )
    assert after is not None, "an aggregate returns one row"
    load_no, first = after["load_no"], after["first"]
    size = await conn.fetchval(
        """WITH firsts AS (SELECT customer_id, min(line) AS line FROM staged_audience GROUP BY customer_id),
                inserted AS (
                    INSERT INTO promotion_audience (promotion_id, position, customer_id)
                    SELECT $1, $2 - 1 + row_number() OVER (ORDER BY line), customer_id FROM firsts
                    RETURNING 1)
           SELECT count(*) FROM inserted""",
        promotion_id,
        first,
    )
    lines = await conn.fetchval("SELECT count(*) FROM staged_audience")
    load = AudienceLoad(load_no=load_no, first_position=first, size=size, duplicates=lines - size, checksum=checksum)
    await conn.execute(
        """INSERT INTO promotion_audience_loads (promotion_id, load_no, checksum, first_position, size, duplicates)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        promotion_id,
        load.load_no,
        load.checksum,
        load.first_position,
        load.size,
        load.duplicates,
    )
    return load
