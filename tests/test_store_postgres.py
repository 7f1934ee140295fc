"""What only PostgreSQL does: several replicas (here, several stores) on one schema.

Each store has its own pool, so the stores' transactions really run at once
on the server, as two replicas' would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from linqwatch.linestate import Outcome
from linqwatch.model import Observation, ObservationKind, Source
from linqwatch.store import PostgresStore, StorageError, open_store
from linqwatch.store.postgres_schema import MIGRATIONS, lock_key
from tests.conftest import POSTGRES, require_postgres
from tests.test_store import T0, N, flagged, note

Opener = Callable[..., Awaitable[PostgresStore]]


@pytest.fixture
async def replica(postgres_url: str) -> AsyncIterator[Opener]:
    """Open stores on one schema; all are closed at the end.

    `name` becomes the sessions' application_name, unique to this test, so
    that a test cuts its own sessions and never another test's (other suites
    may share the server).
    """
    opened: list[PostgresStore] = []

    async def open_one(name: str = "", lease: float = 300.0) -> PostgresStore:
        url = postgres_url + (f"&application_name={app_name(postgres_url, name)}" if name else "")
        store = PostgresStore(url, lease=lease)
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


def app_name(url: str, name: str) -> str:
    return f"{schema_of(url)}_{name}"


def schema_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


async def cut_sessions(application_name: str, *, only_leaders: bool = False) -> int:
    """Terminate a replica's sessions, as a network cut or a server restart would."""
    leaders = (
        " AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
        if only_leaders
        else ""
    )
    admin = await asyncpg.connect(POSTGRES)
    try:
        return len(
            await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE application_name = $1{leaders}",
                application_name,
            )
        )
    finally:
        await admin.close()


async def schema_versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url.replace("?schema=", "?options=-csearch_path%3D"))
    try:
        return [r[0] for r in await conn.fetch("SELECT version FROM linqwatch_schema ORDER BY 1")]
    finally:
        await conn.close()


# -- webhooks and lines ------------------------------------------------------------


async def test_a_webhook_delivered_to_two_replicas_at_once_is_recorded_once(
    replica: Opener,
) -> None:
    a, b = await replica(), await replica()
    numbers = [f"+1202555{n:04d}" for n in range(20)]

    def webhook(number: str) -> Observation:
        return Observation(
            number, ObservationKind.STATUS, T0, Source.WEBHOOK, "FLAGGED", event_id=f"e-{number}"
        )

    results = await asyncio.gather(
        *[
            store.record_observation(webhook(n), now=T0, poll_interval=60)
            for n in numbers
            for store in (a, b)
        ]
    )
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.NEW) == len(numbers)
    assert outcomes.count(Outcome.DUPLICATE) == len(numbers)
    assert len(await a.history(limit=100)) == len(numbers)


async def test_observations_and_decisions_of_one_line_wait_for_each_other(
    replica: Opener, postgres_url: str
) -> None:
    store = await replica()
    # Another replica in the middle of a decision about the line: it holds the line.
    other = await asyncpg.connect(postgres_url.replace("?schema=", "?options=-csearch_path%3D"))
    try:
        tx = other.transaction()
        await tx.start()
        key = lock_key(schema_of(postgres_url), "line", N)
        await other.execute("SELECT pg_advisory_xact_lock($1)", key)
        observing = asyncio.create_task(
            store.record_observation(flagged(T0), now=T0, poll_interval=60)
        )
        deciding = asyncio.create_task(store.decide(N, lambda *_: None, T0))
        other_line = await store.record_observation(
            Observation("+12025550000", ObservationKind.STATUS, T0, Source.POLL, "ACTIVE"),
            now=T0,
            poll_interval=60,
        )
        assert other_line.outcome is Outcome.NEW  # another line does not wait
        await asyncio.sleep(0.3)
        assert not observing.done() and not deciding.done()
        await tx.commit()
        assert (await observing).outcome is Outcome.NEW
        assert await deciding is None
    finally:
        await other.close()


# -- the outbox ------------------------------------------------------------------


