"""Tests for lattice_qdrant.registry: model specs registered in the control collection, on every backend."""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client import QdrantClient

from lattice_qdrant.errors import ModelConflictError, ModelNotFoundError
from lattice_qdrant.registry import ModelRegistry
from lattice_qdrant.spec import Distance, ModelSpec
from lattice_qdrant.store import Store


def minilm(**changes: Any) -> ModelSpec:
    fields: dict[str, Any] = {
        "model_id": "minilm",
        "version": 1,
        "dimension": 384,
        "name": "sentence-transformers/all-MiniLM-L6-v2",
        "max_length": 256,
    }
    return ModelSpec(**{**fields, **changes})


@pytest.fixture
def control(names: Any) -> str:
    return str(names("control"))


@pytest.fixture
def registry(qdrant: QdrantClient, control: str) -> ModelRegistry:
    return ModelRegistry(Store(qdrant, control_collection=control))


def test_register_twice(registry: ModelRegistry) -> None:
    spec = minilm()
    assert registry.register(spec) is True
    assert registry.register(spec) is False
    assert registry.register(minilm()) is False
    assert registry.list() == [spec]


def test_register_a_spec_with_every_field_set(registry: ModelRegistry) -> None:
    spec = minilm(
        distance=Distance.DOT,
        revision="abc123",
        pooling="cls",
        normalize=False,
        prompt="query: ",
    )
    assert registry.register(spec) is True
    assert registry.register(spec) is False
    stored = registry.get("minilm", 1)
    assert stored == spec
    assert stored.checksum == spec.checksum


@pytest.mark.parametrize(
    "changes",
    [
        {"max_length": 512},
        {"prompt": "passage: "},
        {"dimension": 768},
        {"distance": Distance.EUCLID},
        {"name": "sentence-transformers/all-mpnet-base-v2"},
    ],
    ids=["max_length", "prompt", "dimension", "distance", "name"],
)
def test_another_spec_under_the_same_id_and_version_conflicts(
    registry: ModelRegistry, changes: dict[str, Any]
) -> None:
    registered = minilm()
    offered = minilm(**changes)
    registry.register(registered)

    with pytest.raises(ModelConflictError) as caught:
        registry.register(offered)

    message = str(caught.value)
    assert registered.qualified_id in message
    assert offered.qualified_id in message
    assert (caught.value.model_id, caught.value.version) == ("minilm", 1)
    assert registered.qualified_id in caught.value.registered
    assert offered.qualified_id in caught.value.offered
    assert registry.get("minilm", 1) == registered
    assert registry.list() == [registered]


def test_check_refuses_what_register_would_and_writes_nothing(
    qdrant: QdrantClient, control: str, registry: ModelRegistry
) -> None:
    registry.check(minilm())  # nothing registered yet: fine, and nothing is created
    assert not qdrant.collection_exists(control)
    registry.register(minilm())
    registry.check(minilm())
    registry.check(minilm(version=2, dimension=768))
    with pytest.raises(ModelConflictError, match="already registered"):
        registry.check(minilm(dimension=768))
    assert registry.list() == [minilm()]


def test_a_changed_configuration_under_a_new_version_registers(registry: ModelRegistry) -> None:
    registry.register(minilm())
    assert registry.register(minilm(version=2, max_length=512)) is True
    assert [s.version for s in registry.list()] == [1, 2]


def test_a_rename_keeps_the_checksum(registry: ModelRegistry) -> None:
    original = minilm()
    renamed = minilm(model_id="small-encoder")
    assert renamed.checksum == original.checksum
    assert renamed.same_vectors_as(original)
    assert renamed.qualified_id != original.qualified_id

    assert registry.register(original) is True
    assert registry.register(renamed) is True

    assert registry.get("small-encoder").checksum == registry.get("minilm").checksum
    assert minilm(max_length=512).checksum != original.checksum


def test_a_registered_spec_is_visible_to_every_process(
    qdrant: QdrantClient, control: str, registry: ModelRegistry
) -> None:
    spec = minilm()
    registry.register(spec)

    other = ModelRegistry(Store(qdrant, control_collection=control))

    assert other.get("minilm", 1) == spec
    assert other.resolve(spec.qualified_id) == spec
    assert other.register(spec) is False
    with pytest.raises(ModelConflictError):
        other.register(minilm(max_length=128))


