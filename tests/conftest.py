"""One backend fixture for the whole suite: qdrant-client's local mode always, and the same scenarios
against a real server when ``QDRANT_URL`` is set (``docker compose -f compose/docker-compose.yml up``).

Every test gets its own collection names and its own control collection, so runs against a shared server
never see each other.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from typer.testing import CliRunner

import lattice_qdrant as lq
from lattice_qdrant.cli import app
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import Store, open_store
from lattice_qdrant.testing import FaultyStore, RecordingStore

QDRANT_URL = os.environ.get("QDRANT_URL")
BACKENDS = ["local", "server"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CORPUS = [
    "The cat sat on the warm mat by the fire.",
    "Dogs are loyal companions and love long walks.",
    "Python is a programming language with readable syntax.",
    "Qdrant stores vectors and searches them by similarity.",
    "The stock market fell sharply after the announcement.",
    "Fresh bread is baked every morning at the corner bakery.",
    "A migration moves data from one schema to another.",
    "Embeddings map text to points in a vector space.",
    "The football match ended in a draw after extra time.",
    "Rain is expected across the north of the country tomorrow.",
    "Vector databases index embeddings for nearest neighbour search.",
    "The recipe needs two eggs, flour, sugar and butter.",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="QDRANT_URL is not set (start compose/docker-compose.yml)")
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "server":
            item.add_marker(pytest.mark.integration)
            if not QDRANT_URL:
                item.add_marker(skip)
        if item.get_closest_marker("integration") and not QDRANT_URL:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export cache for the whole run: the model tests export all-MiniLM-L6-v2 once."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``"local"`` or ``"server"`` (the latter only runs with ``QDRANT_URL``)."""
    return str(request.param)


@pytest.fixture
def names() -> Any:
    """A factory of collection names unique to this test."""
    prefix = f"t{uuid.uuid4().hex[:10]}"

    def make(base: str) -> str:
        return f"{prefix}_{base}"

    make.prefix = prefix  # type: ignore[attr-defined]
    return make


@pytest.fixture
def qdrant(backend: str, names: Any) -> Iterator[QdrantClient]:
    """A fresh client on the backend; on a server, this test's collections are dropped afterwards."""
    if backend == "local":
        client = QdrantClient(":memory:")
        yield client
        client.close()
        return
    client = QdrantClient(url=QDRANT_URL, timeout=30)
    yield client
    for coll in client.get_collections().collections:
        if coll.name.startswith(names.prefix):
            client.delete_collection(coll.name)
    client.close()


@pytest.fixture
def legacy() -> HashEmbedder:
    """The cheap source model: hashed bag of words, 64 dimensions."""
    return HashEmbedder(64, salt="legacy")


@pytest.fixture
def modern() -> HashEmbedder:
    """The cheap target model: hashed unigrams and bigrams, 96 dimensions."""
    return HashEmbedder(96, ngrams=2, salt="modern")


@pytest.fixture
def source_spec(legacy: HashEmbedder) -> lq.ModelSpec:
    return legacy.spec("legacy", 1)


@pytest.fixture
def target_spec(modern: HashEmbedder) -> lq.ModelSpec:
    return modern.spec("modern", 1)


@pytest.fixture
def lattice(qdrant: QdrantClient, names: Any, legacy: HashEmbedder, modern: HashEmbedder) -> lq.LatticeClient:
    """The wrapped client, with the cheap embedders and this test's own control collection."""
    return make_lattice(qdrant, names)


MakeMigration = Callable[..., lq.Migration]


