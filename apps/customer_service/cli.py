"""``python -m apps.customer_service``: reply, serve, tune-threshold, info, check-templates.

Examples::

    python -m apps.customer_service reply "Where is my card?" --customer-name Ana
    python -m apps.customer_service reply --file messages.txt > suggestions.jsonl   # '-' reads stdin
    python -m apps.customer_service serve --port 8080
    python -m apps.customer_service tune-threshold --target-precision 0.95
    python -m apps.customer_service info
    python -m apps.customer_service check-templates

Exit codes: 0 done, 1 some input was invalid, 2 bad usage or configuration,
3 the model server is unreachable or failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from apps.customer_service.config import (
    DEFAULT_CONFIG_PATH,
    AppConfig,
    ConfigError,
    load_config,
    save_policy,
    with_server_address,
)
from apps.customer_service.errors import AppError, InvalidMessage, ModelError, ModelUnavailable
from apps.customer_service.messages import Context, CustomerMessage, validate_text
from suite_core.tf_logging import quiet_tensorflow

if TYPE_CHECKING:  # The service loads the gRPC client and TensorFlow's protos: imported by the commands.
    from apps.customer_service.service import CustomerService

EXIT_OK, EXIT_INVALID_INPUT, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m apps.customer_service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="YAML config (default: packaged)")
    parser.add_argument("--server", help="model server host:port, overriding the config")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's C++ log lines")
    commands = parser.add_subparsers(dest="command", required=True)

    reply = commands.add_parser("reply", help="suggest replies for one message or a file of messages (JSON lines)")
    reply.add_argument("message", nargs="?", help="the customer's message")
    reply.add_argument("--file", help="one message per line; '-' reads stdin")
    reply.add_argument("--customer-name")
    reply.add_argument("--channel")

    serve = commands.add_parser("serve", help="the HTTP endpoint and agent page")
    serve.add_argument("--host", help="bind address (default from config)")
    serve.add_argument("--port", type=int, help="port (default from config; 0 picks a free one)")

    tune = commands.add_parser("tune-threshold", help="tune the hand-off threshold on a validation split")
    tune.add_argument("--data", type=Path, help="text,category CSV (default: Banking77 in the shared data)")
    tune.add_argument("--target-precision", type=float, help="precision of answered messages (default from config)")
    tune.add_argument("--dry-run", action="store_true", help="print the result without writing the config")

    commands.add_parser("check-templates", help="list intents of the served model that have no reply template")
    commands.add_parser("info", help="the threshold in force and its coverage at the target precision")
    return parser


def _lines(source: BinaryIO) -> Iterator[bytes]:
    # Bytes, so that an undecodable line is reported as such instead of aborting the run.
    for line in source:
        yield line.rstrip(b"\r\n")


def _reply(service: CustomerService, args: argparse.Namespace, out: TextIO) -> int:
    context = Context(customer_name=args.customer_name, channel=args.channel)
    if (args.message is None) == (args.file is None):
        raise InvalidMessage("give either a message or --file (use '-' for stdin)", problem="usage", status=400)
    if args.message is not None:
        print(json.dumps(service.reply(args.message, context).to_dict()), file=out)
        return EXIT_OK
    source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    try:
        return _reply_lines(service, _lines(source), context, out)
    finally:
        if source is not sys.stdin.buffer:
            source.close()


def _reply_lines(service: CustomerService, lines: Iterator[bytes], context: Context, out: TextIO) -> int:
    """One JSON line per input line, in order; invalid lines get an error object, the rest are answered."""
    batch_size = service.config.server.max_batch_size
    status = EXIT_OK
    pending: list[tuple[int, CustomerMessage | InvalidMessage]] = []

    def flush() -> None:
        valid = [item for _, item in pending if isinstance(item, CustomerMessage)]
        suggestions = iter(service.reply_many(valid)) if valid else iter(())
        for number, item in pending:
            if isinstance(item, InvalidMessage):
                print(json.dumps({"line": number, **item.to_dict()}), file=out)
            else:
                print(json.dumps({"line": number, **next(suggestions).to_dict()}), file=out)
        pending.clear()

    for number, line in enumerate(lines, start=1):
        try:
            pending.append((number, CustomerMessage(validate_text(line, service.config.limits), context)))
        except InvalidMessage as exc:
            pending.append((number, exc))
            status = EXIT_INVALID_INPUT
        if len(pending) >= batch_size:
            flush()
    flush()
    return status


def _serve(service: CustomerService, args: argparse.Namespace) -> int:
    import dataclasses

    from apps.customer_service.web import ReplyHttpServer

    http = service.config.http
    http = dataclasses.replace(http, host=args.host or http.host, port=http.port if args.port is None else args.port)
    server = ReplyHttpServer(service, http)
    _startup_checks(service)
    print(f"serving the agent page on {server.url}/ (model server {service.config.server.address})", flush=True)
    server.serve_until_interrupted()
    return EXIT_OK


def _startup_checks(service: CustomerService) -> None:
    """Warnings only: the desk starts even while the model server is down (requests then get 503)."""
    try:
        missing = service.missing_templates()
    except (ModelUnavailable, ModelError) as exc:
        print(f"warning: {exc}; replies get 503 until it answers", file=sys.stderr)
        return
    if missing:
        print(f"warning: no reply template for {missing}; those intents are handed off", file=sys.stderr)
    info = service.info()
    if not info["tuned_for_served_model"]:
        print(f"warning: the threshold was tuned for model version {info['tuned_model_version']}, the server "
              f"serves version {info['served_model_version']}: run tune-threshold", file=sys.stderr)


def _tune(service: CustomerService, args: argparse.Namespace, config_path: Path, out: TextIO) -> int:
    import dataclasses

    from apps.customer_service.classifier import IntentClassifier
    from apps.customer_service.tuning import default_data_path, tune, validation_rows

    data = args.data or default_data_path()
    target = args.target_precision or service.config.policy.target_precision
    rows = validation_rows(data)
    # A bulk job, not a live reply: give each batch time rather than the interactive deadline.
    live = service.config.server
    server = dataclasses.replace(live, deadline_seconds=max(60.0, live.deadline_seconds))
    with IntentClassifier(server) as classifier:
        run = tune(classifier, rows, target)
    result = run.result
    tuned_on = (f"{data.parent.name}/{data.name} eval split ({result.messages} messages), "
                f"model {service.config.server.model_name} v{run.model_version}")
    policy = result.policy(service.config.policy, tuned_on, run.model_version)
    report = {"threshold": result.threshold, "coverage": result.coverage, "precision": result.precision,
              "accuracy": result.accuracy, "target_precision": target, "reached": result.reached,
              "messages": result.messages, "skipped_unknown_intent": run.skipped, "tuned_on": tuned_on}
    print(json.dumps(report), file=out)
    if not result.reached:
        print(f"warning: no threshold reaches {target:.0%} precision; every message would be handed off",
              file=sys.stderr)
    if not args.dry_run:
        save_policy(config_path, policy)
        print(f"wrote threshold {result.threshold:.4f} to {config_path}", file=sys.stderr)
    return EXIT_OK


def _check_templates(service: CustomerService, out: TextIO) -> int:
    missing = service.missing_templates()
    print(json.dumps({"missing": missing}), file=out)
    return EXIT_INVALID_INPUT if missing else EXIT_OK


def _config(args: argparse.Namespace) -> AppConfig:
    config = load_config(args.config)
    return with_server_address(config, args.server) if args.server else config


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow(argv)
    args = _parser().parse_args(argv)
    from apps.customer_service.service import CustomerService

    try:
        with CustomerService.from_config(_config(args)) as service:
            if args.command == "reply":
                return _reply(service, args, out)
            if args.command == "serve":
                return _serve(service, args)
            if args.command == "tune-threshold":
                return _tune(service, args, args.config, out)
            if args.command == "info":
                print(json.dumps(service.info()), file=out)
                return EXIT_OK
            return _check_templates(service, out)
    except InvalidMessage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT if exc.problem != "usage" else EXIT_USAGE
    except (ModelUnavailable, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except (ConfigError, AppError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
