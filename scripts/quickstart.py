"""The quick start (`make demo`): the whole suite on the project's own demo data.

1. writes the demo data (customer-service intents, financial news sentiment,
   a shop catalog with shoppers' requests);
2. runs the training pipeline for each task with all-MiniLM-L6-v2 (intent,
   sentiment, catalog embedder, then catalog re-ranker, which mines with the
   embedder), pushing blessed models to work/models/<task>/<version>;
3. starts the model server on work/models, sends each app one request over
   gRPC, prints what came back, and stops the server.

Everything lands under work/ (SUITE_WORK_DIR); run it again and cached steps are skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving.launcher import INFRA_SERVING, ModelServerProcess, batching_flags  # noqa: E402
from tfx_pipeline.cli import main as pipeline_main  # noqa: E402

WORK = Path(os.environ.setdefault("SUITE_WORK_DIR", str(REPO / "work")))
CONFIGS = REPO / "tfx_pipeline" / "configs"
MODELS = ("intent", "sentiment", "catalog_embedder", "catalog_reranker")  # In training order.


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


@contextlib.contextmanager
def model_server(model_base_path: Path) -> Iterator[str]:
    """`python -m serving` on loopback, as TF Serving would be started; yields its gRPC address.
    Its output goes to work/model_server.log."""
    from serving.config import write_model_server_config

    config = write_model_server_config(WORK / "models.config",
                                       {name: model_base_path / name for name in MODELS})
    server = ModelServerProcess([f"--model_config_file={config}", *batching_flags(),
                                 f"--monitoring_config_file={INFRA_SERVING / 'monitoring.config'}"],
                                WORK / "model_server.log").start()
    try:
        for model in MODELS:
            if not any(p.name.isdigit() for p in (model_base_path / model).glob("*")):
                # Only the re-ranker may go unblessed (it must beat hybrid retrieval): the ranker
                # then answers in hybrid order, and its responses say so (rerank.status no_reranker).
                print(f"{model}: no blessed version pushed, not served")
                continue
            version = server.wait_until_available(model, timeout_seconds=180)
            print(f"serving {model} version {version} on {server.grpc_address} (REST on {server.rest_address})")
        yield server.grpc_address
    finally:
        code = server.stop()  # SIGTERM: drains in-flight requests, then exits.
        print(f"model server stopped (exit code {code})")


def call_the_server(address: str) -> None:
    from serving.client import ClientConfig, ServingClient

    with ServingClient(ClientConfig(address=address)) as client:
        for model, text in (("intent", "I still haven't received my new card"),
                            ("sentiment", "Nokia operating profit increased to EUR 40 million")):
            outputs = client.predict(model, [text]).to_python()
            confidence = max(outputs["probabilities"][0])
            print(f"{model:>9}: {text!r} -> {outputs['class_names'][0]} ({confidence:.2f})")


def ask_the_customer_service_app(address: str) -> None:
    from apps.customer_service.config import load_config
    from apps.customer_service.messages import Context
    from apps.customer_service.service import CustomerService

    config = load_config()
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, address=address))
    with CustomerService.from_config(config) as service:
        suggestion = service.reply("Hi, my new card still hasn't arrived", Context(customer_name="Ana"))
    print("customer-service app:", json.dumps(suggestion.to_dict(), indent=2))


def replay_news_through_the_sentiment_monitor(address: str) -> None:
    from apps.sentiment_monitor.cli import main as monitor_main

    stream = WORK / "news.jsonl"
    monitor_main(["--log-level", "WARNING", "demo-stream", str(stream), "--items", "400", "--malformed"])
    print("sentiment monitor: backtest of the demo news stream (alerts, then charts)")
    monitor_main(["--log-level", "WARNING", "backtest", str(stream), "--out", str(WORK / "backtest"),
                  "--set", f"scoring.address={address}"])


def recommend_from_the_catalog(address: str) -> None:
    from apps.ranker.cli import main as ranker_main

    common = ["--server", address, "--index", str(WORK / "ranker" / "index")]
    print("ranker: ingest the demo catalog, then one request (hybrid retrieval, re-rank)")
    ranker_main([*common, "ingest", str(WORK / "demo_data" / "catalog" / "corpus.jsonl"), "--full"])
    ranker_main([*common, "query", "a shelter that survives heavy rain", "-k", "3",
                 "--filter", json.dumps({"in_stock": True})])


def main() -> int:
    banner("1. demo data")
    if pipeline_main(["demo-data", "--out", str(WORK / "demo_data")]):
        return 1
    for task in MODELS:
        banner(f"2. training pipeline: {task}")
        if pipeline_main(["run", "--config", str(CONFIGS / f"demo_{task}.yaml")]):
            return 1
    banner("3. model server")
    with model_server(WORK / "models") as address:
        banner("4. requests")
        call_the_server(address)
        ask_the_customer_service_app(address)
        replay_news_through_the_sentiment_monitor(address)
        recommend_from_the_catalog(address)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
