"""`suite-pipeline doctor`: what this machine offers training, and how fast a step runs.

Prints the devices TensorFlow sees, the strategy and precision the Trainer
would use here (as configured, and what the hardware suggests), and times a
few training steps of the configured backbone with that strategy and
precision. The same command is the GPU/TPU readiness check on a new machine
(scripts/gpu_check.sh).

Example:

>>> recommend(DeviceReport(gpus=2, tpus=0, cpu_bfloat16=False, workers=1)).strategy
'mirrored'
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

from tfx_pipeline.config import BackboneConfig, DistributionConfig


@dataclasses.dataclass(frozen=True)
class DeviceReport:
    gpus: int
    tpus: int
    cpu_bfloat16: bool  # The CPU computes bfloat16 itself (AVX-512 BF16, AMX, Arm BF16).
    workers: int  # Processes in TF_CONFIG's cluster (1 without one).


@dataclasses.dataclass(frozen=True)
class Recommendation:
    strategy: str
    precision: str
    why: str


def recommend(devices: DeviceReport) -> Recommendation:
    """The `training.distribution` this hardware suggests."""
    if devices.tpus:
        return Recommendation("tpu", "mixed_bfloat16", f"{devices.tpus} TPU core(s): TPUStrategy, bfloat16 "
                              "activations (the TPU's native matmul type)")
    if devices.workers > 1:
        precision = "mixed_float16" if devices.gpus else "float32"
        return Recommendation("multi_worker_mirrored", precision,
                              f"TF_CONFIG names {devices.workers} workers: all-reduce across them")
    if devices.gpus:
        strategy = "mirrored" if devices.gpus > 1 else "default"
        return Recommendation(strategy, "mixed_float16", f"{devices.gpus} GPU(s): float16 activations "
                              "with float32 weights and loss scaling (tensor cores)")
    if devices.cpu_bfloat16:
        return Recommendation("default", "float32", "CPU only; it computes bfloat16 itself, so "
                              "`training.cpu_tuning: auto` times mixed_bfloat16 against float32 (and XLA on/off) "
                              "and keeps the faster; precision auto alone stays float32")
    return Recommendation("default", "float32", "CPU only, no bfloat16 in hardware: float32")


def device_report() -> DeviceReport:
    import tensorflow as tf

    from tfx_pipeline.model.cpu_tuning import has_bfloat16

    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return DeviceReport(gpus=len(tf.config.list_physical_devices("GPU")),
                        tpus=len(tf.config.list_logical_devices("TPU")),
                        cpu_bfloat16=has_bfloat16(),
                        workers=max(1, sum(len(hosts) for hosts in cluster.values())))


def time_training_steps(backbone: BackboneConfig, distribution: DistributionConfig, steps: int = 10,
                        batch_size: int = 32, sequence_length: int = 64) -> dict[str, Any]:
    """Examples/s of `steps` training steps on random token ids (one shape, traced once before timing)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfx_pipeline.model.backbone import load_backbone
    from tfx_pipeline.model.distribution import apply_precision_policy, create_strategy
    from tfx_pipeline.model.tasks import build_text_classifier

    strategy = create_strategy(distribution)
    precision = apply_precision_policy(distribution, strategy)
    global_batch = batch_size * strategy.num_replicas_in_sync
    with strategy.scope():
        encoder = load_backbone(backbone, 30522, sequence_length)
        model = build_text_classifier(encoder, 77)
        model.compile(optimizer=keras.optimizers.AdamW(5e-5),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    features = {"token_ids": rng.integers(1000, 30000, (global_batch, sequence_length)).astype("int32"),
                "padding_mask": np.ones((global_batch, sequence_length), "int32"),
                "segment_ids": np.zeros((global_batch, sequence_length), "int32")}
    labels = rng.integers(0, 77, global_batch)
    batches = tf.data.Dataset.from_tensors((features, labels)).repeat(steps)
    started = time.perf_counter()
    model.fit(batches.take(1), epochs=1, verbose=0, shuffle=False)
    first_step = time.perf_counter() - started
    started = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    return {"backbone": backbone.preset if not backbone.architecture else dict(backbone.architecture),
            "strategy": distribution.strategy, "replicas": strategy.num_replicas_in_sync, "precision": precision,
            "global_batch": global_batch, "sequence_length": sequence_length, "steps": steps,
            "first_step_seconds": round(first_step, 2), "examples_per_second": round(steps * global_batch / seconds, 1)}


def diagnose(distribution: DistributionConfig, backbone: BackboneConfig, steps: int) -> dict[str, Any]:
    """Everything `doctor` prints, as a dict."""
    import tensorflow as tf

    from tfx_pipeline.model.cpu_tuning import cpu_model

    devices = device_report()
    advice = recommend(devices)
    report: dict[str, Any] = {
        "tensorflow": tf.__version__,
        "devices": [f"{d.device_type}:{d.name}" for d in tf.config.list_physical_devices()],
        "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "bfloat16": devices.cpu_bfloat16},
        "configured": {"strategy": distribution.strategy, "precision": distribution.precision},
        "suggested": dataclasses.asdict(advice),
    }
    if steps:
        # Timed as configured, with `auto` precision resolved for this device.
        report["training_steps"] = time_training_steps(backbone, distribution, steps)
    return report


def format_report(report: dict[str, Any]) -> str:
    cpu, suggested = report["cpu"], report["suggested"]
    lines = [
        f"TensorFlow {report['tensorflow']}; devices: {', '.join(report['devices'])}",
        f"CPU: {cpu['model']}, {cpu['cores']} cores, bfloat16 in hardware: {'yes' if cpu['bfloat16'] else 'no'}",
        f"configured: strategy {report['configured']['strategy']}, precision {report['configured']['precision']}",
        f"suggested:  strategy {suggested['strategy']}, precision {suggested['precision']} ({suggested['why']})",
    ]
    steps = report.get("training_steps")
    if steps:
        lines.append(f"training steps: {steps['examples_per_second']} examples/s ({steps['backbone']}, "
                     f"{steps['strategy']} x{steps['replicas']}, {steps['precision']}, batch {steps['global_batch']}"
                     f" x {steps['sequence_length']} tokens, {steps['steps']} steps; first step "
                     f"{steps['first_step_seconds']} s)")
    return "\n".join(lines)
