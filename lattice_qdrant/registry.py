"""The model registry: specs stored in Qdrant's control collection, visible to every process.

Registering is idempotent (the same spec twice is a no-op) and never overwrites: a different configuration
under the same ``model_id`` and ``version`` raises :class:`~lattice_qdrant.errors.ModelConflictError`.
"""

from __future__ import annotations

from .errors import ModelConflictError, ModelNotFoundError
from .spec import ModelSpec
from .store import Store

__all__ = ["ModelRegistry"]

_KIND = "model"


def _key(model_id: str, version: int) -> str:
    return f"{model_id}:v{version}"


class ModelRegistry:
    """Model specs persisted in the control collection.

    Args:
        store: the store adapter of the Qdrant holding the registry.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, spec: ModelSpec) -> bool:
        """Register a spec; return ``True`` if it was new, ``False`` if already registered.

        Raises:
            ModelConflictError: another spec holds the same ``model_id`` and ``version``.
        """
        key = _key(spec.model_id, spec.version)
        for _ in range(2):
            stored = self.store.get_record(_KIND, key)
            if stored is not None:
                registered = ModelSpec.from_payload(stored["spec"])
                if registered != spec:
                    raise ModelConflictError(
                        spec.model_id, spec.version, _describe(registered), _describe(spec)
                    )
                return False
            if self.store.insert_record(_KIND, key, {"spec": spec.to_payload()}):
                return True
            # Another process registered this key between our read and our insert: compare with it.
        return False

    def check(self, spec: ModelSpec) -> None:
        """Refuse a spec that :meth:`register` would refuse, writing nothing. Read-only.

        Raises:
            ModelConflictError: another spec holds the same ``model_id`` and ``version``.
        """
        stored = self.store.get_record(_KIND, _key(spec.model_id, spec.version))
        if stored is not None:
            registered = ModelSpec.from_payload(stored["spec"])
            if registered != spec:
                raise ModelConflictError(spec.model_id, spec.version, _describe(registered), _describe(spec))

    def get(self, model_id: str, version: int | None = None) -> ModelSpec:
        """The spec of ``model_id`` at ``version`` (the highest version when ``None``). Read-only.

        Raises:
            ModelNotFoundError: nothing is registered under that id (and version).
        """
        if version is not None:
            stored = self.store.get_record(_KIND, _key(model_id, version))
            if stored is None:
                raise ModelNotFoundError(f"model {model_id!r} version {version} is not registered")
            return ModelSpec.from_payload(stored["spec"])
        versions = [s for s in self.list() if s.model_id == model_id]
        if not versions:
            raise ModelNotFoundError(f"model {model_id!r} is not registered")
        return max(versions, key=lambda s: s.version)

    def resolve(self, ref: str) -> ModelSpec:
        """A spec from ``model_id``, ``model_id:vN`` or a qualified id ``model_id:vN:checksum``."""
        parts = ref.split(":")
        if len(parts) == 1:
            return self.get(parts[0])
        if len(parts) in (2, 3) and parts[1].startswith("v") and parts[1][1:].isdigit():
            spec = self.get(parts[0], int(parts[1][1:]))
            if len(parts) == 3 and not spec.checksum.startswith(parts[2]):
                raise ModelNotFoundError(
                    f"{ref!r} does not match the registered {spec.qualified_id} (checksum differs)"
                )
            return spec
        raise ModelNotFoundError(
            f"{ref!r} is not a model reference (use MODEL_ID, MODEL_ID:vN or MODEL_ID:vN:CHECKSUM)"
        )

    def list(self) -> list[ModelSpec]:
        """Every registered spec, by id then version. Read-only."""
        specs = [ModelSpec.from_payload(r["spec"]) for r in self.store.list_records(_KIND)]
        return sorted(specs, key=lambda s: (s.model_id, s.version))


def _describe(spec: ModelSpec) -> str:
    runs = "" if spec.backend == "torch" and spec.quantization is None else f", backend {spec.backend}"
    if spec.quantization is not None:
        runs += f" {spec.quantization}"
    return f"{spec.qualified_id} ({spec.name}, {spec.dimension}-d {spec.distance.value}{runs})"
