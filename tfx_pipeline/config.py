"""Typed pipeline configuration: one dataclass per concern, loaded from YAML.

A configuration file maps one-to-one onto `PipelineConfig`. Unknown keys and
wrongly typed values are rejected with the dotted key path and the file name,
so a typo never silently falls back to a default.

Example:

>>> cfg = PipelineConfig.from_dict({
...     "name": "intent",
...     "data": {"path": "train.csv", "text_column": "text", "label_column": "category"},
... })
>>> cfg.training.batch_size
32
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal, Mapping, Optional

# The suite's one loader; ConfigError, build_dataclass and parse_override are re-exported for the pipeline.
from suite_core.config import ConfigError as ConfigError
from suite_core.config import build_dataclass, expand_env, read_yaml, set_dotted
from suite_core.config import parse_override as parse_override
from suite_core.ranking_evaluation import HybridSettings

RANKING_TASKS = ("text_pair_ranking", "text_embedding")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where raw rows come from and which columns mean what."""

    path: str  # File path or glob, local or any Beam filesystem (gs://, s3://); a directory for `beir`.
    # Required unless `format` is `beir`, whose rows have fixed columns.
    text_column: Optional[str] = None
    label_column: Optional[str] = None
    # `beir`: a ranking dataset (corpus, queries, qrels); the HardNegativeMiner
    # turns it into rows of `query`, `item_text`, `label`, `query_id`, `item_id`.
    format: Literal["auto", "csv", "tsv", "jsonl", "beir"] = "auto"
    text_pair_column: Optional[str] = None  # Second text for pair tasks.
    # Kept on every example so the evaluator can slice metrics by them.
    extra_columns: tuple[str, ...] = ()
    # Label vocabulary. Empty: inferred from the first run's data.
    labels: tuple[str, ...] = ()
    labels_file: Optional[str] = None  # JSON list of labels, instead of `labels`.


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """Deterministic split by a hash of the text: same text, same split."""

    train: int = 80
    eval: int = 20
    test: int = 0
    # Rows sharing this column's value land in one split (ranking: all rows of a
    # query). Unset: the text (and text pair) is the key.
    group_column: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class MiningConfig:
    """Hard negatives for ranking tasks, mined from a BEIR dataset's corpus.

    Each judged query keeps its relevant items and gains negatives drawn from
    the top `depth` results of BM25 and, when `embedder_model` names a pushed
    model under `push.model_base_path`, of that embedder.
    """

    qrels_split: str = "train"
    bm25_negatives: int = 4
    embedder_negatives: int = 0
    embedder_model: Optional[str] = None
    # Negatives from the hybrid list the re-ranker will sit behind: BM25's and the
    # embedder's top `depth` fused as the ranker app fuses (evaluation.retrieval).
    hybrid_negatives: int = 0
    depth: int = 30
    seed: int = 13


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """What makes a row or a dataset anomalous."""

    max_text_chars: int = 2000
    max_bad_row_fraction: float = 0.05
    # L-infinity distance between this run's and the previous run's label
    # distribution above which the run is flagged (and stopped if `fail_on_skew`).
    max_label_skew: float = 0.1
    fail_on_skew: bool = False


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """The BERT encoder, named as a keras-hub preset.

    `preset` is a keras-hub preset name (`bert_base_en_uncased`), a local preset
    directory, or `all-minilm-l6-v2` for the offline weights package. When
    `architecture` is set, a freshly initialised backbone of that shape is
    built on the preset's vocabulary instead (tiny models for tests).
    """

    preset: str = "all-minilm-l6-v2"
    architecture: Optional[Mapping[str, Any]] = None
    # The preset's encoder cut to this many of its layers, evenly spaced, the top one kept
    # (a cheaper model trained directly, e.g. a re-ranker within a latency budget). Unset: all.
    num_layers: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    backbone: BackboneConfig = BackboneConfig()
    sequence_length: int = 64
    # `text_pair_ranking`: a cross-encoder scoring (query, item) pairs;
    # `text_embedding`: a bi-encoder mapping each text to an L2-normalised vector.
    task: Literal["text_classification", "text_pair_classification", "text_pair_ranking",
                  "text_embedding"] = "text_classification"
    # `mean_cls`: the mean of the token vectors and BERT's pooled [CLS], concatenated.
    pooling: Literal["mean", "cls", "mean_cls"] = "mean"
    dropout: float = 0.1
    # `text_pair_ranking` only. `pairwise`: trained on (query + relevant item, query + mined
    # negative) pairs with a logistic ranking loss on their score gap (plus half the pointwise
    # cross-entropy); `pointwise`: cross-entropy on each labelled pair alone.
    ranking_loss: Literal["pointwise", "pairwise"] = "pointwise"


