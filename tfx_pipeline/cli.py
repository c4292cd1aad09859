"""`suite-pipeline`: run the training pipeline, list and show its runs.

    suite-pipeline demo-data --out work/demo_data
    suite-pipeline run --config tfx_pipeline/configs/demo_intent.yaml
    suite-pipeline run --config tfx_pipeline/configs/banking77.yaml --set training.epochs=2 \\
        -- --runner=FnApiRunner --direct_num_workers=2 --direct_running_mode=multi_processing
    suite-pipeline runs list --config tfx_pipeline/configs/demo_intent.yaml
    suite-pipeline runs show <run id> --config tfx_pipeline/configs/demo_intent.yaml
    suite-pipeline tune --config tfx_pipeline/configs/banking77.yaml --trials 12 --write-best best.yaml
    suite-pipeline schedule run-scheduler --schedule infra/schedules/banking77.yaml

Arguments after `--` are Apache Beam pipeline options; they replace `beam_args`
from the configuration (e.g. `--runner=DataflowRunner --project=... --region=...`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from suite_core.tf_logging import quiet_tensorflow
from tfx_pipeline.config import ConfigError, PipelineConfig, parse_override
from tfx_pipeline.dsl import PipelineError
from tfx_pipeline.run_summary import format_run as format_run  # Also `schedule run-until`'s.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suite-pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the pipeline end to end (cached steps are skipped)")
    _add_config_arguments(run)
    run.add_argument("-v", "--verbose", action="store_true", help="show Beam and TensorFlow logs")

    runs = commands.add_parser("runs", help="list or show run records")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = runs_commands.add_parser("list", help="runs under the pipeline root, newest first")
    _add_config_arguments(runs_list)
    runs_show = runs_commands.add_parser("show", help="one run record as JSON")
    runs_show.add_argument("run_id", help="a run id from `runs list`, or `latest`")
    _add_config_arguments(runs_show)

    tune = commands.add_parser("tune", help="hyperparameter search: trials are cached pipeline runs (Optuna), "
                                            "resumable after a kill")
    _add_config_arguments(tune)
    tune.add_argument("--trials", type=int, help="finished trials wanted in all (default: tuning.trials)")
    tune.add_argument("--time-budget-minutes", type=float,
                      help="start no trial after this long (default: tuning.time_budget_minutes; 0: none)")
    tune.add_argument("--study", default="default",
                      help="study name under <pipeline root>/tuning/ (default: %(default)s)")
    tune.add_argument("--summary", action="store_true", help="print the trials table and run none")
    tune.add_argument("--write-best", type=Path, metavar="YAML",
                      help="write the configuration with the best trial's values, for `run`")
    tune.add_argument("-v", "--verbose", action="store_true", help="show Beam and TensorFlow logs")

    commands.add_parser("schedule", add_help=False,
                        help="scheduled runs: render-cronjob, compile-kfp, render-vertex-schedule, run-scheduler, "
                             "run-until (see `suite-pipeline schedule --help`)")

    demo = commands.add_parser("demo-data", help="write the project's small demo dataset")
    demo.add_argument("--out", type=Path, default=Path("work/demo_data"), help="directory (default: %(default)s)")

    doctor = commands.add_parser("doctor", help="devices seen, the strategy and precision training would use, "
                                                "and a timed training step")
    doctor.add_argument("--config", type=Path, help="take training.distribution and model.backbone from this file")
    doctor.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration value (repeatable)")
    doctor.add_argument("--steps", type=int, default=10, help="training steps to time; 0: none (default: %(default)s)")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")

    worker = commands.add_parser("train-worker", help="one multi-worker training process: TF_CONFIG from the "
                                                      "environment, or a Kubernetes indexed Job's")
    worker.add_argument("--trainer-args", type=Path, required=True, help="the trainer_args.pkl a Trainer wrote")
    worker.add_argument("--task-index", type=int, help="shown in process lists; TF_CONFIG decides")
    worker.add_argument("--summary", type=Path, help="write the training summary here (the chief)")
    local = commands.add_parser("local-workers", help="train from a Trainer's trainer_args.pkl with N worker "
                                                      "processes on loopback ports (multi_worker_mirrored)")
    local.add_argument("--trainer-args", type=Path, required=True, help="the trainer_args.pkl a Trainer wrote")
    local.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    return parser


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="pipeline configuration (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration value, e.g. training.epochs=2 (repeatable)")


def load_config(args: argparse.Namespace, beam_args: Sequence[str] = ()) -> PipelineConfig:
    overrides = dict(parse_override(text) for text in args.overrides)
    config = PipelineConfig.from_file(args.config, overrides)
    return config.replace(beam_args=tuple(beam_args)) if beam_args else config


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow(argv)
    if argv[:1] == ["schedule"]:
        from tfx_pipeline.scheduling.cli import main as schedule_main
        return schedule_main(argv[1:])
    beam_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    try:
        if args.command in ("doctor", "train-worker", "local-workers"):
            return _beyond_one_process(args)
        if args.command == "demo-data":
            from tfx_pipeline.demo_data import write_demo_data
            for task, path in write_demo_data(args.out).items():
                print(f"{task}: {path}")
            return 0
        config = load_config(args, beam_args)
        if args.command == "run":
            return _run(config, verbose=args.verbose, config_path=args.config)
        if args.command == "tune":
            return _tune(config, args)
        return _runs(config, args)
    except (ConfigError, PipelineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(config: PipelineConfig, verbose: bool, config_path: Path) -> int:
    _configure_logging(verbose)
    if config.training.distribution.logical_cpu_devices:
        # Before any TensorFlow op runs in this process (Beam steps run TF too).
        from tfx_pipeline.model.distribution import split_cpu
        split_cpu(config.training.distribution.logical_cpu_devices)
    from tfx_pipeline.pipeline import create_pipeline
    from tfx_pipeline.runner import LocalDagRunner

    record = LocalDagRunner(local_cache=config.local_cache or None).run(create_pipeline(config),
                                  run_metadata={"config_path": str(config_path), "config": config.to_dict()})
    print(format_run(record))
    return 0


def _tune(config: PipelineConfig, args: argparse.Namespace) -> int:
    _configure_logging(args.verbose)
    from tfx_pipeline.tuning import Tuner
    tuner = Tuner(args.config, dict(parse_override(text) for text in args.overrides), config, args.study)
    study = tuner.study() if args.summary else tuner.run(args.trials, args.time_budget_minutes)
    print(tuner.write_summary(study))
    print(f"study: {tuner.directory}")
    if args.write_best:
        params = tuner.write_best(study, args.write_best)
        print(f"best trial's configuration: {args.write_best} ({params})")
    return 0


def _beyond_one_process(args: argparse.Namespace) -> int:
    """`doctor`, `train-worker` and `local-workers`."""
    import os
    import pickle

    from tfx_pipeline.model import multi_worker
    if args.command == "train-worker":
        multi_worker.run_worker(args.trainer_args, args.summary, os.environ)
        return 0
    if args.command == "local-workers":
        trainer_args = pickle.loads(args.trainer_args.read_bytes())
        print(json.dumps(multi_worker.LocalWorkers(trainer_args, args.workers, args.trainer_args.parent).run()))
        return 0
    from tfx_pipeline.config import BackboneConfig, DistributionConfig
    from tfx_pipeline.model.doctor import diagnose, format_report
    config = load_config(args) if args.config else None
    report = diagnose(config.training.distribution if config else DistributionConfig(),
                      config.model.backbone if config else BackboneConfig(), args.steps)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _runs(config: PipelineConfig, args: argparse.Namespace) -> int:
    from tfx_pipeline import storage  # Apache Beam's filesystems: loaded by the commands that read roots.
    from tfx_pipeline.runner import list_runs
    storage.configure(config.beam_args)  # A root in a bucket needs the credentials and endpoint.
    runs = list_runs(config.root)
    if args.runs_command == "list":
        if not runs:
            print(f"no runs under {config.root}")
        for record in runs:
            cached = sum(c["cached"] for c in record["components"])
            print(f"{record['run_id']}  {record['status']:<9}  {len(record['components'])} components "
                  f"({cached} cached)  blessed={record.get('blessed')}  pushed={record.get('pushed_version')}")
        return 0
    wanted = runs[0] if args.run_id == "latest" and runs else next(
        (r for r in runs if r["run_id"] == args.run_id), None)
    if wanted is None:
        raise PipelineError(f"no run {args.run_id!r} under {config.root}")
    print(json.dumps(wanted, indent=2))
    return 0


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not verbose:
        for noisy in ("apache_beam", "absl", "tensorflow"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    raise SystemExit(main())
