"""`suite-pipeline schedule`: generate the scheduled-run manifests, or be the scheduler.

    python -m tfx_pipeline.scheduling render-cronjob --schedule infra/schedules/banking77.yaml \\
        --out infra/pipeline/cronjob.yaml
    python -m tfx_pipeline.scheduling compile-kfp --schedule infra/schedules/banking77.yaml \\
        --out infra/pipeline/kfp_pipeline.yaml
    python -m tfx_pipeline.scheduling render-vertex-schedule --schedule infra/schedules/banking77.yaml \\
        --pipeline-spec infra/pipeline/kfp_pipeline.yaml --out schedule_request.json
    python -m tfx_pipeline.scheduling run-scheduler --schedule infra/schedules/banking77.yaml
    python -m tfx_pipeline.scheduling run-scheduler --schedule ... --once      # one run now, under the lock
    python -m tfx_pipeline.scheduling run-until Transform --config tfx_pipeline/configs/banking77.yaml \\
        [--set KEY=VALUE ...] [-- <beam args>]

Exit codes: 0 done, 2 bad usage or configuration, 75 skipped because another
run holds the lock (`run-scheduler --once`); otherwise the pipeline's own.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Sequence

from tfx_pipeline.config import ConfigError, PipelineConfig, parse_override
from tfx_pipeline.scheduling.config import ScheduleConfig, load_schedule

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suite-pipeline schedule", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    cron = commands.add_parser("render-cronjob", help="the Kubernetes CronJob (YAML)")
    _schedule_argument(cron)
    cron.add_argument("--out", type=Path, help="write here instead of standard output")

    kfp = commands.add_parser("compile-kfp", help="compile the KFP v2 / Vertex AI pipeline spec (YAML)")
    _schedule_argument(kfp)
    kfp.add_argument("--out", type=Path, required=True, help="the compiled pipeline file")

    vertex = commands.add_parser("render-vertex-schedule",
                                 help="the Vertex AI schedules.create request body (JSON)")
    _schedule_argument(vertex)
    vertex.add_argument("--pipeline-spec", type=Path, help="compiled spec (default: compile now)")
    vertex.add_argument("--out", type=Path, help="write here instead of standard output")

    run = commands.add_parser("run-scheduler", help="run the pipeline on the schedule on this machine")
    _schedule_argument(run)
    bound = run.add_mutually_exclusive_group()
    bound.add_argument("--once", action="store_true", help="one run now (under the lock), then exit")
    bound.add_argument("--max-runs", type=int, metavar="N", help="exit after N scheduled fire times")

    until = commands.add_parser("run-until", help="run the pipeline's components up to COMPONENT")
    until.add_argument("component", help="last component to run, e.g. Transform")
    until.add_argument("--config", type=Path, required=True, help="pipeline configuration (YAML)")
    until.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a configuration value (repeatable)")
    return parser


def _schedule_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schedule", type=Path, required=True, help="schedule file (YAML), e.g. "
                        "infra/schedules/banking77.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    try:
        if args.command == "run-until":
            return _run_until(args, beam_args)
        schedule = load_schedule(args.schedule)
        if args.command == "render-cronjob":
            from tfx_pipeline.scheduling.cronjob import render_cronjob
            return _emit(render_cronjob(schedule, source=args.schedule.as_posix()), args.out)
        if args.command == "compile-kfp":
            from tfx_pipeline.scheduling.kfp_pipeline import compile_pipeline
            print(f"wrote {compile_pipeline(schedule, args.out)}")
            return 0
        if args.command == "render-vertex-schedule":
            return _vertex_schedule(schedule, args)
        return _run_scheduler(schedule, args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _emit(text: str, out: Path | None) -> int:
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    return 0


def _vertex_schedule(schedule: ScheduleConfig, args: argparse.Namespace) -> int:
    import yaml

    from tfx_pipeline.scheduling.kfp_pipeline import pipeline_spec, render_vertex_schedule_request
    if args.pipeline_spec:
        try:
            spec = yaml.safe_load(args.pipeline_spec.read_text())
        except FileNotFoundError:
            raise ConfigError(f"pipeline spec not found: {args.pipeline_spec} (make it with compile-kfp)") from None
    else:
        spec = pipeline_spec(schedule)
    return _emit(render_vertex_schedule_request(schedule, spec), args.out)


def scheduler_command(schedule: ScheduleConfig) -> list[str]:
    """What the local scheduler runs: `local.command`, else the pipeline in this interpreter."""
    from tfx_pipeline.scheduling.commands import PIPELINE_MODULE, pipeline_args
    if schedule.local.command:
        return list(schedule.local.command)
    return [sys.executable, "-m", PIPELINE_MODULE, *pipeline_args(schedule.pipeline)]


def _run_scheduler(schedule: ScheduleConfig, args: argparse.Namespace) -> int:
    from tfx_pipeline.scheduling.scheduler import EXIT_LOCKED, Scheduler
    scheduler = Scheduler(schedule, scheduler_command(schedule))
    # systemd, Kubernetes and `kill` stop with SIGTERM: end the run and log it, as for Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.once:
        try:
            result = scheduler.run_once()
        except KeyboardInterrupt:
            return 130
        if not result.started:
            print(f"skipped: another run holds {scheduler.lock.path}", file=sys.stderr)
            return EXIT_LOCKED
        assert result.exit_code is not None  # Set for every run that started.
        return result.exit_code
    if args.max_runs is not None and args.max_runs < 1:
        raise ConfigError("--max-runs: must be at least 1")
    print(f"{schedule.name}: '{schedule.schedule.cron}' ({schedule.schedule.timezone}); next run at "
          f"{scheduler.next_fire_time(scheduler.now()).isoformat()}; log {scheduler.log.path}", flush=True)
    try:
        return scheduler.run_forever(args.max_runs)
    except KeyboardInterrupt:
        return 130


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run_until(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    import logging

    from tfx_pipeline.dsl import PipelineError
    from tfx_pipeline.run_summary import format_run
    from tfx_pipeline.scheduling.stage import run_until

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = PipelineConfig.from_file(args.config, dict(parse_override(text) for text in args.overrides))
    if beam_args:
        config = config.replace(beam_args=tuple(beam_args))
    try:
        record = run_until(config, args.component, str(args.config))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(format_run(record))
    return 0