def test_get_without_a_version_is_the_latest(registry: ModelRegistry) -> None:
    for version in (1, 3, 2):
        registry.register(minilm(version=version, max_length=100 + version))

    assert registry.get("minilm").version == 3
    assert registry.get("minilm").max_length == 103
    assert registry.get("minilm", 2).max_length == 102


def test_get_of_an_unknown_model(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFoundError, match="'minilm'"):
        registry.get("minilm")
    registry.register(minilm())
    with pytest.raises(ModelNotFoundError, match="version 2"):
        registry.get("minilm", 2)
    with pytest.raises(ModelNotFoundError, match="'other'"):
        registry.get("other")


def test_resolve(registry: ModelRegistry) -> None:
    v1, v2 = minilm(), minilm(version=2, max_length=512)
    registry.register(v1)
    registry.register(v2)

    assert registry.resolve("minilm") == v2
    assert registry.resolve("minilm:v1") == v1
    assert registry.resolve("minilm:v2") == v2
    assert registry.resolve(v1.qualified_id) == v1
    assert registry.resolve(v2.qualified_id) == v2
    assert registry.resolve(f"minilm:v1:{v1.checksum}") == v1


def test_resolve_with_a_wrong_checksum(registry: ModelRegistry) -> None:
    v1, v2 = minilm(), minilm(version=2, max_length=512)
    registry.register(v1)
    registry.register(v2)

    # v2's checksum under v1's version: the reference names a configuration v1 does not have.
    with pytest.raises(ModelNotFoundError) as caught:
        registry.resolve(f"minilm:v1:{v2.checksum[:8]}")

    assert v1.qualified_id in str(caught.value)
    assert "checksum" in str(caught.value)


@pytest.mark.parametrize(
    "ref",
    [
        "minilm:1",
        "minilm:11",
        "minilm:x1",
        "minilm:V1",
        "minilm:version1",
        "minilm:v",
        "minilm:v1:abc:def",
        "minilm:v-1",
        ":v1",
        "",
        "minilm:v9",
        "other",
        "other:v1",
    ],
)
def test_resolve_bad_references(registry: ModelRegistry, ref: str) -> None:
    registry.register(minilm())
    with pytest.raises(ModelNotFoundError):
        registry.resolve(ref)


def test_a_bad_reference_names_the_accepted_forms(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFoundError, match="MODEL_ID:vN"):
        registry.resolve("minilm:one")


def test_list_is_sorted_by_id_then_version(registry: ModelRegistry) -> None:
    specs = [
        minilm(model_id="zeta", version=2),
        minilm(model_id="alpha", version=10),
        minilm(model_id="zeta", version=1),
        minilm(model_id="alpha", version=2),
        minilm(model_id="mid", version=1),
    ]
    for spec in specs:
        registry.register(spec)

    listed = registry.list()

    assert [(s.model_id, s.version) for s in listed] == [
        ("alpha", 2),
        ("alpha", 10),
        ("mid", 1),
        ("zeta", 1),
        ("zeta", 2),
    ]
    assert set(listed) == set(specs)


def test_reads_of_an_empty_registry_create_nothing(
    qdrant: QdrantClient, control: str, registry: ModelRegistry
) -> None:
    assert registry.list() == []
    with pytest.raises(ModelNotFoundError):
        registry.get("minilm")
    with pytest.raises(ModelNotFoundError):
        registry.resolve("minilm:v1")
    assert not qdrant.collection_exists(control)


def test_the_registry_lives_in_the_control_collection(
    qdrant: QdrantClient, control: str, registry: ModelRegistry
) -> None:
    spec = minilm()
    registry.register(spec)

    assert qdrant.collection_exists(control)
    [record] = registry.store.list_records("model")
    assert record["key"] == "minilm:v1"
    assert record["spec"]["checksum"] == spec.checksum
    assert record["spec"]["qualified_id"] == spec.qualified_id
