"""Inference backends: a sentence-transformers model's forward pass on ONNX Runtime or OpenVINO, offline.

sentence-transformers' own ``backend="onnx"`` and ``"openvino"`` go through Optimum, whose ONNX and
OpenVINO releases pin a transformers older than sentence-transformers 6 needs (5.x), so this module does the
same job with torch's ONNX exporter and the runtimes alone. Only the transformer's forward pass moves: the
model is loaded with torch as usual, its transformer is exported to ONNX once, and the exported graph
replaces it inside the loaded model. Tokenizing, truncation, pooling, normalisation and prompts stay the
sentence-transformers model's own, so every backend sees the same inputs and pools the same way.

The exports are cached on disk, outside the installed packages: ``<cache>/onnx/<key>/<variant>/model.onnx``,
where ``<cache>`` is the ``cache_dir`` given, else ``$LATTICE_QDRANT_CACHE_DIR``, else
``$XDG_CACHE_HOME/lattice-qdrant`` (``~/.cache/lattice-qdrant``); ``<key>`` is a SHA-256 of the
transformer's config and weights (so the same weights share one export wherever they were loaded from, and
other weights never reuse it) and ``<variant>`` is ``fp32`` or ``int8``. A variant is written into a
temporary folder beside its place and renamed into it, so a reader never sees half an export and two
processes exporting at once both end up with one complete copy.

``int8`` is ONNX Runtime's dynamic quantization of the fp32 export (int8 weights per channel, in 7 bits:
:data:`~lattice_qdrant.spec.QUANTIZATION_RECIPES`); OpenVINO compiles the fp32 export with fp32 inference
precision (on a CPU with bf16 support it would otherwise pick bf16).

This module imports torch, and is imported only when a model runs on another backend than torch.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import EmbedderError, MissingDependencyError

__all__ = [
    "CACHE_ENV",
    "EXPORT_FORMAT",
    "OnnxTransformer",
    "OpenVinoTransformer",
    "attach",
    "cache_root",
    "export",
    "require",
    "weights_key",
]

log = logging.getLogger("lattice_qdrant.inference")

CACHE_ENV = "LATTICE_QDRANT_CACHE_DIR"
#: part of every export's key: bump it when the exported graph changes, so old exports are not reused
EXPORT_FORMAT = 1
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_OUTPUT = "last_hidden_state"
_OPSET = 17
_STALE_SECONDS = 86_400.0


def require(backend: str, quantization: str | None) -> None:
    """Refuse a backend whose packages are missing, naming the extra that installs them.

    Raises:
        MissingDependencyError: ``onnxruntime`` or ``onnx`` (extra ``onnx``), or ``openvino`` (extra
            ``openvino``) is not installed.
    """
    if backend not in ("onnx", "openvino"):
        raise EmbedderError(f"unknown inference backend {backend!r}; use torch, onnx or openvino")
    needed = [("onnxruntime", "onnx")] if backend == "onnx" else [("openvino", "openvino")]
    needed.append(("onnx", backend))  # torch's exporter writes the graph with it
    if quantization is not None:
        needed.append(("onnxruntime.quantization", "onnx"))
    for module, extra in needed:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingDependencyError(module.partition(".")[0], extra) from exc


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder the exports are cached in: ``cache_dir``, ``$LATTICE_QDRANT_CACHE_DIR``, or the user's
    cache (``$XDG_CACHE_HOME/lattice-qdrant``, else ``~/.cache/lattice-qdrant``)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "lattice-qdrant"


def weights_key(model: torch.nn.Module) -> str:
    """SHA-256 (hex) of the export format, a transformer's config and its weights: an export's cache key."""
    digest = hashlib.sha256(f"lattice-qdrant onnx export {EXPORT_FORMAT}\n".encode())
    config = getattr(model, "config", None)
    to_json = getattr(config, "to_json_string", None)
    digest.update((to_json() if callable(to_json) else type(model).__qualname__).encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"\n{name} {flat.dtype} {tuple(tensor.shape)}\n".encode())
        if flat.numel():
            digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


class _Forward(torch.nn.Module):
    """The transformer's forward pass with positional inputs and one output, as the exporter traces it."""

    def __init__(self, model: torch.nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        output = self.model(**dict(zip(self.names, inputs, strict=True)), return_dict=True)
        hidden: torch.Tensor = output[_OUTPUT]
        return hidden


def _sample(tokenizer: Any) -> dict[str, torch.Tensor]:
    # Two texts of different lengths: the first is padded, so the traced graph keeps the attention mask
    # (transformers drops a mask of all ones, and the tracer would record that branch).
    encoded = tokenizer(
        ["a short text", "a longer text, so that the first one of the two needs padding"],
        padding=True,
        return_tensors="pt",
    )
    return {name: encoded[name] for name in _INPUTS if name in encoded}


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and the quantizer's warnings (deprecations, tracer notes, log lines)."""
    root = logging.getLogger()

    def drop(record: logging.LogRecord) -> bool:
        return False

    root.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(drop)


def _export_fp32(model: torch.nn.Module, tokenizer: Any, path: Path) -> tuple[str, ...]:
    sample = _sample(tokenizer)
    names = tuple(sample)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*names, _OUTPUT)}
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            _Forward(model.eval(), names),
            tuple(sample[n] for n in names),
            str(path),
            input_names=list(names),
            output_names=[_OUTPUT],
            dynamic_axes=axes,
            opset_version=_OPSET,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter: seconds, not minutes, and no onnxscript
        )
    return names