async def test_two_replicas_claiming_at_once_never_get_the_same_job(replica: Opener) -> None:
    a, b = await replica(), await replica()
    await a.enqueue([("slack", note(f"k{i}")) for i in range(40)], T0)
    claimed: dict[str, list[int]] = {"a": [], "b": []}

    async def work(name: str, store: PostgresStore) -> None:
        while (job := await store.next_job("slack", T0)) is not None:
            claimed[name].append(job.id)
            await asyncio.sleep(0)  # let the other replica claim meanwhile
            await store.job_delivered(job.id, {"by": name}, T0)

    await asyncio.gather(work("a", a), work("b", b))
    assert not set(claimed["a"]) & set(claimed["b"])
    assert len(claimed["a"]) + len(claimed["b"]) == 40
    assert claimed["a"] and claimed["b"], "one replica did all the work: no concurrency tested"
    assert await a.outbox_depth() == {}


async def test_a_claimed_job_is_skipped_until_its_lease_ends(replica: Opener) -> None:
    a, b = await replica(), await replica()
    await a.enqueue([("slack", note("k1")), ("slack", note("k2"))], T0)
    first = await a.next_job("slack", T0)
    assert first is not None and first.notification.incident_key == "k1"
    again = await a.next_job("slack", T0)  # the outbox may ask again for its own job
    assert again is not None and again.id == first.id
    other = await b.next_job("slack", T0)
    assert other is not None and other.notification.incident_key == "k2"
    await b.job_delivered(other.id, None, T0)
    assert await b.next_job("slack", T0 + 299) is None
    assert await b.next_due_at("slack") == T0 + 300  # when a's lease ends, for b
    assert await a.next_due_at("slack") == T0
    # a died without settling: after the lease, b takes the job over
    taken = await b.next_job("slack", T0 + 300)
    assert taken is not None and taken.id == first.id
    assert await a.next_job("slack", T0 + 301) is None  # now b's
    await b.job_retry(taken.id, due_at=T0 + 310, error="503", now=T0 + 300)
    retried = await a.next_job("slack", T0 + 310)  # settled: free for anyone
    assert retried is not None and retried.attempts == 1


async def test_the_next_job_of_an_incident_waits_while_its_head_is_claimed(
    replica: Opener,
) -> None:
    a, b = await replica(), await replica()
    await a.enqueue([("slack", note("k1")), ("slack", note("k1"))], T0)
    head = await a.next_job("slack", T0)
    assert head is not None
    assert await b.next_job("slack", T0) is None  # the recovery waits behind its fire
    await a.job_delivered(head.id, {"ts": "1"}, T0)
    follow = await b.next_job("slack", T0)
    assert follow is not None and follow.id > head.id


async def test_closing_gives_back_the_claims(replica: Opener) -> None:
    a, b = await replica(), await replica()
    await a.enqueue([("slack", note("k1"))], T0)
    job = await a.next_job("slack", T0)
    assert job is not None
    await a.close()
    taken = await b.next_job("slack", T0)
    assert taken is not None and taken.id == job.id


async def test_a_job_settled_elsewhere_stays_settled(replica: Opener) -> None:
    a, b = await replica(lease=10.0), await replica(lease=10.0)
    await a.enqueue([("slack", note("k1"))], T0)
    slow = await a.next_job("slack", T0)
    fast = await b.next_job("slack", T0 + 11)  # a's lease ran out
    assert slow is not None and fast is not None and slow.id == fast.id
    await b.job_delivered(fast.id, {"ts": "b"}, T0 + 12)
    await a.job_retry(slow.id, due_at=T0 + 20, error="timeout", now=T0 + 13)  # too late
    assert await a.next_job("slack", T0 + 99) is None
    assert await a.receipts("slack", "k1") == [{"ts": "b"}]


# -- leadership and heartbeats ------------------------------------------------------


async def test_one_replica_leads_and_another_takes_over_when_it_closes(replica: Opener) -> None:
    a, b = await replica(), await replica()
    assert await a.try_lead("poller") is True
    assert await b.try_lead("poller") is False
    assert await a.try_lead("poller") is True  # kept, not re-taken
    assert await b.try_lead("other-role") is True  # roles are independent
    await a.close()
    assert await b.try_lead("poller") is True


