"""Every public method of qdrant-client's clients is routed by the wrapper or declared passed through."""

from __future__ import annotations

import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient

from lattice_qdrant import surface


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


@pytest.mark.parametrize("cls", [QdrantClient, AsyncQdrantClient])
def test_every_public_method_of_the_client_is_routed_or_passed_through(cls: type) -> None:
    unclassified = sorted(n for n in public(cls) if surface.kind_of(n) is None)
    assert unclassified == [], (
        f"{cls.__name__} has methods lattice-qdrant neither routes nor passes through: {unclassified}; "
        "classify each in lattice_qdrant/surface.py (a write or query method must be routed)"
    )


def test_the_tables_name_only_methods_the_client_has_and_none_twice() -> None:
    names = public(QdrantClient)
    assert set(surface.ROUTED) <= names
    assert set(surface.PASSED_THROUGH) <= names
    assert not set(surface.ROUTED) & set(surface.PASSED_THROUGH)


def test_the_sync_and_async_clients_have_the_same_public_names() -> None:
    # one table serves both wrappers only while this holds
    assert public(QdrantClient) == public(AsyncQdrantClient)


def test_kind_of_names_each_kind() -> None:
    assert surface.kind_of("upsert") == "write"
    assert surface.kind_of("query_points") == "query"
    assert surface.kind_of("create_collection") == "pass-through"
    assert surface.kind_of("no_such_method") is None