def _quantize_int8(source: Path, path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    large = sum(f.stat().st_size for f in source.parent.iterdir()) > 1_900_000_000
    with _quiet():
        quantize_dynamic(
            source,
            path,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            use_external_data_format=large,
        )


def _variant(folder: Path, build: Callable[[Path], dict[str, Any]]) -> tuple[Path, bool]:
    """``folder/model.onnx``, built into a temporary folder and renamed into place unless it exists.

    Returns:
        The model file, and whether this call built it.
    """
    model = folder / "model.onnx"
    if model.is_file():
        return model, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    _sweep(folder)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        metadata = build(temporary / "model.onnx")
        (temporary / "export.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        try:
            temporary.rename(folder)
        except OSError:
            if not model.is_file():
                raise
            return model, False  # another process renamed its copy first: the same export
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return model, True


def _sweep(folder: Path) -> None:
    """Remove what exports of ``folder`` killed long ago left behind (a live one is never this old)."""
    cutoff = time.time() - _STALE_SECONDS
    for leftover in folder.parent.glob(f".{folder.name}-*"):
        try:
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue


def _metadata(names: tuple[str, ...], **more: Any) -> dict[str, Any]:
    return {"format": EXPORT_FORMAT, "inputs": list(names), "torch": torch.__version__, **more}


def export(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    quantization: str | None,
    cache_dir: str | os.PathLike[str] | None,
) -> tuple[Path, tuple[str, ...]]:
    """The cached ONNX file of a transformer (fp32, or ``int8``), exported now if it is not cached yet.

    Returns:
        The ``.onnx`` file and the input names its graph takes.
    """
    key = weights_key(model)
    base = cache_root(cache_dir) / "onnx" / key
    names: tuple[str, ...] = ()

    def build_fp32(path: Path) -> dict[str, Any]:
        nonlocal names
        started = time.monotonic()
        log.info("exporting %s to ONNX in %s", type(model).__name__, base)
        names = _export_fp32(model, tokenizer, path)
        return _metadata(names, seconds=round(time.monotonic() - started, 3))

    fp32, _ = _variant(base / "fp32", build_fp32)
    names = tuple(json.loads((fp32.parent / "export.json").read_text())["inputs"])
    if quantization is None:
        return fp32, names
    if quantization != "int8":
        raise EmbedderError(f"unknown quantization {quantization!r}; the onnx backend has int8")

    def build_int8(path: Path) -> dict[str, Any]:
        log.info("quantizing the ONNX export in %s to int8", base)
        _quantize_int8(fp32, path)
        return _metadata(names, quantization="int8", source="fp32")

    int8, _ = _variant(base / "int8", build_int8)
    return int8, names


class _Output(dict[str, torch.Tensor]):
    """The transformer's output as sentence-transformers reads it (by key, or as an attribute)."""

    @property
    def last_hidden_state(self) -> torch.Tensor:
        return self[_OUTPUT]


def _feed(names: tuple[str, ...], features: dict[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
    ids = features["input_ids"]
    feed: dict[str, np.ndarray[Any, Any]] = {}
    for name in names:
        value = features.get(name)
        # A tokenizer that gives no token types means a single segment: zeros.
        tensor = value if value is not None else torch.zeros_like(ids)
        feed[name] = tensor.detach().to("cpu").numpy().astype(np.int64, copy=False)
    return feed


class OnnxTransformer(torch.nn.Module):
    """A transformer whose forward pass runs an ONNX graph on ONNX Runtime (in place of the torch model)."""

    def __init__(self, path: Path, names: tuple[str, ...], config: Any, device: str) -> None:
        super().__init__()
        import onnxruntime

        self.config = config
        self.path = path
        self.names = names
        providers: list[Any]
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device == "cuda" or device.startswith("cuda:"):
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise EmbedderError(
                    f"device {device!r}: this onnxruntime has no CUDA provider; install onnxruntime-gpu "
                    "in place of onnxruntime, or run the torch backend on the GPU"
                )
            index = int(device.partition(":")[2] or 0)
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        else:
            raise EmbedderError(f"the onnx backend runs on cpu or cuda[:N], not on {device!r}")
        self.session = onnxruntime.InferenceSession(str(path), providers=providers)

    def forward(self, **features: Any) -> _Output:
        (hidden,) = self.session.run([_OUTPUT], _feed(self.names, features))
        return _Output({_OUTPUT: torch.from_numpy(np.ascontiguousarray(hidden))})


class OpenVinoTransformer(torch.nn.Module):
    """A transformer whose forward pass runs the ONNX graph compiled by OpenVINO, in fp32."""

    def __init__(self, path: Path, names: tuple[str, ...], config: Any, device: str) -> None:
        super().__init__()
        import openvino

        self.config = config
        self.path = path
        self.names = names
        target = device.upper()
        if target not in ("CPU", "GPU", "NPU") and not target.startswith("GPU."):
            raise EmbedderError(f"the openvino backend runs on cpu, gpu[.N] or npu, not on {device!r}")
        properties = {"INFERENCE_PRECISION_HINT": "f32"} if target == "CPU" else {}
        self.compiled = openvino.Core().compile_model(str(path), target, properties)
        # An infer request is not safe to share between threads: one per thread.
        self._local = threading.local()

    def forward(self, **features: Any) -> _Output:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(_feed(self.names, features), share_outputs=False)
        hidden = np.ascontiguousarray(result[self.compiled.output(0)], dtype=np.float32)
        return _Output({_OUTPUT: torch.from_numpy(hidden)})


def attach(
    st_model: Any,
    *,
    backend: str,
    quantization: str | None,
    device: str,
    cache_dir: str | os.PathLike[str] | None,
) -> Path:
    """Run a loaded sentence-transformers model's transformer on ``backend``; return the graph it runs.

    Raises:
        MissingDependencyError: the backend's packages are not installed.
        EmbedderError: the model does not start with a transformer module, or the device does not suit
            the backend.
    """
    require(backend, quantization)
    first = st_model[0]
    transformer = getattr(first, "model", None)
    tokenizer = getattr(first, "tokenizer", None)
    output = getattr(first, "modality_config", {}).get("text", {}).get("method_output_name", _OUTPUT)
    if not isinstance(transformer, torch.nn.Module) or tokenizer is None or output != _OUTPUT:
        raise EmbedderError(
            f"the {backend} backend runs models whose first module is a transformer giving "
            f"{_OUTPUT}; this one starts with {type(first).__name__}"
        )
    if quantization is not None and backend != "onnx":
        raise EmbedderError(f"quantization {quantization!r} needs the onnx backend, not {backend!r}")
    path, names = export(transformer, tokenizer, quantization=quantization, cache_dir=cache_dir)
    runner = OnnxTransformer if backend == "onnx" else OpenVinoTransformer
    first.model = runner(path, names, transformer.config, device)
    return path