# A Keras dtype policy name, or `auto`.
Precision = Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"]


@dataclasses.dataclass(frozen=True)
class DistributionConfig:
    """Which tf.distribute strategy trains the model."""

    strategy: Literal["default", "mirrored", "multi_worker_mirrored", "tpu"] = "default"
    tpu: Optional[str] = None  # TPU name or grpc:// address for `tpu`.
    # Mixed precision: `auto` picks bfloat16 on TPU, float16 on GPU, float32 on CPU.
    precision: Precision = "auto"
    steps_per_execution: int = 1
    # Splits the CPU into this many logical devices before the strategy is
    # made, so multi-replica code runs on a laptop; 0 leaves devices alone.
    logical_cpu_devices: int = 0
    # multi_worker_mirrored on one machine: the Trainer starts this many worker
    # processes on loopback ports (model/multi_worker.py); 0: TF_CONFIG as given.
    workers: int = 0


@dataclasses.dataclass(frozen=True)
class EnsembleConfig:
    """K models trained with seeds `seed`, `seed + 1`, ...; `average` exports
    their mean probabilities (K times the serving cost), `distill` trains one
    more model of the same size on the members' soft targets and exports it."""

    members: int = 1  # 1: no ensemble.
    mode: Literal["average", "distill"] = "average"
    # Distillation target: this share of the members' mean probabilities, the rest the label.
    soft_target_weight: float = 0.5


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 3
    batch_size: int = 32  # Per replica; the global batch scales with replicas.
    learning_rate: float = 5e-5
    # The freshly initialised head learns at `learning_rate` times this.
    head_learning_rate_multiplier: float = 1.0
    # Layer-wise learning-rate decay: the top encoder layer learns at `learning_rate`,
    # each layer below at `layer_decay` times the one above, the embeddings last. 1: off.
    layer_decay: float = 1.0
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.0
    # `balanced`: each class weighs in inversely to its share of the training split.
    class_weighting: Literal["none", "balanced"] = "none"
    # Exponential moving average of the weights (0: off): validated each epoch and exported.
    ema_momentum: float = 0.0
    early_stopping_monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    early_stopping_patience: int = 2
    jit_compile: bool = False
    # `auto`: on a CPU-only machine a short benchmark at run time picks XLA on or off and,
    # where the CPU does bfloat16, mixed_bfloat16 or float32 (remembered per machine).
    # `off`: `jit_compile` and `distribution.precision` as configured.
    cpu_tuning: Literal["auto", "off"] = "off"
    seed: int = 42
    distribution: DistributionConfig = DistributionConfig()
    ensemble: EnsembleConfig = EnsembleConfig()


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Blessing rules, TFX-style: an absolute floor and a change vs the baseline."""

    metric: Literal["accuracy", "macro_f1", "ndcg_at_10", "mrr_at_10", "recall_at_100"] = "accuracy"
    lower_bound: float = 0.0
    # candidate - baseline must be >= this. 0 blesses only a model at least as
    # good as the pushed one; -0.01 tolerates a one-point regression.
    min_change_vs_baseline: float = 0.0
    # Re-rankers: hybrid + re-rank must beat hybrid alone by at least this.
    min_gain_over_hybrid: float = 0.0


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    thresholds: Thresholds = Thresholds()
    # Slice metrics by these extra columns; `text_length` is always computed.
    slice_columns: tuple[str, ...] = ()
    calibration_bins: int = 10
    # Ranking tasks are judged on full-corpus retrieval as the ranker app does it:
    # its first-stage depths, fusion and re-rank depth (keep them equal to the app's).
    retrieval: HybridSettings = HybridSettings()
    # The pushed embedder a re-ranker sits behind (default: mining.embedder_model).
    embedder_model: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class PushConfig:
    model_base_path: str = "work/models"
    model_name: Optional[str] = None  # Defaults to the pipeline name.
    num_warmup_requests: int = 4


@dataclasses.dataclass(frozen=True)
class CompressionVariant:
    """One cheaper model made from the blessed teacher, served as its own model.

    A *student* when `num_layers` or `sequence_length` differs from the
    teacher's: `num_layers` of the teacher's encoder layers (evenly spaced,
    the top one kept) with its embeddings and head, trained on the teacher's
    probabilities over the training texts mixed with the labels
    (`soft_target_weight` of the teacher). `int8`: afterwards, the Dense and
    EinsumDense kernels become int8 (Keras `quantize("int8")`, activations
    quantized per row at run time); the export keeps the raw-string signatures.
    `precision: bfloat16`: the export computes in bfloat16 (float32 weights),
    for CPUs with bfloat16 in hardware; every other export computes in float32.
    """

    name: str  # Served as `<model name>_<name>` unless `model_name` says otherwise.
    num_layers: int = 0  # 0: the teacher's.
    sequence_length: int = 0  # 0: the teacher's. Served texts are truncated to this many tokens.
    int8: bool = False
    precision: Literal["float32", "bfloat16"] = "float32"
    epochs: int = 3
    learning_rate: float = 1e-4
    soft_target_weight: float = 0.5
    model_name: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class CompressionThresholds:
    """What a variant must show against its teacher, on the same rows and machine, to be pushed."""

    max_accuracy_drop: float = 0.005  # Teacher accuracy minus the variant's, at most.
    min_speedup_batch_1: float = 1.0  # Examples/s per core, variant over teacher.
    min_speedup_served_batch: float = 1.0  # The same at `compression.served_batch_size`.


@dataclasses.dataclass(frozen=True)
class CompressionConfig:
    """Cheaper variants of the blessed teacher (none by default), judged and pushed one by one."""

    variants: tuple[CompressionVariant, ...] = ()
    thresholds: CompressionThresholds = CompressionThresholds()
    served_batch_size: int = 32
    # Throughput is timed on one thread (= per core) for this long per model and batch size,
    # teacher and variant alternating `measure_rounds` times; each keeps its best round.
    measure_seconds: float = 4.0
    measure_rounds: int = 2
    # Cost per 1M predictions = 1e6 / (examples/s per core) / 3600 * this. Default: about the
    # on-demand price of one vCPU (with its share of memory) on the big clouds, in USD.
    price_per_core_hour: float = 0.05


@dataclasses.dataclass(frozen=True)
class SearchParameter:
    """One dimension of a hyperparameter search: a range, or choices."""

    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False  # Sample the range on a log scale (learning rates).
    integer: bool = False
    choices: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True)
class TuningConfig:
    """`suite-pipeline tune`: trials are pipeline runs with these keys overridden.

    `search_space` maps a dotted configuration key (`training.learning_rate`)
    to its `SearchParameter`. The objective is the Evaluator's metric named by
    `metric` (default: the blessing metric), maximised.
    """

    search_space: Mapping[str, SearchParameter] = dataclasses.field(default_factory=dict)
    trials: int = 10
    metric: Optional[str] = None
    seed: int = 0
    # Stop starting trials after this long; 0: no limit.
    time_budget_minutes: float = 0.0


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    name: str
    data: DataConfig
    pipeline_root: str = "work/pipelines/${name}"  # Local, or any Beam filesystem: gs://, s3://.
    # With a bucket as the root, where the TensorFlow steps (Trainer, Evaluator, Pusher) work
    # on local copies. On a persistent disk a killed Trainer resumes; "" is the temp dir.
    local_cache: str = ""
    split: SplitConfig = SplitConfig()
    mining: MiningConfig = MiningConfig()  # Used when data.format is `beir`.
    validation: ValidationConfig = ValidationConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    push: PushConfig = PushConfig()
    compression: CompressionConfig = CompressionConfig()
    tuning: TuningConfig = TuningConfig()
    # Apache Beam pipeline options, e.g. ["--runner=DataflowRunner", "--project=p"].
    beam_args: tuple[str, ...] = ("--runner=FnApiRunner",)

    @property
    def root(self) -> str:
        """The pipeline root: a local path or a URI on any Beam filesystem (gs://, s3://)."""
        return self.pipeline_root.replace("${name}", self.name)

    @property
    def is_ranking(self) -> bool:
        return self.model.task in RANKING_TASKS

    @property
    def model_name(self) -> str:
        return self.push.model_name or self.name

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<config>") -> "PipelineConfig":
        config = build_dataclass(cls, data, "", source)
        if config.data.format != "beir":
            for key in ("text_column", "label_column"):
                if getattr(config.data, key) is None:
                    raise ConfigError(f"{source}: missing required key data.{key} (needed unless data.format is beir)")
        elif not config.is_ranking:
            raise ConfigError(f"{source}: data.format beir needs model.task text_pair_ranking or text_embedding")
        return config

    @classmethod
    def from_file(cls, path: str | os.PathLike, overrides: Mapping[str, Any] = {}) -> "PipelineConfig":
        """Loads a YAML file, expanding ${VAR} and ${VAR:-default} in strings (``${name}`` is the
        pipeline's name, filled in by :attr:`root`)."""
        data = read_yaml(path)
        for dotted, value in overrides.items():
            set_dotted(data, dotted, value)
        return cls.from_dict(expand_env(data, keep=("name",)), source=str(path))

    def replace(self, **changes: Any) -> "PipelineConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