async def test_leadership_is_lost_with_the_session(replica: Opener, postgres_url: str) -> None:
    a, b = await replica("a"), await replica("b")
    assert await a.try_lead("poller") is True
    assert await cut_sessions(app_name(postgres_url, "a"), only_leaders=True) == 1
    await asyncio.sleep(0.1)  # the server ends the session and frees its locks
    assert await b.try_lead("poller") is True
    assert await a.try_lead("poller") is False  # a notices and stops polling
    assert await a.try_lead("poller") is False  # and does not take it back


async def test_heartbeats_count_the_replicas_seen_lately(replica: Opener) -> None:
    a, b = await replica(), await replica()
    assert await a.heartbeat("host-a", T0, ttl=15) == 1
    assert await b.heartbeat("host-b", T0 + 1, ttl=15) == 2
    assert await a.heartbeat("host-a", T0 + 2, ttl=15) == 2  # one row each, updated
    assert await b.heartbeat("host-b", T0 + 16, ttl=15) == 2  # a seen at T0+2: still in
    assert await b.heartbeat("host-b", T0 + 17, ttl=15) == 1  # a silent for 15 s: gone
    await b.close()  # a replica that stops says so
    assert await a.heartbeat("host-a", T0 + 19, ttl=15) == 1


# -- schema and errors ----------------------------------------------------------------


async def test_migrations_run_once_even_when_replicas_start_together(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    try:
        await asyncio.gather(*[s.open() for s in stores])
        assert await schema_versions(postgres_url) == list(range(1, len(MIGRATIONS) + 1))
        await stores[0].close()
        await stores[0].open()  # again: nothing to do
        assert await schema_versions(postgres_url) == list(range(1, len(MIGRATIONS) + 1))
    finally:
        for s in stores:
            await s.close()


async def test_search_path_in_options_works_like_schema(postgres_url: str) -> None:
    by_schema = open_store(postgres_url)
    by_options = open_store(postgres_url.replace("?schema=", "?options=-c%20search_path%3D"))
    assert isinstance(by_schema, PostgresStore) and isinstance(by_options, PostgresStore)
    await by_schema.open()
    await by_options.open()
    try:
        await by_schema.record_observation(flagged(T0), now=T0, poll_interval=60)
        assert [line.number for line in await by_options.lines()] == [N]
    finally:
        await by_schema.close()
        await by_options.close()


async def test_a_newer_schema_is_refused(postgres_url: str, replica: Opener) -> None:
    await (await replica()).close()
    conn = await asyncpg.connect(postgres_url.replace("?schema=", "?options=-csearch_path%3D"))
    try:
        await conn.execute("INSERT INTO linqwatch_schema VALUES (99, now())")
    finally:
        await conn.close()
    store = PostgresStore(postgres_url)
    with pytest.raises(StorageError, match="version 99, newer than this linqwatch"):
        await store.open()
    await store.close()


async def test_errors_never_show_the_password() -> None:
    require_postgres()
    for url in (
        "postgresql://linqwatch:hunter2secret@127.0.0.1:1/test",  # nothing listens there
        "postgresql://no_such_role:hunter2secret@127.0.0.1:5432/test",
        "postgresql://linqwatch:hunter2secret@127.0.0.1:5432/test?schema=bad-name",
    ):
        store = PostgresStore(url)
        with pytest.raises(StorageError) as caught:
            await store.open()
        assert "hunter2secret" not in str(caught.value)
        await store.close()
    with pytest.raises(StorageError, match="not open"):
        await store.ping()


async def test_cut_sessions_are_storage_errors_then_reconnected(
    replica: Opener, postgres_url: str
) -> None:
    store = await replica("a")
    await store.ping()
    assert await cut_sessions(app_name(postgres_url, "a")) >= 1
    errors = 0
    for _ in range(3):  # the pool notices a dead connection once, then opens a new one
        try:
            await store.ping()
        except StorageError as exc:
            assert str(exc).startswith("PostgreSQL: ")
            errors += 1
    assert errors <= 1
    await store.ping()
