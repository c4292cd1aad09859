"""Pipeline benchmarks that print numbers (not part of the tests).

    python -m benchmarks pipeline beam            # preprocessing rows/s, 1 vs 2 workers (FnApiRunner, Dask)
    python -m benchmarks pipeline trainer         # training examples/s: default vs XLA, oneDNN off vs on
    python -m benchmarks pipeline distribution    # training examples/s: one device vs 2 mirrored CPU replicas
    python -m benchmarks pipeline multi-worker    # tiny-BERT training: one process vs 2 worker processes
    python -m benchmarks pipeline memory          # peak RSS of a whole pipeline run on Banking77
    python -m benchmarks pipeline full-training   # Banking77 and Financial PhraseBank: accuracy, F1, time
    python -m benchmarks pipeline compression --config tfx_pipeline/configs/banking77.yaml  # fp32 vs variants
    python -m benchmarks pipeline all

Every comparison is measured in the same run, on the same data, so the
ratios hold on whatever machine prints them. Data comes from
../shared/data (SUITE_SHARED_DATA).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tfx_pipeline  # Environment defaults before TensorFlow loads.
from tfx_pipeline.config import PipelineConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = Path(tfx_pipeline.__file__).parent / "configs"
DATA_COMPONENTS = ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform")
TWO_WORKERS = ("--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing")


def banking77_config(work: Path, **overrides) -> PipelineConfig:
    return PipelineConfig.from_file(CONFIGS / "banking77.yaml", {
        "pipeline_root": str(work / "pipeline"), "push.model_base_path": str(work / "models"), **overrides})


def scaled_banking77(work: Path, scale: int) -> Path:
    """Banking77's training rows `scale` times, one CSV file per copy (files spread over workers)."""
    source = Path(banking77_config(work).data.path)
    directory = work / f"banking77_x{scale}"
    directory.mkdir(parents=True, exist_ok=True)
    for copy in range(scale):
        (directory / f"part-{copy:03d}.csv").write_bytes(source.read_bytes())
    return directory


def _data_components_run(work: Path, data_glob: str, beam_args: Sequence[str]) -> dict:
    """ExampleGen → Transform on `data_glob`; rows/s and each component's seconds."""
    from tfx_pipeline.dsl import Pipeline
    from tfx_pipeline.pipeline import create_pipeline
    from tfx_pipeline.runner import LocalDagRunner

    config = banking77_config(work, **{"data.path": data_glob}).replace(beam_args=tuple(beam_args))
    full = create_pipeline(config)
    data_only = Pipeline(full.name, full.root, [c for c in full.components if c.id in DATA_COMPONENTS],
                         tuple(beam_args))
    started = time.perf_counter()
    record = LocalDagRunner().run(data_only)
    seconds = time.perf_counter() - started
    components = {c["id"]: c for c in record["components"]}
    rows = components["ExampleGen"]["artifacts"]["examples"]["properties"]["rows_read"]
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds, 1),
            "per_component_s": {name: c["duration_s"] for name, c in components.items()},
            "transformed": components["Transform"]["artifacts"]["transformed_examples"]["uri"]}


def benchmark_beam(work: Path, scale: int = 20, runners: Sequence[str] = ("fn_api", "dask")) -> dict:
    """ExampleGen → Transform on Banking77 x `scale`, with 1 and with 2 workers per runner:
    FnApiRunner (in-process vs 2 worker processes) and Dask (a local cluster of 1 vs 2
    single-threaded worker processes, started before the clock)."""
    from tfx_pipeline.beam.examples import read_split_records

    data_glob = str(scaled_banking77(work, scale) / "part-*.csv")
    results: dict = {"scale": scale}
    examples = {}
    for runner in runners:
        for workers in (1, 2):
            name = f"{runner}, {workers} worker{'s' if workers > 1 else ''}"
            run_dir = work / f"{runner}_{workers}"
            if runner == "fn_api":
                beam_args = ["--runner=FnApiRunner"] + ([] if workers == 1 else list(TWO_WORKERS[1:]))
                results[name] = _data_components_run(run_dir, data_glob, beam_args)
            else:
                from distributed import LocalCluster
                with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
                    dask_args = ["--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}"]
                    results[name] = _data_components_run(run_dir, data_glob, dask_args)
            uri = results[name].pop("transformed")
            examples[name] = {split: sorted(read_split_records(uri, split)) for split in ("train", "eval")}
        one, two = results[f"{runner}, 1 worker"], results[f"{runner}, 2 workers"]
        results[f"{runner}: 2 vs 1 worker"] = round(two["rows_per_second"] / one["rows_per_second"], 2)
    first = next(iter(examples.values()))
    results["identical_examples"] = all(e == first for e in examples.values())
    return results


