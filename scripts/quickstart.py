"""The quick start (`make demo`): the whole suite on the project's own demo data.

1. writes the demo data (customer-service intents, financial news sentiment);
2. runs the training pipeline for both tasks with all-MiniLM-L6-v2, pushing
   blessed models to work/models/<task>/<version>;
3. starts the model server on work/models, sends each app one request over
   gRPC, prints what came back, and stops the server.

Everything lands under work/ (SUITE_WORK_DIR); run it again and cached steps are skipped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfx_pipeline.cli import main as pipeline_main  # noqa: E402

WORK = Path(os.environ.setdefault("SUITE_WORK_DIR", str(REPO / "work")))
CONFIGS = REPO / "tfx_pipeline" / "configs"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def main() -> int:
    banner("1. demo data")
    if pipeline_main(["demo-data", "--out", str(WORK / "demo_data")]):
        return 1
    for task in ("intent", "sentiment"):
        banner(f"2. training pipeline: {task}")
        if pipeline_main(["run", "--config", str(CONFIGS / f"demo_{task}.yaml")]):
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
