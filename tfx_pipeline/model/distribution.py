"""The one place that turns configuration into a tf.distribute strategy.

Example:

>>> from tfx_pipeline.config import DistributionConfig
>>> strategy = create_strategy(DistributionConfig(strategy="default"))
>>> strategy.num_replicas_in_sync
1
"""

from __future__ import annotations

import socket

import keras
import tensorflow as tf

from tfx_pipeline.config import DistributionConfig
from tfx_pipeline.dsl import PipelineError


class StrategyError(PipelineError):
    """The configured strategy cannot run here (no TPU reachable, ...)."""


def create_strategy(config: DistributionConfig) -> tf.distribute.Strategy:
    if config.logical_cpu_devices:
        split_cpu(config.logical_cpu_devices)
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if config.strategy == "multi_worker_mirrored":
        # Cluster membership comes from TF_CONFIG, as on Vertex AI and Kubernetes.
        let_keras_fit_under_multi_worker()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if config.strategy == "tpu":
        return _tpu_strategy(config.tpu)
    raise StrategyError(f"training.distribution.strategy: unknown strategy {config.strategy!r}")


def let_keras_fit_under_multi_worker() -> None:
    """Lets Keras 3 `fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Two steps of Keras' TensorFlow trainer fail with this strategy across
    processes, and only then; both are replaced for it alone:
    - before the first step, Keras builds the metrics, loss and optimizer state
      from the shapes of a batch that it first averages across the workers:
      the strategy refuses a nested batch, and batches padded to their longest
      text differ in shape between workers anyway. The build needs shapes
      only, so it takes this worker's own batch;
    - each step averages the scalar logs (loss, metrics) over the workers with
      `axis=0`, which a scalar does not have; they are averaged whole.
    """
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.TensorFlowTrainer._maybe_symbolic_build, "multi_worker_aware", False):
        return
    build, reduce_per_replica = trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica

    def is_multi_worker(strategy) -> bool:
        return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and trainer._collective_all_reduce_multi_worker(strategy))

    def build_from_local_batch(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or not is_multi_worker(strategy):
            return build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = tf.nest.map_structure(
                lambda value: strategy.experimental_local_results(value)[0]
                if isinstance(value, tf.distribute.DistributedValues) else value, next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def average_logs_whole(values, strategy, reduction="auto"):
        if reduction not in ("auto", "mean") or not is_multi_worker(strategy):
            return reduce_per_replica(values, strategy, reduction)
        return tf.nest.map_structure(
            lambda value: strategy.reduce("MEAN", value, axis=None if value.shape.rank == 0 else 0), values)

    build_from_local_batch.multi_worker_aware = True  # type: ignore[attr-defined]
    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_local_batch
    trainer.reduce_per_replica = average_logs_whole


def split_cpu(count: int) -> None:
    """Makes `count` logical CPU devices; must run before TensorFlow initialises devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * count
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as error:
        raise StrategyError(f"training.distribution.logical_cpu_devices={count}: TensorFlow already "
                            f"initialised its devices in this process ({error})") from None


def _tpu_strategy(tpu: str | None, connect_timeout_seconds: float = 10.0) -> tf.distribute.TPUStrategy:
    def unreachable(reason: object) -> StrategyError:
        return StrategyError(f"training.distribution.strategy is 'tpu' but no TPU is reachable "
                             f"(training.distribution.tpu={tpu!r}): {reason}")

    if tpu and tpu.startswith("grpc://"):
        # TensorFlow waits indefinitely for a worker that is not there; ask first, briefly.
        host, _, port = tpu.removeprefix("grpc://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=connect_timeout_seconds).close()
        except (OSError, ValueError) as error:
            raise unreachable(f"cannot connect to {host}:{port}: {error}") from None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as error:  # The resolver raises ValueError, URLError, OpError, ... by cause.
        raise unreachable(error) from error
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
