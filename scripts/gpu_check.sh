#!/usr/bin/env bash
# GPU readiness check, a few minutes on a machine with an NVIDIA GPU:
#   1. what TensorFlow sees (nvidia-smi, the GPU list);
#   2. `suite-pipeline doctor`: the strategy and precision the Trainer would
#      use (mixed_float16 on a GPU), and MiniLM training steps timed with them,
#      then the same steps in float32 for the ratio;
#   3. a short MiniLM fine-tune: the demo intent pipeline end to end (2 epochs),
#      and Banking77 for 1 epoch when ../shared/data (SUITE_SHARED_DATA) is there.
# Everything goes to $OUT (default work/gpu_check); the last lines printed are the figures.
#
# Needs the pinned stack (`make setup`) with TensorFlow's CUDA libraries:
#   .venv/bin/pip install -c constraints.txt 'tensorflow[and-cuda]==2.21.0'
# Usage: scripts/gpu_check.sh            (PYTHON=... OUT=... to override)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-work/gpu_check}
mkdir -p "$OUT"
export SUITE_WORK_DIR="$OUT/work"

(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi: not available") \
  | tee "$OUT/nvidia-smi.txt"
"$PYTHON" -c "import tensorflow as tf; print('GPUs seen by TensorFlow:', tf.config.list_physical_devices('GPU'))" \
  2>/dev/null | tee "$OUT/devices.txt"

# Auto precision (mixed_float16 on a GPU), then float32, same steps.
"$PYTHON" -m tfx_pipeline doctor --steps 30 --json > "$OUT/doctor_auto.json"
"$PYTHON" -m tfx_pipeline doctor --steps 30 --json --config tfx_pipeline/configs/demo_intent.yaml \
  --set training.distribution.precision=float32 > "$OUT/doctor_float32.json"

"$PYTHON" -m tfx_pipeline demo-data --out "$SUITE_WORK_DIR/demo_data" > /dev/null
"$PYTHON" -m tfx_pipeline run --config tfx_pipeline/configs/demo_intent.yaml --set training.epochs=2 \
  > "$OUT/demo_intent_run.txt" 2>&1
SHARED=${SUITE_SHARED_DATA:-../shared/data}
if [ -f "$SHARED/banking77/train.csv" ]; then
  "$PYTHON" -m tfx_pipeline run --config tfx_pipeline/configs/banking77.yaml --set training.epochs=1 \
    > "$OUT/banking77_run.txt" 2>&1
fi

"$PYTHON" - "$OUT" <<'PY'
import glob, json, sys
out = sys.argv[1]
auto, fp32 = (json.load(open(f"{out}/doctor_{name}.json")) for name in ("auto", "float32"))
print("devices:", ", ".join(auto["devices"]))
print("suggested:", auto["suggested"]["strategy"], auto["suggested"]["precision"])
for name, report in (("auto", auto), ("float32", fp32)):
    s = report["training_steps"]
    print(f"MiniLM training steps, {s['precision']}: {s['examples_per_second']} examples/s "
          f"(batch {s['global_batch']} x {s['sequence_length']}, first step {s['first_step_seconds']} s)")
print("mixed vs float32:", round(auto["training_steps"]["examples_per_second"]
                                 / fp32["training_steps"]["examples_per_second"], 2))
for record_path in sorted(glob.glob(f"{out}/work/pipelines/*/runs/*.json")):
    record = json.load(open(record_path))
    trainer = next((c for c in record["components"] if c["id"] == "Trainer"), None)
    if trainer and not trainer["cached"]:
        summary = trainer["artifacts"]["model_run"]["properties"]
        print(f"{record['pipeline_root'].rsplit('/', 1)[-1]}: {summary['precision']}, "
              f"{summary['train_examples_per_second']} examples/s, {summary['epochs_run']} epoch(s), metrics {record.get('metrics')}")
PY
