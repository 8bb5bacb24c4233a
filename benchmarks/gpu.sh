#!/usr/bin/env bash
# One H100/H200 call in under 9 minutes: first tests/test_cuda.py (the CPU's answers on the GPU),
# then the GPU table of benchmarks/RESULTS.md: sizes A1 A4 tiny (the sizes users train first:
# the first run, 2026-12-04, ran out of time before A4), every pass, bf16 + channels_last + fuse,
# whose TRADES rows also go into the throughput table `rrn reproduce` costs runs with, and a
# profile of each row (is the GPU waiting on the host? A1 ran at 2.5% MFU); then, if time is
# left, one torch.compile row (A1 TRADES).
#
# One-time preparation, here in the repository root: the GPU machine has no network and no
# pyautoattack, which is pure Python (one py3-none-any wheel, about 42 MB, no dependencies):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     -d .whl pyautoattack==0.2.0    # the version in .venv: .venv/bin/pip show pyautoattack
# The call: the device tool's `run` with carry [".whl"], command "bash benchmarks/gpu.sh",
# timeout_s 600. It writes $OUT/cuda-tests.log, $OUT/gpu.json, $OUT/profile.txt,
# $OUT/gpu-compile.json, $OUT/progress.log, $OUT/RESULTS.md (benchmarks/RESULTS.md with its cuda
# sections replaced) and $OUT/throughput.json (the package's table with a cuda entry); copy the
# last two over their files here and commit. Without OUT, under /tmp/bench-gpu. Arguments are
# passed on to both runs, and DEVICE=cpu runs the same steps on a CPU (a dry run of this script,
# not a measurement):
#   DEVICE=cpu bash benchmarks/gpu.sh --sizes tiny --batch 2 --repeats 1 --min-time 0 \
#     --aa-samples 1 --loader-batches 2
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/bench-gpu}"
device="${DEVICE:-cuda}"
budget=560  # seconds for the whole script
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cp benchmarks/RESULTS.md "$out/RESULTS.md"
cp src/robustresnet/reproduce/throughput.json "$out/throughput.json"
if [[ $device == cuda ]]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  timeout 170 python3 -m pytest -p no:cacheprovider tests/test_cuda.py -rfs \
    >"$out/cuda-tests.log" 2>&1 || echo "tests/test_cuda.py failed (status $?)"
  tail -n 3 "$out/cuda-tests.log"
fi

bench() {  # a time limit in seconds, then the harness's arguments; progress and errors to the log
  local limit=$1 status=0
  shift
  timeout "$limit" python3 -m benchmarks --device "$device" --dtype bf16 \
    --write "$out/RESULTS.md" --throughput "$out/throughput.json" "$@" \
    2>>"$out/progress.log" || status=$?
  if ((status)); then  # every finished row is already in the JSON and RESULTS.md
    echo "benchmarks exited with status $status (124: out of time); the log ends:"
    tail -n 25 "$out/progress.log"
  fi
}

bench $((budget - 80 - SECONDS)) --sizes A1 A4 tiny --json "$out/gpu.json" \
  --profile "$out/profile.txt" "$@"
left=$((budget - SECONDS))
if ((left >= 120)); then
  bench "$left" --sizes A1 --passes trades --compile --json "$out/gpu-compile.json" "$@"
else
  echo "no torch.compile row: $left s left of $budget"
fi
sed -n "/^## $device/,\$p" "$out/RESULTS.md"