@pytest.fixture
def make_migration(
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> MakeMigration:
    """A factory of this test's migrations, the setup most tests share.

    ``make_migration(n=48, *, texts=None, started=True, target=None, **plan)`` fills a new collection with
    ``n`` points (or one a text of ``texts``) holding their ``legacy`` vector, plans its migration through
    ``lattice`` from ``source_spec`` to ``target`` (``target_spec`` unless given; other plan options as
    keywords: ``strategy``, ``rollback_window``, ...) and starts it unless ``started`` is false. The first
    collection is ``names("docs")``, the next ``names("docs2")``, and so on.
    """
    made: list[str] = []

    def make(
        n: int = 48,
        *,
        texts: list[str] | None = None,
        started: bool = True,
        target: lq.ModelSpec | None = None,
        **plan: Any,
    ) -> lq.Migration:
        docs = names(f"docs{len(made) + 1}" if made else "docs")
        made.append(docs)
        fill_collection(lattice.client, docs, legacy, n=n, texts=texts)
        migration = lattice.plan(
            docs, source=source_spec, target=target or target_spec, source_vector="legacy", **plan
        )
        if started:
            migration.start()
        return migration

    return make


@pytest.fixture
def cli(backend: str, tmp_path: Path, names: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the CLI against this test's Qdrant and control collection, checking the exit code.

    ``run(*args, input=None, code=0)`` returns the result; ``run.qdrant()`` opens a client for setup and
    checks (close it before the next run: local mode lets one client open a path); ``run.docs`` and
    ``run.control`` are this test's collection names.
    """
    monkeypatch.setenv("LATTICE_QDRANT_CONTROL_COLLECTION", names("control"))
    monkeypatch.setenv("COLUMNS", "200")
    for var in ("LATTICE_QDRANT_URL", "QDRANT_URL", "LATTICE_QDRANT_PATH", "QDRANT_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    where = ["--url", str(QDRANT_URL)] if backend == "server" else ["--path", str(tmp_path / "db")]
    runner = CliRunner()

    def run(*args: str, input: str | None = None, code: int = 0) -> Any:
        result = runner.invoke(app, [*where, *args], input=input, catch_exceptions=False)
        assert result.exit_code == code, (args, result.exit_code, result.output)
        return result

    def qdrant() -> QdrantClient:
        if backend == "server":
            return QdrantClient(url=QDRANT_URL)
        return QdrantClient(path=str(tmp_path / "db"))

    run.qdrant = qdrant  # type: ignore[attr-defined]
    run.docs = names("docs")  # type: ignore[attr-defined]
    run.control = names("control")  # type: ignore[attr-defined]
    return run


class Watched(RecordingStore):
    """A store whose calls a test watches (it records them) and acts on (``faults``, a ``FaultyStore``
    between it and the real store)."""

    def __init__(self, store: Store) -> None:
        self.faults = FaultyStore(store)
        super().__init__(self.faults)


@pytest.fixture
def watched(qdrant: QdrantClient, names: Any) -> Watched:
    """The store of this test's control collection, watched: a module builds its ``lattice`` over it when
    its tests watch and act on the store's calls."""
    return Watched(open_store(qdrant, control_collection=names("control")))


def watched_lattice(qdrant: Any, names: Any, **kwargs: Any) -> tuple[lq.LatticeClient, Watched]:
    """The wrapped client over a :class:`Watched` store of this test's control collection."""
    watched = Watched(open_store(qdrant, control_collection=names("control")))
    return make_lattice(qdrant, names, store=watched, **kwargs), watched


def make_lattice(qdrant: Any, names: Any, **kwargs: Any) -> lq.LatticeClient:
    """Another wrapper over the same Qdrant, as a second process of the fleet would have."""
    kwargs.setdefault("refresh_interval", 0.0)
    kwargs.setdefault("load_embedders", True)
    return lq.wrap(qdrant, control_collection=names("control"), **kwargs)


def unit(vector: Any) -> Any:
    """The vector scaled to length 1 (a zero vector stays zero)."""
    array = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(array))
    return array / norm if norm else array


def same_direction(actual: Any, expected: Any, atol: float = 1e-5) -> bool:
    """Whether two vectors point the same way (local mode may hand cosine vectors back normalised)."""
    return bool(np.allclose(unit(actual), unit(expected), atol=atol))


def fill_target(migration: lq.Migration, embedder: Any, ids: Any = None) -> None:
    """Give points (every one, or those of ``ids``) their target vector behind the coordinator's back: what
    a backfill writes, without the engine and without the stamp (the migration's state does not know)."""
    client, plan = migration.store.client, migration.plan
    records, _ = client.scroll(plan.data_collection, limit=10_000, with_payload=True)
    records = [r for r in records if ids is None or r.id in ids]
    vectors = embedder.embed([str((r.payload or {})["text"]) for r in records])
    client.update_vectors(
        plan.data_collection,
        [
            models.PointVectors(id=r.id, vector={plan.target_vector: v.tolist()})
            for r, v in zip(records, vectors, strict=True)
        ],
    )


def fill_collection(
    client: QdrantClient,
    name: str,
    embedder: HashEmbedder,
    *,
    n: int = 48,
    vector: str = "legacy",
    texts: list[str] | None = None,
) -> list[str]:
    """Create ``name`` with one named source vector and ``n`` points with text; return the texts."""
    client.create_collection(
        name,
        vectors_config={
            vector: models.VectorParams(size=embedder.dimension, distance=models.Distance.COSINE)
        },
    )
    texts = texts or [f"{CORPUS[i % len(CORPUS)]} (note {i})" for i in range(n)]
    vectors = embedder.embed(texts)
    client.upsert(
        name,
        [
            models.PointStruct(id=i, vector={vector: vectors[i].tolist()}, payload={"text": t})
            for i, t in enumerate(texts)
        ],
    )
    return texts
