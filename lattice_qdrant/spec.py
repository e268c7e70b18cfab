"""Model specs: what identifies an embedding model, and when two specs mean the same vectors.

A spec carries a human id (``model_id``), an integer ``version``, the vector shape (``dimension``,
``distance``) and the configuration that decides what the vectors are: the underlying model ``name``,
``revision``, ``pooling``, ``normalize``, ``max_length`` and ``prompt``. The checksum is the SHA-256 of
that configuration alone, so renaming a model (another ``model_id``) keeps its checksum and needs no
re-embed, while changing any setting changes the checksum.

A spec also says how the model runs: its inference ``backend`` (``torch``, ``onnx``, ``openvino``) and its
``quantization``. The backends compute the same function, and their vectors agree far within verify's
tolerance (ONNX Runtime's fp32 vectors are torch's to about 1e-7), so a backend alone is not part of the
identity: the same model under another backend keeps its checksum, and its vectors need no re-embed. A
quantized model computes another function (int8 weights give vectors at cosine 0.98-0.99 to the fp32
ones): its recipe enters the configuration, so its checksum differs.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["QUANTIZATION_RECIPES", "Backend", "Distance", "ModelSpec", "Quantization"]

#: how a model's forward pass runs: sentence-transformers' torch model, ONNX Runtime or OpenVINO
Backend = Literal["torch", "onnx", "openvino"]
#: a quantization of the model's weights
Quantization = Literal["int8"]

QUANTIZATION_RECIPES: dict[tuple[str, str], str] = {
    ("onnx", "int8"): "onnxruntime-dynamic-qint8-per-channel-reduce-range",
}
"""The recipe behind each (backend, quantization) a spec may name. The recipe is part of the checksum:
another recipe gives other vectors, so it would be another model. ``reduce_range`` (7-bit weights) keeps
the int8 kernels of CPUs without VNNI from saturating, so every machine of a fleet computes the same
vectors."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")


class Distance(StrEnum):
    """Vector distance, spelled as Qdrant spells it."""

    COSINE = "Cosine"
    DOT = "Dot"
    EUCLID = "Euclid"
    MANHATTAN = "Manhattan"


class ModelSpec(BaseModel):
    """An embedding model as the migration knows it.

    Attributes:
        model_id: short, stable id users refer to (``minilm``); letters, digits, ``._/-``.
        version: integer version under that id; bump it when the configuration changes.
        dimension: size of the vectors.
        distance: Qdrant distance of the named vector.
        name: the underlying model (``sentence-transformers/all-MiniLM-L6-v2``, ``hash:bow``).
        revision: model revision or weights hash, if pinned.
        pooling: pooling mode (``mean``, ``cls``, ...).
        normalize: whether vectors are L2-normalised.
        max_length: maximum tokens (longer text is truncated by the model).
        prompt: text prepended to every input, if any.
        backend: how the forward pass runs (``torch``, ``onnx``, ``openvino``); not part of the checksum.
        quantization: ``int8`` (with the ``onnx`` backend) for a dynamically quantized model, or ``None``;
            part of the checksum.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str
    version: int = Field(ge=1)
    dimension: int = Field(ge=1, le=65536)
    distance: Distance = Distance.COSINE
    name: str
    revision: str | None = None
    pooling: str = "mean"
    normalize: bool = True
    max_length: int | None = Field(default=None, ge=1)
    prompt: str | None = None
    backend: Backend = "torch"
    quantization: Quantization | None = None

    @field_validator("model_id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                f"model_id {value!r} must be 1-128 characters of letters, digits and ._/- "
                "starting with a letter or digit"
            )
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be empty")
        return value

    @model_validator(mode="after")
    def _check_quantization(self) -> ModelSpec:
        if self.quantization is not None and (self.backend, self.quantization) not in QUANTIZATION_RECIPES:
            known = ", ".join(f"{q} with backend {b}" for b, q in QUANTIZATION_RECIPES)
            raise ValueError(
                f"quantization {self.quantization!r} is not available with backend {self.backend!r} "
                f"(available: {known})"
            )
        return self

    def configuration(self) -> dict[str, Any]:
        """The settings that decide what the vectors are (the checksum's input).

        The backend is not among them (every backend computes the same vectors); a quantization is, as its
        recipe (:data:`QUANTIZATION_RECIPES`), and only when set, so the checksums of unquantized specs are
        those they always were.
        """
        configuration: dict[str, Any] = {
            "name": self.name,
            "revision": self.revision,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "prompt": self.prompt,
        }
        if self.quantization is not None:
            configuration["quantization"] = QUANTIZATION_RECIPES[(self.backend, self.quantization)]
        return configuration

    @property
    def checksum(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`configuration`."""
        canonical = json.dumps(self.configuration(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def qualified_id(self) -> str:
        """``{model_id}:v{version}:{checksum[:8]}``."""
        return f"{self.model_id}:v{self.version}:{self.checksum[:8]}"

    @property
    def vector_name(self) -> str:
        """Default named-vector name for this model in a collection (``minilm-v2``)."""
        return f"{self.model_id.replace('/', '-')}-v{self.version}"

    def same_vectors_as(self, other: ModelSpec) -> bool:
        """Whether vectors of ``other`` are interchangeable with ours (a rename is, and so is another backend;
        a quantization is not)."""
        return (
            self.checksum == other.checksum
            and self.dimension == other.dimension
            and self.distance == other.distance
        )

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe form for storing in Qdrant."""
        data = self.model_dump(mode="json")
        data["checksum"] = self.checksum
        data["qualified_id"] = self.qualified_id
        return data

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_payload` (derived fields are recomputed, not trusted)."""
        fields = {k: v for k, v in payload.items() if k in cls.model_fields}
        return cls.model_validate(fields)
