"""The one place that turns configuration into a tf.distribute strategy.

Example:

>>> from tfx_pipeline.config import DistributionConfig
>>> strategy = create_strategy(DistributionConfig(strategy="default"))
>>> strategy.num_replicas_in_sync
1
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfx_pipeline.config import DistributionConfig


class StrategyError(RuntimeError):
    """The configured strategy cannot run here (no TPU reachable, ...)."""


def create_strategy(config: DistributionConfig) -> tf.distribute.Strategy:
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if config.strategy == "multi_worker_mirrored":
        # Cluster membership comes from TF_CONFIG, as on Vertex AI and Kubernetes.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if config.strategy == "tpu":
        return _tpu_strategy(config.tpu)
    raise StrategyError(f"training.distribution.strategy: unknown strategy {config.strategy!r}")


def _tpu_strategy(tpu: str | None) -> tf.distribute.TPUStrategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise StrategyError(
            f"training.distribution.strategy is 'tpu' but no TPU is reachable "
            f"(training.distribution.tpu={tpu!r}): {error}") from error
    return tf.distribute.TPUStrategy(resolver)


def precision_policy(config: DistributionConfig, strategy: tf.distribute.Strategy) -> str:
    """bfloat16 on TPU, float16 on GPU, float32 on CPU, unless configured."""
    if config.precision != "auto":
        return config.precision
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    return "float32"


def apply_precision_policy(config: DistributionConfig, strategy: tf.distribute.Strategy) -> str:
    policy = precision_policy(config, strategy)
    keras.mixed_precision.set_global_policy(policy)
    return policy
