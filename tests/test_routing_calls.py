"""The pure readings of qdrant-client's routed calls (routing.py): no store, no client."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from qdrant_client import models

import lattice_qdrant as lq
from lattice_qdrant.routing import (
    TextChange,
    as_request,
    batched,
    in_memory,
    inference_mode,
    request_options,
    selected,
    single_call,
    text_change,
    upload_problem,
    upload_rows,
)


def test_batched_reads_lazily_and_refuses_an_empty_batch_size() -> None:
    pulled: list[int] = []

    def items() -> Any:
        for i in range(10):
            pulled.append(i)
            yield i

    batches = batched(items(), 4)
    assert next(batches) == [0, 1, 2, 3] and pulled == [0, 1, 2, 3]
    assert list(batches) == [[4, 5, 6, 7], [8, 9]]
    with pytest.raises(lq.VectorValidationError, match="batch_size"):
        next(batched([1], 0))


def test_upload_rows_read_every_shape_of_vectors() -> None:
    array = np.arange(6, dtype=np.float32).reshape(3, 2)
    rows = list(upload_rows(array, [{"a": 1}, {"a": 2}, {"a": 3}], [1, 2, 3]))
    assert [(p.id, p.vector, p.payload) for p in rows] == [
        (1, [0.0, 1.0], {"a": 1}),
        (2, [2.0, 3.0], {"a": 2}),
        (3, [4.0, 5.0], {"a": 3}),
    ]
    named = list(upload_rows({"v": array, "w": [[9.0]] * 3}, None, None))
    assert named[2].vector == {"v": [4.0, 5.0], "w": [9.0]} and named[2].payload == {}
    assert all(uuid.UUID(p.id) for p in named)  # random ids, as qdrant-client makes them
    streamed = list(upload_rows(({"v": [float(i)]} for i in range(5)), None, iter([uuid.UUID(int=7), 8])))
    assert [p.id for p in streamed] == [str(uuid.UUID(int=7)), 8]  # a stream ends with the shortest


def test_upload_problems_and_what_is_held_in_memory() -> None:
    assert upload_problem({"v": np.zeros((3, 2)), "w": np.zeros((2, 2))}, None, None) is not None
    assert upload_problem(np.zeros((3, 2)), None, [1, 2]) == "ids has 2 items for 3 vectors"
    assert upload_problem(np.zeros((3, 2)), iter([{}]), None) is None  # a stream is not counted
    assert in_memory(np.zeros((3, 2)), None, range(3))
    assert in_memory({"v": [[1.0]]}, [{}], None)
    assert not in_memory(iter([[1.0]]), None, None)
    assert not in_memory([[1.0]], iter([{}]), None)


def test_every_operation_of_a_batch_has_a_single_call_twin() -> None:
    flt = models.Filter(must=[models.HasIdCondition(has_id=[1])])
    operations = [
        models.UpsertOperation(upsert=models.PointsList(points=[models.PointStruct(id=1, vector=[0.1])])),
        models.DeleteOperation(delete=models.PointIdsList(points=[1])),
        models.SetPayloadOperation(set_payload=models.SetPayload(payload={"a": 1}, filter=flt, key="k")),
        models.OverwritePayloadOperation(overwrite_payload=models.SetPayload(payload={"a": 1}, points=[2])),
        models.DeletePayloadOperation(delete_payload=models.DeletePayload(keys=["a"], points=[3])),
        models.ClearPayloadOperation(clear_payload=models.FilterSelector(filter=flt)),
        models.UpdateVectorsOperation(
            update_vectors=models.UpdateVectors(points=[models.PointVectors(id=1, vector={"v": [0.1]})])
        ),
        models.DeleteVectorsOperation(delete_vectors=models.DeleteVectors(vector=["v"], points=[4])),
    ]
    calls = [single_call(op) for op in operations]
    assert [c[0] for c in calls] == [
        "upsert",
        "delete",
        "set_payload",
        "overwrite_payload",
        "delete_payload",
        "clear_payload",
        "update_vectors",
        "delete_vectors",
    ]
    assert calls[2][1] == {"payload": {"a": 1}, "points": flt, "shard_key_selector": None, "key": "k"}
    assert calls[7][1]["vectors"] == ["v"] and calls[7][1]["points"] == [4]
    nowhere = models.SetPayloadOperation(set_payload=models.SetPayload(payload={"a": 1}))
    assert "selects no points" in str(single_call(nowhere))
    assert "unsupported operation" in str(single_call(object()))


def test_a_query_request_reads_as_query_points_arguments_and_back() -> None:
    request = models.QueryRequest(
        query=[0.1, 0.2], using="v", filter=models.Filter(), limit=3, with_vector=True, with_payload=False
    )
    options = request_options(request)
    assert options == {
        "query": [0.1, 0.2],
        "using": "v",
        "query_filter": models.Filter(),
        "limit": 3,
        "with_vectors": True,
        "with_payload": False,
    }
    assert as_request(options) == request
    with pytest.raises(lq.VectorValidationError, match="group_size"):
        as_request({"group_size": 2})


@pytest.mark.parametrize(
    ("method", "arguments", "change"),
    [
        ("set_payload", {"payload": {"text": "new"}}, TextChange("new")),
        ("set_payload", {"payload": {"other": 1}}, None),
        ("set_payload", {"payload": {"text": 5}}, TextChange(None)),
        ("set_payload", {"payload": {"a": 1}, "key": "text.inner"}, TextChange(None)),
        ("set_payload", {"payload": {"text": "x"}, "key": "meta"}, None),
        ("overwrite_payload", {"payload": {"other": 1}}, TextChange(None)),
        ("overwrite_payload", {"payload": {"text": "y"}}, TextChange("y")),
        ("delete_payload", {"keys": ["other"]}, None),
        ("delete_payload", {"keys": ["text"]}, TextChange(None)),
        ("clear_payload", {}, TextChange(None)),
    ],
)
def test_which_payload_writes_change_the_text(method: str, arguments: dict[str, Any], change: Any) -> None:
    assert text_change(method, "text", **arguments) == change


def test_a_points_selector_is_ids_or_a_filter() -> None:
    flt = models.Filter(must=[models.HasIdCondition(has_id=[1])])
    assert selected([1, 2]) == ([1, 2], None)
    assert selected(models.PointIdsList(points=[3])) == ([3], None)
    assert selected(flt) == (None, flt)
    assert selected(models.FilterSelector(filter=flt)) == (None, flt)
    with pytest.raises(lq.VectorValidationError, match="unsupported points selector"):
        selected(7)


def test_the_inference_is_never_chosen_silently() -> None:
    assert inference_mode(False, None) == "local"
    assert inference_mode(True, "local") == "local"
    assert inference_mode(True, "server") == "server"
    with pytest.raises(lq.ConfigError, match="cloud_inference=True: say where"):
        inference_mode(True, None)
    with pytest.raises(lq.ConfigError, match="needs a client made with"):
        inference_mode(False, "server")
    with pytest.raises(lq.ConfigError, match="'local' or 'server'"):
        inference_mode(False, "remote")  # type: ignore[arg-type]
