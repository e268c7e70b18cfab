"""Strict mode: what a Qdrant server in strict mode refuses of a migration, and what the library does.

Local mode has no strict mode, so these tests run on :class:`strict_server.StrictServer`, a local client
posing as a strict server that refuses what the server refuses, with its status and text. Each refused
call is either adapted (the re-embed stamps by ids, counts scroll, pages and batches shrink, the backup
collection indexes what a restore filters on, compare tests the text itself) or fails with a
:class:`StrictModeError` naming the setting; ``doctor`` reports each setting that touches a step.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse
from strict_server import StrictServer, refusal

import lattice_qdrant as lq
from lattice_qdrant import backups, commands
from lattice_qdrant.backfill import BackfillOptions, run_backfill
from lattice_qdrant.compare import sample_queries
from lattice_qdrant.config import Settings
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.errors import StorageFullError, StrictModeError, TransientStoreError
from lattice_qdrant.store import MODEL_FIELD, VERSION_FIELD, RetryPolicy, Store, stamp_filter, translate

from conftest import CORPUS, fill_collection, make_lattice, same_direction

NO_WAIT = RetryPolicy(attempts=2, initial=0.0, maximum=0.0, jitter=0.0)


@pytest.fixture
def local() -> Any:
    client = QdrantClient(":memory:")
    yield client
    client.close()


@pytest.fixture
def newer() -> HashEmbedder:
    """A target of the source's shape (64-d Cosine), as a re-embed needs."""
    return HashEmbedder(64, ngrams=2, salt="modern")


def texts_of(n: int) -> list[str]:
    return [f"{CORPUS[i % len(CORPUS)]} (note {i})" for i in range(n)]


def stamp_of(record: models.Record) -> tuple[Any, Any]:
    payload = record.payload or {}
    return payload.get(MODEL_FIELD), payload.get(VERSION_FIELD)


def records(client: QdrantClient, collection: str) -> dict[Any, models.Record]:
    found, _ = client.scroll(collection, limit=10_000, with_payload=True, with_vectors=True)
    return {r.id: r for r in found}


def refused_settings(server: StrictServer) -> list[str]:
    """The settings named by the server's refusals so far, in order (as the store translates them)."""
    out = []
    for method, message in server.refused:
        error = translate(
            refusal(message), action=method, reading=method in ("scroll", "count", "query_points")
        )
        assert isinstance(error, StrictModeError), message
        out.append(error.setting)
    return out


# --------------------------------------------------------------------------- the server's refusals, named


@pytest.mark.parametrize(
    ("message", "reading", "setting", "field", "limit"),
    [
        ('Index required but not found for "text" of one of the following types: [keyword]. Help: Create '
         "an index for this key or use a different filter.", False, "unindexed_filtering_update", "text",
         None),
        ('Index required but not found for "entry" of one of the following types: [keyword]. Help: ...',
         True, "unindexed_filtering_retrieve", "entry", None),
        ("Exact search disabled!. Help: Set exact=false.", True, "search_allow_exact", None, None),
        ('Limit exceeded 64 > 10 for "update limit". Help: Reduce the "update limit" parameter to or below '
         "10.", False, "upsert_max_batchsize", None, 10),
        ('Limit exceeded 300 > 100 for "upsert limit". Help: ...', False, "upsert_max_batchsize", None, 100),
        ('Limit exceeded 512 > 100 for "limit". Help: ...', True, "max_query_limit", None, 100),
        ('Limit exceeded 20 > 8 for "search batch size". Help: ...', True, "search_max_batchsize", None, 8),
        ("Filter condition limit reached (131 > 50). Help: Reduce the amount of conditions of your filter.",
         False, "filter_max_conditions", None, 50),
        ("Condition size limit reached (64 > 10). Help: Reduce the size of your condition.", True,
         "condition_max_size", None, 10),
        ("Collection already has the maximum number of payload indices (4). Help: Please delete an existing "
         "index before creating a new one.", False, "max_payload_index_count", None, 4),
        ("Max points count limit of 1000 reached!", False, "max_points_count", None, 1000),
        ("Max vector storage size limit of 10MB reached!", False, "max_collection_vector_size_bytes", None,
         None),
    ],
)  # fmt: skip
def test_a_strict_mode_refusal_becomes_an_error_naming_the_setting(
    message: str, reading: bool, setting: str, field: str | None, limit: int | None
) -> None:
    error = translate(refusal(message), action="count points", collection="docs", reading=reading)

    assert isinstance(error, StrictModeError) and not isinstance(error, TransientStoreError)
    assert (error.setting, error.field, error.limit, error.collection) == (setting, field, limit, "docs")
    text = str(error)
    assert "strict mode" in text and setting in text and "update_collection" in text
    if field is not None:
        assert f"create a payload index on {field!r}, or set {setting}=true" in text


