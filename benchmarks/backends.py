"""Inference backends side by side: throughput and agreement with torch, in one run (not a test).

``scripts/bench backends`` runs it. all-MiniLM-L6-v2 embeds the same texts of the demo corpus
(:mod:`benchmarks.corpus`) on each backend: torch (sentence-transformers' own model), ONNX Runtime fp32,
ONNX Runtime int8 (dynamic quantization) and OpenVINO fp32 (when the ``openvino`` extra is installed).
Two sets of texts: a seeded sample of the corpus (mixed lengths) and its longest texts. Each backend embeds
each set ``--repeat`` times, interleaved with the others, with the same packing by tokens; the table shows
the median texts per second, the ratio to torch, and how the vectors agree with torch's: mean and least
cosine, and the share verify would pass at its default tolerance. The last column says whether the
backend's spec keeps torch's checksum (the same model), which the quantized one does not.

The first load of an onnx or openvino backend exports the model to the export cache (``--cache-dir``; by
default the user's cache, so a second run reuses it); the load column shows that time.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.corpus import python_docs
from lattice_qdrant import verify
from lattice_qdrant.embedders import MINILM, SentenceTransformerEmbedder
from lattice_qdrant.errors import EmbedderError, MissingDependencyError
from lattice_qdrant.kernels import vectors_match
from lattice_qdrant.spec import Distance

__all__ = ["VARIANTS", "main"]

#: verify's default tolerance: a re-embedding passes at a cosine of at least ``1 - TOLERANCE``
TOLERANCE: float = inspect.signature(verify.verify).parameters["tolerance"].default


@dataclass(frozen=True)
class Variant:
    """One way of running the model."""

    label: str
    backend: str
    quantization: str | None = None


VARIANTS = (
    Variant("torch", "torch"),
    Variant("onnx fp32", "onnx"),
    Variant("onnx int8", "onnx", "int8"),
    Variant("openvino fp32", "openvino"),
)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _versions() -> str:
    found = []
    for module in ("torch", "onnxruntime", "openvino"):
        try:
            version = getattr(__import__(module), "__version__", "?")
        except ImportError:
            version = "not installed"
        found.append(f"{module} {version}")
    return ", ".join(found)


def _load(
    variant: Variant, args: argparse.Namespace
) -> tuple[SentenceTransformerEmbedder | None, str, float]:
    """The embedder (``None`` with the reason when it cannot run here) and the seconds its load took."""
    embedder = SentenceTransformerEmbedder(
        args.model,
        backend=variant.backend,  # type: ignore[arg-type]
        quantization=variant.quantization,  # type: ignore[arg-type]
        tokens_per_pass=args.tokens_per_pass or None,
        cache_dir=args.cache_dir,
    )
    started = time.perf_counter()
    try:
        embedder.load()
    except MissingDependencyError as exc:
        return None, f"not installed ({exc})", 0.0
    except EmbedderError as exc:
        return None, f"failed: {exc}", 0.0
    return embedder, "", time.perf_counter() - started


def _agreement(reference: NDArray[np.float32], vectors: NDArray[np.float32]) -> dict[str, float]:
    cosines = np.einsum("ij,ij->i", reference.astype(np.float64), vectors.astype(np.float64))
    cosines /= np.linalg.norm(reference, axis=1) * np.linalg.norm(vectors, axis=1)
    pairs = zip(reference, vectors, strict=True)
    passed = [vectors_match(r, v, Distance.COSINE, TOLERANCE)[0] for r, v in pairs]
    return {
        "mean_cosine": float(cosines.mean()),
        "min_cosine": float(cosines.min()),
        "within_tolerance": sum(passed) / len(passed),
    }


def _measure(
    embedders: dict[str, SentenceTransformerEmbedder], texts: Sequence[str], repeat: int
) -> dict[str, dict[str, Any]]:
    """Median texts per second of each embedder on ``texts``, runs interleaved; the first run's vectors."""
    for embedder in embedders.values():
        embedder.embed(texts[: min(len(texts), 32)])  # warm up: first-call allocations, thread pools
    seconds: dict[str, list[float]] = {label: [] for label in embedders}
    vectors: dict[str, NDArray[np.float32]] = {}
    for _ in range(repeat):
        for label, embedder in embedders.items():
            started = time.perf_counter()
            got = embedder.embed(texts)
            seconds[label].append(time.perf_counter() - started)
            vectors.setdefault(label, got)
    return {
        label: {"tps": len(texts) / statistics.median(times), "vectors": vectors[label]}
        for label, times in seconds.items()
    }


