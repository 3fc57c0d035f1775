#!/usr/bin/env bash
# The GPU check for a machine with torch, Triton and CuPy but no vLLM (under 9 minutes on an
# H100/H200): the CUDA tests of the solver and of the anchored attention kernel, then the
# kernel benchmark against torch's flash SDPA, the solver benchmarks (torch vs CuPy, TF32,
# the solver modes) and the spectral step (device vs host, up to N = 16384), as tables. It runs on
# a bare image (torch, Triton, NumPy, SciPy, scikit-learn, pytest; CuPy and pydantic optional):
# each step runs even when another fails, and the script's status says whether all passed.
#
#     bash benchmarks/gpu_check.sh            # from the repository root; results in $OUT or /tmp/gpu-check
#     bash benchmarks/gpu_check.sh --smoke    # the same steps on the CPU with tiny shapes: checks the
#                                             # script itself (CI runs it), measures nothing
#
# Without --smoke it refuses to run where torch sees no CUDA device: the CUDA tests would all
# be skipped and the check would "pass" having checked nothing.
# Needs pytest and pytest-timeout (and pydantic for the solver tests through AnchorParams). Where
# pydantic is missing, wheels in .whl/ are installed to /tmp/site first (see the README's GPU section).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

if ! "$PY" -c "import pydantic" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

SMOKE=0
case "${1:-}" in
    --smoke) SMOKE=1 ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--smoke]" >&2; exit 2 ;;
esac
if [ "$SMOKE" = 0 ] && ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: torch sees no CUDA device here (bash benchmarks/gpu_check.sh --smoke checks the script on a CPU)" >&2
    exit 2
fi
# seconds per step on the GPU; --smoke runs on a CPU, slower, with three times as long
SCALE=1
if [ "$SMOKE" = 1 ]; then
    SCALE=3
    KERNEL_ARGS=(--smoke)
    BACKENDS_ARGS=(--smoke)
    SSC_ARGS=(--device cpu --sizes 128 --features 256 --pca 0 --n-clusters 4)
    MODES_ARGS=(--device cpu --modes --mode-shapes 64x128)
    SPECTRAL_ARGS=(--device cpu --sizes 64 300 --features 64 --n-clusters 4)
    SPECTRAL_TF32_ARGS=(--device cpu --sizes 64 --features 64 --n-clusters 4)
else
    KERNEL_ARGS=()
    BACKENDS_ARGS=()
    SSC_ARGS=(--device cuda --sizes 2048 4096 --features 4096 --pca 0 --baseline-budget 10)
    MODES_ARGS=(--device cuda --modes --mode-shapes 512x2048)
    SPECTRAL_ARGS=(--device cuda --sizes 2048 4096 16384 --features 4096)
    SPECTRAL_TF32_ARGS=(--device cuda --sizes 2048 16384 --features 4096 --tf32 --host-max 0)
fi

"$PY" - <<'EOF' | tee "$OUT/device.txt"
import torch, triton
print(f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}; torch {torch.__version__}; "
      f"triton {triton.__version__}")
try:
    import cupy
    print(f"cupy {cupy.__version__}")
except ImportError:
    print("cupy: not installed")
EOF

status=0
# one pytest per file: a collection error in one (a package the image lacks) never leaves the
# other unrun; every step below runs whatever the one before it did
for tests in ssc_cuda kernel_anchored_prefill_cuda; do
    file=$(find tests -name "test_$tests.py" | head -1)
    timeout $((150 * SCALE)) "$PY" -m pytest -q -p no:cacheprovider -o addopts="-ra" --junitxml="$OUT/test_$tests.xml" \
        "$file" 2>&1 | tee "$OUT/test_$tests.txt" || status=1
done
timeout $((120 * SCALE)) "$PY" benchmarks/attention_kernel.py "${KERNEL_ARGS[@]}" --json "$OUT/attention_kernel.json" 2>&1 \
    | tee "$OUT/attention_kernel.md" || status=1
timeout $((150 * SCALE)) "$PY" benchmarks/ssc_backends.py "${BACKENDS_ARGS[@]}" 2>&1 | tee "$OUT/ssc_backends.md" || status=1
timeout $((60 * SCALE)) "$PY" benchmarks/ssc.py "${SSC_ARGS[@]}" 2>&1 | tee "$OUT/ssc.md" || status=1
timeout $((60 * SCALE)) "$PY" benchmarks/ssc.py "${MODES_ARGS[@]}" 2>&1 | tee "$OUT/ssc_modes.md" || status=1
# the spectral step on the device vs the host path, solve + spectral up to N = 16384, TF32
timeout $((120 * SCALE)) "$PY" benchmarks/spectral.py "${SPECTRAL_ARGS[@]}" 2>&1 | tee "$OUT/spectral.md" || status=1
timeout $((60 * SCALE)) "$PY" benchmarks/spectral.py "${SPECTRAL_TF32_ARGS[@]}" 2>&1 \
    | tee "$OUT/spectral_tf32.md" || status=1
echo "gpu_check: $([ $status -eq 0 ] && echo passed || echo FAILED); results in $OUT"
exit $status