@pytest.mark.parametrize(
    ("message", "setting", "limit"),
    [
        ("Resident memory usage is at 93% of total memory, exceeding the configured limit of 90%. Help: ...",
         "max_resident_memory_percent", 90),
        ("Disk usage is at 97% of total capacity, exceeding the configured limit of 95%. Help: ...",
         "max_disk_usage_percent", 95),
        ("Insufficient storage: Disk usage is at 97% of total capacity, exceeding the configured limit of "
         "95%", "max_disk_usage_percent", 95),
    ],
)  # fmt: skip
def test_a_strict_mode_quota_refusal_is_a_full_store_naming_the_quota(
    message: str, setting: str, limit: int
) -> None:
    # a quota is room running out: not retried (like a full disk), and the quota it hit is named
    error = translate(refusal(message), action="upsert points", collection="docs")

    assert isinstance(error, StorageFullError) and not isinstance(error, TransientStoreError)
    assert (error.setting, error.limit, error.collection) == (setting, limit, "docs")
    assert setting in str(error) and "retrying does not help" in str(error)


def test_a_rate_limit_stays_a_transient_failure_and_other_errors_are_not_strict_mode() -> None:
    limited = UnexpectedResponse(
        status_code=429,
        reason_phrase="Too Many Requests",
        content=b'{"status":{"error":"Rate limiting exceeded: Write rate limit exceeded"}}',
        headers=httpx.Headers(),
    )
    assert isinstance(translate(limited, action="upsert points"), TransientStoreError)
    other = translate(
        refusal("Wrong input: Vector dimension error: expected dim: 64, got 3"), action="upsert"
    )
    assert not isinstance(other, StrictModeError)


# --------------------------------------------------------------------------- the re-embed's stamped write


def _stamped_scene(qdrant: QdrantClient, legacy: HashEmbedder, newer: HashEmbedder) -> tuple[list[str], Any]:
    texts = texts_of(6)
    fill_collection(qdrant, "docs", legacy, texts=texts)
    qdrant.set_payload("docs", {MODEL_FIELD: "modern", VERSION_FIELD: 1}, points=[2])  # already on the target
    qdrant.set_payload("docs", {"text": "changed"}, points=[3])  # the text moved on since it was embedded
    return texts, newer.embed(texts)


def _write(store: Store, texts: list[str], fresh: Any) -> list[Any]:
    pending = {i: (texts[i], fresh[i]) for i in range(5)}
    pending[77] = ("never there", fresh[5])  # deleted meanwhile: skipped, never created
    return store.write_stamped("docs", "legacy", "text", pending, ("modern", 1), distance=lq.Distance.COSINE,
                               unless=stamp_filter("modern", 1))  # fmt: skip