def _table(
    title: str,
    texts: Sequence[str],
    embedders: dict[str, SentenceTransformerEmbedder],
    missing: dict[str, str],
    loads: dict[str, float],
    repeat: int,
) -> list[dict[str, Any]]:
    chars = [len(t) for t in texts]
    _out(
        f"\n{title}: {len(texts)} texts, {statistics.mean(chars):.0f} characters on average "
        f"(longest {max(chars)}); median of {repeat} interleaved runs"
    )
    _out(
        f"{'backend':<14} {'texts/s':>8} {'vs torch':>9} {'mean cos':>9} {'min cos':>8} "
        f"{'verify ok':>9} {'load s':>7}  same model"
    )
    measured = _measure(embedders, texts, repeat)
    reference = measured["torch"]
    torch_checksum = embedders["torch"].spec("m").checksum
    rows: list[dict[str, Any]] = []
    for variant in VARIANTS:
        label = variant.label
        if label in missing:
            _out(f"{label:<14} {missing[label]}")
            rows.append({"backend": label, "skipped": missing[label]})
            continue
        result = measured[label]
        agreement = _agreement(reference["vectors"], result["vectors"])
        same = embedders[label].spec("m").checksum == torch_checksum
        row = {
            "backend": label,
            "texts": len(texts),
            "tps": result["tps"],
            "vs_torch": result["tps"] / reference["tps"],
            "load_seconds": loads[label],
            "same_checksum": same,
            **agreement,
        }
        rows.append(row)
        _out(
            f"{label:<14} {row['tps']:>8.1f} {row['vs_torch']:>8.2f}x {row['mean_cosine']:>9.4f} "
            f"{row['min_cosine']:>8.4f} {row['within_tolerance']:>8.0%} {row['load_seconds']:>7.1f}  "
            f"{'yes' if same else 'no (its own checksum)'}"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the tables (``--json PATH`` saves them)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=MINILM, help="sentence-transformers model")
    parser.add_argument("--texts", type=int, default=256, help="texts in each set")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (median kept)")
    parser.add_argument("--tokens-per-pass", type=int, default=1024, help="0: fixed passes of 16 texts")
    parser.add_argument("--cache-dir", help="ONNX export cache (default: the user's cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _out(
        f"lattice-qdrant inference backends  ({args.model}; cpus: {os.cpu_count()}, "
        f"{platform.machine()}; {_versions()})"
    )
    corpus = [d.text for d in python_docs()]
    sample = random.Random(args.seed).sample(corpus, min(args.texts, len(corpus)))
    longest = sorted(corpus, key=len, reverse=True)[: args.texts]

    embedders: dict[str, SentenceTransformerEmbedder] = {}
    missing: dict[str, str] = {}
    loads: dict[str, float] = {}
    for variant in VARIANTS:
        embedder, reason, seconds = _load(variant, args)
        if embedder is None:
            if variant.backend == "torch":
                _out(f"torch could not run: {reason}")
                return 1
            missing[variant.label] = reason
        else:
            embedders[variant.label] = embedder
            loads[variant.label] = seconds
    results: dict[str, Any] = {"model": args.model, "tolerance": TOLERANCE}
    for key, title, texts in (
        ("mixed", "mixed lengths (a sample of the corpus)", sample),
        ("long", "long texts (the corpus's longest)", longest),
    ):
        results[key] = _table(title, texts, embedders, missing, loads, args.repeat)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
