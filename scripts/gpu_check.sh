#!/usr/bin/env bash
# One command on the GPU machine (shared/GPU.md): build the CUDA kernels, run the CUDA tests,
# compute-sanitizer (memcheck, racecheck, initcheck) on small cases, and the GPU benchmarks
# against PyTorch; logs and JSON go to $OUT (default ./gpu-out), a short table is printed last.
#
#   OUT=/tmp/out bash scripts/gpu_check.sh            # everything
#   QUICK=1 bash scripts/gpu_check.sh                 # the benchmarks with short timing
#   CPU_TESTS=0 ...                                   # skip the CPU test suite and build no CPU
#                                                     # SIMD tables (device time is short)
#   STEP_TIMEOUT=240 ...                              # seconds any one step may run (default 600)
#   SANITIZERS="memcheck" BENCHES="pool" ...         # a subset of the sanitizer tools / benchmarks
#   BENCH_FILTER=dw ...                               # only the layers whose name holds "dw"
#   GEMM_TILES="small large" ...                      # layers-bf16 once per forced pipeline tile
#                                                     # (default: auto, the per-layer choice)
#   PACK=1 ...                                        # at exit, fold the logs into $OUT/logs.tgz
#                                                     # (the device tool returns at most 8 files)
#
# The machine has no network: it builds against the torch installed there (--no-build-isolation,
# --no-deps). Each step's status is collected; the script fails if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" CNNKERNELS_CUDA=ON
# Without the CPU tests the AVX2/AVX-512 kernel tables (minutes of compiling) are not needed.
[ "${CPU_TESTS:-1}" = 0 ] && export CNNKERNELS_CPU_SIMD=OFF
PY="${PYTHON:-python3}"
declare -a STATUS=()
pack_logs() {  # every file but the JSON results into one archive
  (cd "$OUT" && files=$(ls | grep -v -e '\.json$' -e '^logs\.tgz$') &&
   [ -n "$files" ] && tar czf logs.tgz $files && rm -f $files)
}
[ -n "${PACK:-}" ] && trap pack_logs EXIT

step() {  # step NAME LOGFILE COMMAND...: run, log, record pass/fail with the time it took
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  echo "== $name" >&2
  timeout "${STEP_TIMEOUT:-600}" "$@" >"$OUT/$log" 2>&1
  local rc=$?
  [ $rc = 124 ] && echo "(step timed out after ${STEP_TIMEOUT:-600}s)" >>"$OUT/$log"
  STATUS+=("$(printf '%-28s %-4s %5ds  %s' "$name" "$([ $rc = 0 ] && echo ok || echo FAIL)" $((SECONDS - t0)) "$log")")
  tail -n 3 "$OUT/$log" >&2
  return $rc
}

{ nvidia-smi; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())"; } >"$OUT/device.txt" 2>&1

if ! step build build.log "$PY" -m pip install --no-build-isolation --no-deps -v -e .; then
  printf '%s\n' "${STATUS[@]}"
  exit 1
fi
step show_config show_config.log "$PY" -c "import cnnkernels; cnnkernels.show_config()"
step "cuda tests" pytest-cuda.log "$PY" -m pytest -m cuda -q -rs --durations=10 -p no:cacheprovider \
  --junitxml="$OUT/pytest-cuda.xml" tests/test_cuda.py
if [ "${CPU_TESTS:-1}" != 0 ]; then
  step "cpu tests (+ops on cuda)" pytest-all.log "$PY" -m pytest -q -x -p no:cacheprovider
fi
for tool in ${SANITIZERS-memcheck racecheck initcheck}; do
  step "sanitizer $tool" "sanitizer-$tool.log" compute-sanitizer --tool "$tool" --error-exitcode 1 \
    "$PY" scripts/sanitizer_cases.py
done

quick=(); [ -n "${QUICK:-}" ] && quick=(--quick)
layers=(--suite layers); [ -n "${BENCH_FILTER:-}" ] && layers+=(--filter "$BENCH_FILTER")
for bench in ${BENCHES-layers-bf16 layers-f32 pool}; do
  case $bench in
    layers-bf16)
      for tiles in ${GEMM_TILES:-auto}; do
        sfx=""; [ "$tiles" != auto ] && sfx="-$tiles"
        step "bench bf16 nhwc N=32 tiles $tiles" "bench-layers-bf16$sfx.log" "$PY" -m benchmarks --device cuda \
          --dtype bfloat16 --memory-format nhwc --batch 32 --cuda-gemm-tiles "$tiles" "${layers[@]}" --no-progress \
          --no-plot "${quick[@]}" --out "$OUT/cuda-layers-bf16-n32$sfx.json"
      done ;;
    layers-f32) step "bench f32 both N=32" bench-layers-f32.log "$PY" -m benchmarks --device cuda --dtype float32 \
      --batch 32 "${layers[@]}" --no-progress --no-plot "${quick[@]}" --out "$OUT/cuda-layers-f32-n32.json" ;;
    pool) step "bench pool N=32" bench-pool.log "$PY" -m benchmarks --device cuda --suite pool --batch 32 \
      --no-progress --no-plot "${quick[@]}" --out "$OUT/cuda-pool-n32.json" ;;
    *) echo "unknown benchmark $bench" >&2 ;;
  esac
done

echo
cat "$OUT/device.txt" | tail -n 1
for f in "$OUT"/cuda-*.json; do
  [ -f "$f" ] && "$PY" -m benchmarks --from-json "$f" --no-plot | tail -n 12
done
echo
printf '%s\n' "${STATUS[@]}"
! printf '%s\n' "${STATUS[@]}" | grep -q ' FAIL '