def _training_batches(steps: int):
    """MiniLM preprocessing of real Banking77 texts: `steps` batches of 32, padded as in training."""
    import csv

    import tensorflow as tf

    from tfx_pipeline.model.preprocessing import TextPreprocessor

    config = banking77_config(Path(tempfile.mkdtemp()))
    with open(config.data.path, newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][:32 * steps]
    preprocessor = TextPreprocessor.from_preset(config.model.backbone.preset, config.model.sequence_length)
    return preprocessor, [preprocessor(tf.constant(texts[i:i + 32])) for i in range(0, len(texts), 32)]


def _examples_per_second(strategy, batches, vocabulary_size: int, jit: bool) -> float:
    """Trains MiniLM on `batches` (each shape compiled once first) and times it."""
    import keras
    import tensorflow as tf

    from tfx_pipeline.config import BackboneConfig
    from tfx_pipeline.model.backbone import load_backbone
    from tfx_pipeline.model.tasks import build_text_classifier

    with strategy.scope():
        model = build_text_classifier(load_backbone(BackboneConfig(), vocabulary_size, 64), 77)
        model.compile(optimizer=keras.optimizers.AdamW(5e-5), jit_compile=jit,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def dataset(chosen):
        data = tf.data.Dataset.from_generator(lambda: ((b, tf.zeros([32], tf.int64)) for b in chosen),
                                              output_signature=({k: tf.TensorSpec([32, None], tf.int32)
                                                                 for k in chosen[0]},
                                                                tf.TensorSpec([32], tf.int64)))
        return strategy.experimental_distribute_dataset(data)

    warm = list({int(b["token_ids"].shape[1]): b for b in batches}.values())
    model.fit(dataset(warm), epochs=1, verbose=0, shuffle=False)
    started = time.perf_counter()
    model.fit(dataset(batches), epochs=1, verbose=0, shuffle=False)
    return round(32 * len(batches) / (time.perf_counter() - started), 1)


def _trainer_worker(steps: int) -> dict:
    """Examples/s of MiniLM training steps on real Banking77 texts, default vs XLA, in one process."""
    import tensorflow as tf

    preprocessor, batches = _training_batches(steps)
    batch_shapes = sorted({int(b["token_ids"].shape[1]) for b in batches})
    result: dict[str, Any] = {"sequence_length": 64, "batch_shapes": batch_shapes}
    for mode, jit in (("default", False), ("xla", True)):
        result[mode] = _examples_per_second(tf.distribute.get_strategy(), batches, preprocessor.vocabulary_size, jit)
    result["xla_vs_default"] = round(result["xla"] / result["default"], 2)
    return result


def _distribution_worker(steps: int) -> dict:
    """One device vs MirroredStrategy over two logical CPU devices, same batches, one process.
    On 2 cores no gain is expected: this measures the strategy's overhead."""
    from tfx_pipeline.config import DistributionConfig
    from tfx_pipeline.model.distribution import create_strategy, split_cpu

    split_cpu(2)  # Before TensorFlow runs anything; the default strategy still uses one device.
    preprocessor, batches = _training_batches(steps)
    one = _examples_per_second(create_strategy(DistributionConfig()), batches, preprocessor.vocabulary_size, False)
    mirrored = _examples_per_second(create_strategy(DistributionConfig(strategy="mirrored")), batches,
                                    preprocessor.vocabulary_size, False)
    return {"one_device": one, "mirrored_2_logical_cpus": mirrored, "mirrored_vs_one": round(mirrored / one, 2),
            "global_batch": 32}


def _run_worker(name: str, steps: int, env: dict[str, str] | None = None) -> dict:
    """A measurement in a fresh process: TensorFlow reads oneDNN and device settings once."""
    output = subprocess.run([sys.executable, "-m", "benchmarks.pipeline", name, "--steps", str(steps)], cwd=REPO,
                            env={**os.environ, **(env or {})}, capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def benchmark_trainer(steps: int = 12) -> dict:
    """The trainer worker twice, oneDNN off and on."""
    results = {f"onednn={flag}": _run_worker("_trainer-worker", steps, {"TF_ENABLE_ONEDNN_OPTS": flag})
               for flag in ("0", "1")}
    results["onednn_on_vs_off"] = round(results["onednn=1"]["default"] / results["onednn=0"]["default"], 2)
    return results


def benchmark_multi_worker(work: Path, epochs: int = 4) -> dict:
    """The demo intent pipeline with a tiny BERT: one process (global batch 32) against
    multi_worker_mirrored over 2 local worker processes (16 each), same data; examples/s
    from the Trainer's summary (training only) and the Trainer's wall time (with worker start-up)."""
    from tfx_pipeline.demo_data import write_demo_data

    data = write_demo_data(work / "demo_data")["intent"]
    tiny = '{"num_layers": 2, "num_heads": 2, "hidden_dim": 64, "intermediate_dim": 128}'
    common = [f"pipeline_root={work / 'root'}", f"push.model_base_path={work / 'models'}", f"data.path={data}",
              f"model.backbone.architecture={tiny}", "model.sequence_length=32", f"training.epochs={epochs}",
              "training.learning_rate=0.001", "training.early_stopping_patience=100"]
    results = {}
    for name, overrides in (("one process", ["training.batch_size=32"]),
                            ("2 workers", ["training.batch_size=16",
                                           "training.distribution.strategy=multi_worker_mirrored",
                                           "training.distribution.workers=2"])):
        command = [sys.executable, "-m", "tfx_pipeline", "run", "--config", str(CONFIGS / "demo_intent.yaml")]
        for override in common + overrides:
            command += ["--set", override]
        subprocess.run(command, check=True, capture_output=True)
        record = json.loads(max((work / "root" / "runs").glob("*.json")).read_text())
        trainer = next(c for c in record["components"] if c["id"] == "Trainer")
        summary = trainer["artifacts"]["model_run"]["properties"]
        results[name] = {"train_examples_per_second": summary["train_examples_per_second"],
                         "train_seconds": summary["train_seconds"], "trainer_wall_s": trainer["duration_s"],
                         "replicas": summary["replicas"], "loss": [round(x, 4) for x in summary["history"]["loss"]]}
    results["2 workers vs one process"] = round(results["2 workers"]["train_examples_per_second"]
                                                / results["one process"]["train_examples_per_second"], 2)
    return results


def benchmark_memory(work: Path, epochs: int = 1) -> dict:
    """Peak resident memory of a full pipeline run on Banking77 (largest process)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tfx_pipeline", "run", "--config", str(CONFIGS / "banking77.yaml"),
                    "--set", f"pipeline_root={work / 'memory'}", "--set", f"push.model_base_path={work / 'models'}",
                    "--set", f"training.epochs={epochs}"], check=True, capture_output=True)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"epochs": epochs, "peak_rss_gib": round(peak_kib / 2**20, 2), "limit_gib": 6,
            "seconds": round(time.perf_counter() - started, 1)}


def benchmark_full_training(work: Path) -> dict:
    """Both real tasks end to end, as configured (MiniLM); validation is a split of the training rows."""
    from tfx_pipeline.pipeline import create_pipeline
    from tfx_pipeline.runner import LocalDagRunner

    results = {}
    for name in ("banking77", "financial_phrasebank"):
        config = PipelineConfig.from_file(CONFIGS / f"{name}.yaml", {
            "pipeline_root": str(work / name), "push.model_base_path": str(work / "models")})
        started = time.perf_counter()
        record = LocalDagRunner().run(create_pipeline(config))
        trainer = next(c for c in record["components"] if c["id"] == "Trainer")
        results[name] = {**record["metrics"], "wall_seconds": round(time.perf_counter() - started, 1),
                         "train_seconds": trainer["artifacts"]["model_run"]["properties"].get("train_seconds"),
                         "epochs_run": trainer["artifacts"]["model_run"]["properties"].get("epochs_run")}
    return results


def benchmark_compression(work: Path, config_path: Path, variants_json: str | None, seconds: float,
                          rounds: int) -> dict:
    """The fp32 teacher of the latest run under the configuration's pipeline root against each
    compression variant (`--variants` JSON, else the configuration's), side by side in one run:
    accuracy vs the teacher on the eval rows, examples/s per core at batch 1 and 32, size, peak
    memory, cost per 1M predictions. Variants already built under the work dir are reused."""
    import numpy as np

    from tfx_pipeline.beam.examples import read_split_rows, split_pattern
    from tfx_pipeline.compression import speed
    from tfx_pipeline.compression.students import agreement
    from tfx_pipeline.compression.variants import build_variant
    from tfx_pipeline.config import CompressionVariant, build_dataclass
    from tfx_pipeline.evaluation.metrics import classification_metrics
    from tfx_pipeline.evaluation.predict import align_columns, predict_probabilities
    from tfx_pipeline.model.training import TrainerArgs
    from tfx_pipeline.runner import list_runs

    config = PipelineConfig.from_file(config_path)
    record = next((r for r in list_runs(config.root)
                   if any(c["id"] == "Trainer" for c in r["components"])), None)
    if record is None:
        raise SystemExit(f"no run with a trained model under {config.root}")
    artifacts = {c["id"]: c["artifacts"] for c in record["components"]}
    teacher_dir = artifacts["Trainer"]["model"]["uri"]
    examples = artifacts["Transform"]["transformed_examples"]
    variants = (tuple(build_dataclass(CompressionVariant, v, f"variants[{i}]", "--variants")
                      for i, v in enumerate(json.loads(variants_json))) if variants_json
                else config.compression.variants)
    models = {"fp32 teacher": teacher_dir}
    built = {}
    for variant in variants:
        out = work / "variants" / variant.name
        if not (out / "model" / "saved_model.pb").exists():
            started = time.perf_counter()
            built[variant.name] = build_variant(variant, teacher_dir, TrainerArgs(
                train_files=split_pattern(examples["uri"], "train"), eval_files=split_pattern(examples["uri"], "eval"),
                num_train_examples=examples["properties"]["split_counts"]["train"],
                transform_graph_dir=artifacts["Transform"]["transform_graph"]["uri"],
                serving_model_dir=out / "model", backup_dir=out / "backup", model_run_dir=out / "run",
                model=config.model, training=config.training))
            built[variant.name]["build_seconds"] = round(time.perf_counter() - started, 1)
            (out / "build.json").write_text(json.dumps(built[variant.name]))
        models[variant.name] = str(out / "model")
    rows = read_split_rows(artifacts["ExampleValidator"]["examples"]["uri"], "eval")
    texts = [row["text"] or "" for row in rows]
    teacher_probabilities, class_names = predict_probabilities(Path(teacher_dir), texts)
    labels = [class_names.index(str(row["label"])) for row in rows]
    timed = speed.compare(models, texts, (1, 32), seconds, rounds)
    table = {}
    for name, directory in models.items():
        probabilities, names = predict_probabilities(Path(directory), texts)
        probabilities = align_columns(probabilities, names, class_names)
        metrics = classification_metrics(np.array(labels), probabilities, class_names)
        rates = timed[name]["examples_per_second"]
        table[name] = {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
                       "agreement": round(agreement(teacher_probabilities, probabilities), 4),
                       "per_core_batch_1": rates["1"], "per_core_batch_32": rates["32"],
                       "latency_ms_batch_1": timed[name]["latency_ms_batch_1"],
                       "size_mib": speed.model_size_mib(directory), "peak_memory_mib": timed[name]["peak_memory_mib"],
                       "cost_per_million": round(speed.cost_per_million(
                           rates["32"], config.compression.price_per_core_hour), 5)}
    teacher = table["fp32 teacher"]
    print(f"{'model':<16}{'acc':>8}{'d acc':>8}{'agree':>8}{'b1 ex/s':>9}{'x':>6}{'b32 ex/s':>10}{'x':>6}"
          f"{'MiB':>8}{'peak':>8}{'$/1M':>9}{'x':>6}")
    for name, row in table.items():
        print(f"{name:<16}{row['accuracy']:>8.4f}{row['accuracy'] - teacher['accuracy']:>+8.4f}{row['agreement']:>8.4f}"
              f"{row['per_core_batch_1']:>9.1f}{row['per_core_batch_1'] / teacher['per_core_batch_1']:>6.2f}"
              f"{row['per_core_batch_32']:>10.1f}{row['per_core_batch_32'] / teacher['per_core_batch_32']:>6.2f}"
              f"{row['size_mib']:>8.1f}{row['peak_memory_mib']:>8.0f}{row['cost_per_million']:>9.4f}"
              f"{row['cost_per_million'] / teacher['cost_per_million']:>6.2f}", flush=True)
    return {"teacher": teacher_dir, "run_id": record["run_id"], "eval_rows": len(rows),
            "price_per_core_hour": config.compression.price_per_core_hour, "models": table, "built": built}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["beam", "trainer", "distribution", "multi-worker", "memory",
                                              "full-training", "compression", "all",
                                              "_trainer-worker", "_distribution-worker"])
    parser.add_argument("--work-dir", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--steps", type=int, default=12, help="training steps per trainer measurement")
    parser.add_argument("--scale", type=int, default=20, help="beam: copies of Banking77's training rows")
    parser.add_argument("--runners", default="fn_api,dask", help="beam: runners to compare (fn_api, dask)")
    parser.add_argument("--config", type=Path, default=CONFIGS / "banking77.yaml",
                        help="compression: the teacher is the latest run's model under this config's pipeline root")
    parser.add_argument("--variants", help="compression: JSON list of variants (default: the config's)")
    parser.add_argument("--seconds", type=float, default=4.0, help="compression: timing per model and batch size")
    parser.add_argument("--rounds", type=int, default=2, help="compression: timing rounds, models taking turns")
    args = parser.parse_args(argv)
    workers = {"_trainer-worker": _trainer_worker, "_distribution-worker": _distribution_worker}
    if args.benchmark in workers:
        print(json.dumps(workers[args.benchmark](args.steps)))
        return 0
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="suite-bench-"))
    chosen = (["beam", "trainer", "distribution", "multi-worker", "memory", "full-training"] if args.benchmark == "all"
              else [args.benchmark])
    runners = {"beam": lambda: benchmark_beam(work / "beam", args.scale, args.runners.split(",")),
               "trainer": lambda: benchmark_trainer(args.steps),
               "distribution": lambda: _run_worker("_distribution-worker", args.steps),
               "multi-worker": lambda: benchmark_multi_worker(work / "multi_worker"),
               "memory": lambda: benchmark_memory(work), "full-training": lambda: benchmark_full_training(work),
               "compression": lambda: benchmark_compression(work / "compression", args.config, args.variants,
                                                            args.seconds, args.rounds)}
    for name in chosen:
        print(f"== {name}", flush=True)
        print(json.dumps(runners[name](), indent=2), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