def _check_stamped(qdrant: QdrantClient, written: list[Any], fresh: Any, olds: Any) -> None:
    assert sorted(written) == [0, 1, 4]
    now = records(qdrant, "docs")
    assert 77 not in now
    for pid in (0, 1, 4):
        assert same_direction(now[pid].vector["legacy"], fresh[pid]) and stamp_of(now[pid]) == ("modern", 1)  # type: ignore[index]
    for pid in (2, 3, 5):
        assert same_direction(now[pid].vector["legacy"], olds[pid])  # type: ignore[index]
    assert stamp_of(now[3]) == stamp_of(now[5]) == (None, None)


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"unindexed_filtering_update": False}, "unindexed_filtering_update"),  # on the text field
        ({"filter_max_conditions": 8}, "filter_max_conditions"),  # two conditions a point
    ],
)
def test_the_reembed_stamp_goes_by_ids_when_strict_mode_refuses_its_filter(
    local: QdrantClient, legacy: HashEmbedder, newer: HashEmbedder, settings: dict[str, Any], refused: str
) -> None:
    texts, fresh = _stamped_scene(local, legacy, newer)
    olds = legacy.embed(texts)
    server = StrictServer(local, **settings)
    store = Store(server)  # type: ignore[arg-type]
    store.ensure_payload_indexes("docs")  # the model fields are indexed, the text field is not

    written = _write(store, texts, fresh)

    _check_stamped(local, written, fresh, olds)
    # the one request was refused whole (nothing of it ran), then the write went by ids
    assert refused_settings(server) == [refused]
    # the Store remembers: the next write goes by ids at once
    server.calls.clear()
    assert store.write_stamped("docs", "legacy", "text", {5: (texts[5], fresh[5])}, ("modern", 1),
                               distance=lq.Distance.COSINE) == [5]  # fmt: skip
    assert "batch_update_points" not in server.calls and len(server.refused) == 1
    # and a stamp of None (a restore to an unstamped point) goes by ids too
    assert store.write_stamped("docs", "legacy", "text", {0: (texts[0], olds[0])}, None,
                               distance=lq.Distance.COSINE) == [0]  # fmt: skip
    back = records(local, "docs")[0]
    assert same_direction(back.vector["legacy"], olds[0]) and set(back.payload or {}) == {"text"}  # type: ignore[index]


