"""Which of qdrant-client's public methods the wrapper routes, and which it passes through unchanged.

One table for both wrappers (``QdrantClient`` and ``AsyncQdrantClient`` have the same public names). A
method is **routed** when what it does depends on the migration: it writes vectors, payload the target
vector is embedded from, or points that must reach both collections of a blue-green migration, or it
searches a vector space. Everything else is **passed through**: collection and index administration,
snapshots, the cluster, reads that return stored data as it is (``retrieve``, ``scroll``, ``count``,
``facet``), and the client's own plumbing.

A test enumerates the client's public methods and fails on any that is in neither table, so a
qdrant-client upgrade that adds a write or query method fails the suite instead of silently bypassing the
migration. Pure data: no I/O.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["ATTRIBUTES", "END", "PASSED_THROUGH", "ROUTED", "START", "Kind", "kind_of", "render"]

Kind = Literal["write", "query", "pass-through"]
"""What a method is to the wrapper."""

#: Routed methods and what each does, as the README's table shows them.
ROUTED: Final[dict[str, tuple[Kind, str]]] = {
    # writes
    "upsert": ("write", "routed vectors (dual-write: both in one upsert), model stamp, text re-embedded"),
    "upload_points": ("write", "as upsert, batch by batch (batch_size, parallel, generators)"),
    "upload_collection": ("write", "as upsert, batch by batch (vectors as lists, dicts or arrays)"),
    "batch_update_points": ("write", "each operation routed as its single-call twin, in order"),
    "update_vectors": ("write", "routed vectors kept in step, stamp follows update_filter"),
    "delete_vectors": ("write", "both models' vectors while dual-writing"),
    "delete": ("write", "both collections while a blue-green migration dual-writes"),
    "set_payload": ("write", "both collections (blue-green); a new text re-embeds the target vector"),
    "overwrite_payload": ("write", "as set_payload"),
    "delete_payload": ("write", "both collections (blue-green)"),
    "clear_payload": ("write", "both collections (blue-green)"),
    # queries
    "query_points": ("query", "using and the query embedding follow the routing (mixed mode before cutover)"),
    "query_batch_points": ("query", "each request routed as query_points"),
    "query_points_groups": ("query", "routed as query_points"),
    "search_matrix_pairs": ("query", "the routed vector"),
    "search_matrix_offsets": ("query", "the routed vector"),
}

#: Methods that reach the wrapped client unchanged, grouped by why.
PASSED_THROUGH: Final[dict[str, str]] = {
    **dict.fromkeys(
        (
            "collection_exists",
            "create_collection",
            "delete_collection",
            "get_collection",
            "get_collections",
            "recreate_collection",
            "update_collection",
            "create_payload_index",
            "delete_payload_index",
            "create_vector_name",
            "delete_vector_name",
            "get_aliases",
            "get_collection_aliases",
            "update_collection_aliases",
            "get_optimizations",
        ),
        "collection administration",
    ),
    **dict.fromkeys(
        (
            "create_full_snapshot",
            "create_shard_snapshot",
            "create_snapshot",
            "delete_full_snapshot",
            "delete_shard_snapshot",
            "delete_snapshot",
            "list_full_snapshots",
            "list_shard_snapshots",
            "list_snapshots",
            "recover_shard_snapshot",
            "recover_snapshot",
        ),
        "snapshots",
    ),
    **dict.fromkeys(
        (
            "cluster_collection_update",
            "cluster_status",
            "cluster_telemetry",
            "collection_cluster_info",
            "create_shard_key",
            "delete_shard_key",
            "list_shard_keys",
            "recover_current_peer",
            "remove_peer",
        ),
        "cluster and shards",
    ),
    **dict.fromkeys(
        ("count", "facet", "retrieve", "scroll"),
        "reads of stored data, returned as stored",
    ),
    **dict.fromkeys(
        (
            "get_embedding_size",
            "list_image_models",
            "list_late_interaction_multimodal_models",
            "list_late_interaction_text_models",
            "list_sparse_models",
            "list_text_models",
        ),
        "qdrant-client's model catalogue",
    ),
    **dict.fromkeys(
        ("DEFAULT_BATCH_SIZE", "close", "grpc_collections", "grpc_points", "http", "info", "init_options"),
        "the client's own plumbing",
    ),
    "migrate": "copies collections to another client, as stored (not an embedding-model migration)",
}


#: Attributes a client instance sets (``QdrantClient.__init__``), read through the wrapper unchanged.
ATTRIBUTES: Final[dict[str, str]] = {
    "cloud_inference": "whether Qdrant embeds models.Document (the wrapper's inference choice reads it)",
    "local_inference_batch_size": "qdrant-client's own batch size for local inference",
}


def kind_of(name: str) -> Kind | None:
    """``"write"``, ``"query"``, ``"pass-through"``, or ``None`` for a name in neither table."""
    if name in ROUTED:
        return ROUTED[name][0]
    if name in PASSED_THROUGH:
        return "pass-through"
    return None


START = "<!-- client-methods:start (generated by python -m lattice_qdrant.cli_reference) -->"
END = "<!-- client-methods:end -->"


def render() -> str:
    """Markdown: the routed methods (what each does during a migration) and the passed-through ones
    grouped by why, between the README's markers."""
    lines = [START, "", "| routed method | kind | during a migration |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | {kind} | {what} |" for name, (kind, what) in ROUTED.items()]
    groups: dict[str, list[str]] = {}
    for name, why in PASSED_THROUGH.items():
        groups.setdefault(why, []).append(name)
    lines += ["", "| passed through unchanged | methods |", "| --- | --- |"]
    lines += [f"| {why} | {', '.join(f'`{n}`' for n in sorted(names))} |" for why, names in groups.items()]
    lines += ["", END]
    return "\n".join(lines)
