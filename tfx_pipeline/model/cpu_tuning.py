"""CPU training settings decided by a benchmark on the machine at hand.

The CPUs these pipelines run on differ (some do bfloat16 in hardware, some
gain from XLA, some lose), so no setting is chosen by ISA name: the CPU's
flags only say which candidates are worth timing, and a few training steps of
the real model on real batches pick the fastest. The decision is remembered
per machine and workload, so the benchmark runs once.

Example:

>>> settings = candidate_settings(has_bfloat16=True)
>>> [(s.jit_compile, s.precision) for s in settings]
[(False, 'float32'), (True, 'float32'), (False, 'mixed_bfloat16'), (True, 'mixed_bfloat16')]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import time
from typing import Any, Callable

import keras
import tensorflow as tf

from tfx_pipeline import storage
from tfx_pipeline.config import Precision

log = logging.getLogger("tfx_pipeline.cpu_tuning")

# Flags that mean the CPU computes bfloat16 dot products itself (x86 AVX-512 BF16
# and AMX, Arm's BF16 extension); without one, bfloat16 is emulated and slower.
_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@dataclasses.dataclass(frozen=True)
class CpuSettings:
    jit_compile: bool
    precision: Precision


def _cpuinfo(field_prefixes: tuple[str, ...]) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of the prefixes."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(field_prefixes):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags, from /proc/cpuinfo (empty where it does not exist)."""
    return set((_cpuinfo(("flags", "Features")) or "").split())


def cpu_model() -> str:
    return _cpuinfo(("model name",)) or platform.processor() or platform.machine()


def has_bfloat16(flags: set[str] | None = None) -> bool:
    return bool((cpu_flags() if flags is None else flags) & set(_BFLOAT16_FLAGS))


def candidate_settings(has_bfloat16: bool) -> list[CpuSettings]:
    precisions: list[Precision] = ["float32", "mixed_bfloat16"] if has_bfloat16 else ["float32"]
    return [CpuSettings(jit, precision) for precision in precisions for jit in (False, True)]


def machine_key(workload: dict[str, Any]) -> str:
    """What the decision depends on: the CPU, its core count, TensorFlow and oneDNN, the workload."""
    flags = cpu_flags()
    identity = {"cpu": cpu_model(), "cores": os.cpu_count(), "bfloat16": has_bfloat16(flags),
                "avx512": sorted(f for f in flags if f.startswith(("avx512", "amx"))),
                "tensorflow": tf.__version__, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), **workload}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def time_training_steps(model: keras.Model, batches: list, warmup_rounds: int = 1, timed_rounds: int = 2) -> float:
    """Examples per second of `train_on_batch` over `batches` (after warm-up
    rounds, which include XLA's compilation of each shape)."""
    for _ in range(warmup_rounds):
        for features, *targets in batches:
            model.train_on_batch(features, *targets)
    examples, started = 0, time.perf_counter()
    for _ in range(timed_rounds):
        for features, *targets in batches:
            model.train_on_batch(features, *targets)
            examples += int(features["token_ids"].shape[0])
    return examples / (time.perf_counter() - started)


def choose_cpu_settings(compiled_model: Callable[[CpuSettings], Any], batches: tf.data.Dataset,
                        cache_path: str | None, workload: dict[str, Any],
                        num_batches: int = 6) -> tuple[CpuSettings, dict[str, Any]]:
    """The fastest of `candidate_settings` for this CPU, measured, or remembered
    from an earlier run at `cache_path` (a JSON file keyed by `machine_key`).

    `compiled_model(settings)` returns `(anything, compiled keras model)` built
    under those settings; `batches` are training batches of the real data.
    """
    key = machine_key(workload)
    cache = storage.read_json(cache_path) if cache_path and storage.exists(cache_path) else {}
    if key in cache:
        decision = cache[key]
        log.info("CPU settings from an earlier benchmark on this machine: %s", decision["chosen"])
        return CpuSettings(**decision["chosen"]), {**decision, "cached": True}
    # One batch per length bucket first, so every shape the training sees is timed.
    sample = list(batches.take(num_batches).as_numpy_iterator())
    measured = []
    for settings in candidate_settings(has_bfloat16()):
        _, model = compiled_model(settings)
        examples_per_second = time_training_steps(model, sample)
        measured.append({**dataclasses.asdict(settings), "examples_per_second": round(examples_per_second, 2)})
        log.info("CPU benchmark: %s -> %.1f examples/s", settings, examples_per_second)
    best = max(measured, key=lambda m: m["examples_per_second"])
    chosen = {"jit_compile": best["jit_compile"], "precision": best["precision"]}
    decision = {"cpu": cpu_model(), "measured": measured, "chosen": chosen, "batches": len(sample),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if cache_path:
        cache[key] = decision
        storage.write_json(cache_path, cache)
    return CpuSettings(**chosen), {**decision, "cached": False}