def test_the_reembed_stamp_keeps_its_one_request_when_the_text_field_has_a_keyword_index(
    local: QdrantClient, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    texts, fresh = _stamped_scene(local, legacy, newer)
    server = StrictServer(local, unindexed_filtering_update=False)
    store = Store(server)  # type: ignore[arg-type]
    store.ensure_payload_indexes(
        "docs", {"text": models.PayloadSchemaType.KEYWORD, **lq.store.PAYLOAD_INDEXES}
    )

    written = _write(store, texts, fresh)

    _check_stamped(local, written, fresh, legacy.embed(texts))
    # no refusal; the second request is the write again without point 77 (deleted meanwhile)
    assert server.refused == [] and server.calls.count("batch_update_points") == 2


def test_the_reembed_stamp_fails_naming_the_setting_when_forced_to_one_request(
    local: QdrantClient, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    texts, fresh = _stamped_scene(local, legacy, newer)
    store = Store(StrictServer(local, unindexed_filtering_update=False))  # type: ignore[arg-type]

    with pytest.raises(StrictModeError) as caught:
        store.write_stamped("docs", "legacy", "text", {0: (texts[0], fresh[0])}, ("modern", 1),
                            distance=lq.Distance.COSINE, one_request=True)  # fmt: skip

    assert caught.value.setting == "unindexed_filtering_update" and caught.value.field == "text"
    assert "unindexed_filtering_update=false" in str(caught.value)
    assert stamp_of(records(local, "docs")[0]) == (None, None)  # refused whole: nothing was written


# --------------------------------------------------------------------------- the target write and its stamp


def _target_scene(qdrant: QdrantClient, legacy: HashEmbedder, modern: HashEmbedder) -> tuple[Any, Any]:
    """Six points, a target vector to fill: point 2 holds one the application wrote, point 3's text moved
    on since it was embedded; the write is of points 0-4 and 77 (deleted meanwhile)."""
    texts = texts_of(6)
    fill_collection(qdrant, "docs", legacy, texts=texts)
    Store(qdrant).ensure_vector("docs", "modern-v1", modern.spec("modern", 1))
    fresh = modern.embed(texts)
    theirs = modern.embed(["the application's own"])[0]
    qdrant.update_vectors("docs", [models.PointVectors(id=2, vector={"modern-v1": theirs.tolist()})])
    qdrant.set_payload("docs", {"text": "changed"}, points=[3])
    pending = {i: (texts[i], {"modern-v1": fresh[i]}) for i in range(5)}
    pending[77] = ("never there", {"modern-v1": fresh[5]})
    return pending, theirs


def _write_target(store: Store, pending: Any) -> list[Any]:
    return store.update_if_unchanged("docs", "text", pending, lacking="modern-v1", stamp=("modern", 1))


def _check_target(qdrant: QdrantClient, existing: list[Any], pending: Any, theirs: Any) -> None:
    assert sorted(existing) == [0, 1, 2, 3, 4]
    now = records(qdrant, "docs")
    assert 77 not in now  # never created
    for pid in (0, 1, 4):  # written and stamped
        assert same_direction(now[pid].vector["modern-v1"], pending[pid][1]["modern-v1"])  # type: ignore[index]
        assert stamp_of(now[pid]) == ("modern", 1)
    # the application's vector stays, and holds the target model: stamped
    assert same_direction(now[2].vector["modern-v1"], theirs) and stamp_of(now[2]) == ("modern", 1)  # type: ignore[index]
    for pid in (3, 5):  # not written (its text changed; not in the write): no vector, no stamp
        assert "modern-v1" not in now[pid].vector and stamp_of(now[pid]) == (None, None)  # type: ignore[operator]


def test_the_target_write_and_its_stamp_are_one_request_on_a_server(
    local: QdrantClient, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    pending, theirs = _target_scene(local, legacy, modern)
    # has_id and has_vector need no index: a strict mode refusing unindexed filters lets the stamp through
    server = StrictServer(local, unindexed_filtering_update=False)
    store = Store(server)  # type: ignore[arg-type]

    existing = _write_target(store, pending)

    _check_target(local, existing, pending, theirs)
    # no refusal; the second request is the write again without point 77 (deleted meanwhile)
    assert server.refused == [] and server.calls.count("batch_update_points") == 2
    assert "set_payload" not in server.calls and "update_vectors" not in server.calls


def test_the_target_write_stamps_by_ids_when_strict_mode_refuses_its_filter(
    local: QdrantClient, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    pending, theirs = _target_scene(local, legacy, modern)
    server = StrictServer(local, filter_max_conditions=1)  # the stamp's filter has two
    store = Store(server)  # type: ignore[arg-type]

    existing = _write_target(store, pending)

    _check_target(local, existing, pending, theirs)
    # the one request was refused whole (nothing of it ran), then the write went by ids
    assert refused_settings(server) == ["filter_max_conditions"]
    server.calls.clear()  # the Store remembers: the next write goes by ids at once
    fresh = modern.embed(["(note 5)"])[0]
    assert _write_target(store, {5: (texts_of(6)[5], {"modern-v1": fresh})}) == [5]
    assert "batch_update_points" not in server.calls and len(server.refused) == 1
    assert stamp_of(records(local, "docs")[5]) == ("modern", 1)


def test_writes_are_split_to_the_servers_upsert_max_batchsize(
    local: QdrantClient, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    texts, fresh = _stamped_scene(local, legacy, newer)
    server = StrictServer(local, upsert_max_batchsize=2)
    store = Store(server)  # type: ignore[arg-type]

    written = _write(store, texts, fresh)

    _check_stamped(local, written, fresh, legacy.embed(texts))
    assert refused_settings(server) == ["upsert_max_batchsize"]  # once; then every request holds 2 points
    vector = {"legacy": fresh[0].tolist()}
    store.upsert(
        "docs", [models.PointStruct(id=i, vector=vector, payload={"text": "x"}) for i in range(10, 15)]
    )
    store.update_vectors("docs", [models.PointVectors(id=i, vector=vector) for i in range(10, 15)])
    assert local.count("docs").count == 11 and len(server.refused) == 1


# --------------------------------------------------------------------------- counts and pages


def test_counts_scroll_the_ids_when_the_server_refuses_exact_counts(
    local: QdrantClient, legacy: HashEmbedder
) -> None:
    fill_collection(local, "docs", legacy, n=30)
    local.delete_vectors("docs", ["legacy"], points=[3, 4, 5])
    server = StrictServer(local, search_allow_exact=False, max_query_limit=7)
    store = Store(server)  # type: ignore[arg-type]

    assert store.count("docs") == 30
    assert store.coverage("docs", "legacy") == lq.Coverage(covered=27, total=30)
    has_id = models.Filter(must=[models.HasIdCondition(has_id=[1, 2, 3, 99])])
    assert store.count("docs", has_id) == 3

    # one refusal of each: the exact count, and the first page over max_query_limit
    assert refused_settings(server) == ["search_allow_exact", "max_query_limit"]
    page, offset = store.scroll("docs", limit=100)
    assert len(page) == 7 and offset is not None  # cut to the limit, and paging goes on from there
    assert sum(len(p) for p in store.iter_points("docs", page_size=100)) == 30


def test_a_count_on_an_unindexed_field_fails_naming_the_setting(
    local: QdrantClient, legacy: HashEmbedder
) -> None:
    fill_collection(local, "docs", legacy, n=5)
    store = Store(StrictServer(local, unindexed_filtering_retrieve=False))  # type: ignore[arg-type]
    flt = models.Filter(must=[models.FieldCondition(key="lang", match=models.MatchValue(value="en"))])

    with pytest.raises(StrictModeError) as caught:
        store.count("docs", flt)

    assert (caught.value.setting, caught.value.field) == ("unindexed_filtering_retrieve", "lang")
    assert "create a payload index on 'lang', or set unindexed_filtering_retrieve=true" in str(caught.value)


# --------------------------------------------------------------------------- backups and compare


def test_backup_collections_index_what_a_restore_filters_on(
    local: QdrantClient, legacy: HashEmbedder
) -> None:
    fill_collection(local, "docs", legacy, n=12)
    server = StrictServer(local, unindexed_filtering_retrieve=False, search_allow_exact=False)
    store = Store(server, control_collection="control", retry=NO_WAIT)  # type: ignore[arg-type]
    manifest = backups.create_backup(store, "docs", "legacy", model="legacy:v1", fields=("lang",))
    for field in ("entry", "model", MODEL_FIELD, VERSION_FIELD):
        assert (manifest.backup_collection, field) in server.indexes
    # a backup made before its collection had the entry index gets it on its first restore
    del server.indexes[(manifest.backup_collection, "entry")]
    local.delete_vectors("docs", ["legacy"], points=[0, 1])

    report = backups.restore(store, manifest.backup_id)

    assert (report.restored, report.already, report.verified) == (2, 10, True)
    assert (manifest.backup_collection, "entry") in server.indexes
    assert "unindexed_filtering_retrieve" not in refused_settings(server)
    # a filter the library cannot index for you fails naming the setting and the field
    lang = models.Filter(must=[models.FieldCondition(key="lang", match=models.MatchValue(value="en"))])
    with pytest.raises(StrictModeError, match=r"'lang'.*unindexed_filtering_retrieve=true") as caught:
        backups.restore(store, manifest.backup_id, flt=lang)
    assert caught.value.setting == "unindexed_filtering_retrieve"


def test_compare_samples_the_same_queries_when_the_text_field_cannot_be_filtered(
    local: QdrantClient, legacy: HashEmbedder
) -> None:
    fill_collection(local, "docs", legacy, n=40)
    local.set_payload("docs", {"text": None}, points=[1, 2])
    local.delete_payload("docs", ["text"], points=[3])
    server = StrictServer(local, unindexed_filtering_retrieve=False)
    plain = sample_queries(Store(local), "docs", 8, seed=3)

    strict = sample_queries(Store(server), "docs", 8, seed=3)  # type: ignore[arg-type]

    assert strict == plain and len(plain) == 8
    assert not {1, 2, 3} & {pid for q in strict for pid in q.relevant}
    assert refused_settings(server) == ["unindexed_filtering_retrieve"]


# --------------------------------------------------------------------------- a whole re-embed, strict


def test_a_reembed_runs_start_to_restore_on_a_strict_server(
    local: QdrantClient, names: Any, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    server = StrictServer(
        local,
        unindexed_filtering_update=False,
        unindexed_filtering_retrieve=False,
        search_allow_exact=False,
        upsert_max_batchsize=16,
        max_query_limit=100,
    )
    docs = names("docs")
    fill_collection(local, docs, legacy, n=40)
    original = records(local, docs)
    lattice = make_lattice(server, names)
    migration = lattice.plan(docs, source=legacy.spec("legacy", 1), target=newer.spec("modern", 1),
                             source_vector="legacy", strategy="reembed", cutover_threshold=1.0)  # fmt: skip
    migration.start()

    report = run_backfill(migration, newer, BackfillOptions(batch_size=20, writers=1))

    assert (report.covered, report.total) == (40, 40)
    assert migration.coverage() == lq.Coverage(covered=40, total=40)
    now = records(local, docs)
    for record in now.values():
        assert same_direction(record.vector["legacy"], newer.embed([record.payload["text"]])[0])  # type: ignore[index]
        assert stamp_of(record) == ("modern", 1)
    migration.cutover()
    migration.rollback()
    migration.restore()
    back = records(local, docs)
    for pid, record in original.items():
        assert same_direction(back[pid].vector["legacy"], record.vector["legacy"], atol=1e-6)  # type: ignore[index]
        assert stamp_of(back[pid]) == (None, None)
    # every refusal was adapted to: each setting refused once per collection at most
    settings = refused_settings(server)
    assert {"unindexed_filtering_update", "search_allow_exact", "upsert_max_batchsize"} <= set(settings)
    assert "unindexed_filtering_retrieve" not in settings


# --------------------------------------------------------------------------- doctor


def _doctor(client: Any, names: Any, legacy: HashEmbedder, newer: HashEmbedder, **plan: Any) -> list[Any]:
    docs = names("docs")
    session = commands.Session(settings=Settings(control_collection=names("control")), client=client)
    commands.register_model(session, legacy.spec("legacy", 1))
    commands.register_model(session, newer.spec("modern", 1))
    if plan:
        session.client.plan(docs, source=legacy.spec("legacy", 1), target=newer.spec("modern", 1),
                            source_vector="legacy", **plan)  # fmt: skip
        report = commands.doctor(session, docs)
    else:
        report = commands.doctor(session, docs, source="legacy", target="modern", source_vector="legacy")
    return [f for f in report.findings if f.check == "strict mode"]


def test_doctor_reports_each_strict_mode_setting_that_touches_a_step(
    local: QdrantClient, names: Any, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    fill_collection(local, names("docs"), legacy, n=10)
    server = StrictServer(
        local,
        strict={names("docs")},
        unindexed_filtering_update=False,
        unindexed_filtering_retrieve=False,
        search_allow_exact=False,
        upsert_max_batchsize=10,
        max_query_limit=100,
        search_max_batchsize=4,
        filter_max_conditions=20,
        read_rate_limit=600,
        write_rate_limit=120,
        max_resident_memory_percent=90,
    )

    found = _doctor(server, names, legacy, newer, strategy="reembed", query_threshold=0.5)

    details = {f.detail.split(" ")[0].split("=")[0]: f for f in found}
    for setting in ("unindexed_filtering_update", "unindexed_filtering_retrieve", "search_allow_exact",
                    "upsert_max_batchsize", "max_query_limit", "search_max_batchsize",
                    "filter_max_conditions", "read_rate_limit", "write_rate_limit",
                    "max_resident_memory_percent"):  # fmt: skip
        assert setting in details, (setting, [f.detail for f in found])
    assert details["unindexed_filtering_update"].verdict == "warn"
    assert "stamps by ids" in details["unindexed_filtering_update"].detail
    assert "keyword index on 'text'" in details["unindexed_filtering_update"].detail
    assert "compare --sample" in details["unindexed_filtering_retrieve"].detail
    assert "scrolling" in details["search_allow_exact"].detail
    assert "counted again every" in details["search_allow_exact"].detail  # queries route by coverage
    assert "requests of 10 points" in details["upsert_max_batchsize"].detail
    assert "max_rate" in details["write_rate_limit"].detail
    assert all(f.verdict != "fail" for f in found)  # the library adapts to all of these


def test_doctor_fails_what_strict_mode_will_refuse_outright(
    local: QdrantClient, names: Any, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    fill_collection(local, names("docs"), legacy, n=1000)
    server = StrictServer(
        local, strict={names("docs")}, max_collection_vector_size_bytes=300_000, max_payload_index_count=1
    )

    found = _doctor(server, names, legacy, newer)

    verdicts = {f.detail.split("=")[0]: f.verdict for f in found}
    assert verdicts == {"max_collection_vector_size_bytes": "fail", "max_payload_index_count": "fail"}
    assert any("blue-green" in f.detail for f in found)


def test_doctor_says_when_strict_mode_is_off_or_absent(
    local: QdrantClient, names: Any, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    fill_collection(local, names("docs"), legacy, n=5)
    off = _doctor(StrictServer(local, strict=set()), names, legacy, newer)
    assert [(f.verdict, f.detail) for f in off] == [("ok", "off for this collection")]
    on = _doctor(StrictServer(local, strict={names("docs")}), names, legacy, newer)
    assert [f.verdict for f in on] == ["ok"] and "none of its settings" in on[0].detail
    absent = _doctor(local, names, legacy, newer)
    assert [f.verdict for f in absent] == ["ok"] and "local mode has no strict mode" in absent[0].detail
