#!/usr/bin/env bash
# The GPU checks of aigi-bench, each a plain `bench` command, timed, with the evidence saved.
#
#   benchmarks/device_check.sh harness [OUT_DIR]   # CPU vs CUDA tables (fp32, tf32, bf16) and `bench speed`
#   benchmarks/device_check.sh dear [OUT_DIR]      # every DEAR stage timed on the device (DEAR-r on rajan.mini),
#                                                  # then a few training and Stay-Positive refit steps there
#   benchmarks/device_check.sh free [OUT_DIR]      # the training-free detectors: aeroblade.mini CPU vs CUDA,
#                                                  # its speed, WaRPAD's speed on a random-weight ViT-L/14
#   benchmarks/device_check.sh ratios [OUT_DIR]    # end-to-end against the model-only limit and the official
#                                                  # loop (benchmarks/speed_ratios.py), GPU utilisation sampled
#   benchmarks/device_check.sh proof [OUT_DIR]     # issue 20 in one call of about 8 minutes on one H200: a
#                                                  # reduced harness + ratios + dear, and OUT_DIR/summary.md
#
# A task is lent 15 device-minutes in all, so `proof` is the part to run; the others are its
# long versions, for a machine with time to spare. Each part fits one 10-minute call. Without a GPU, DEVICE=cpu rehearses
# the same commands (the comparisons then compare CPU with CPU). OUT_DIR (default: $OUT, else
# results/device-check) receives at most four files: <part>.log (every command's output, compare
# summaries included), <part>-times.txt, and for the harness speed-fp32.csv and speed-bf16.csv.
# Installs with --no-deps when `bench` is missing, for machines that have the dependencies but
# no network; AIGI-mini is built fresh in a temporary AIGI_BENCH_HOME. RUN_ARGS is added to every
# `bench run` (RUN_ARGS="--max-per-set 4 --detectors npr.mini" makes a quick rehearsal).
# Exits 1 when the fp32 CUDA table does not match the CPU one within 1e-3 (after all checks ran).
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:?usage: benchmarks/device_check.sh proof|harness|dear|free|ratios [OUT_DIR]}
out=$(realpath -m "${2:-${OUT:-results/device-check}}")
device=${DEVICE:-cuda}
read -r -a run_args <<<"${RUN_ARGS:-}"
status=0
mkdir -p "$out"
rm -f "$out/$part.log" "$out/$part-times.txt"
work=$(mktemp -d)
export AIGI_BENCH_HOME=${AIGI_BENCH_HOME:-$work/home} PYTHONUNBUFFERED=1
command -v bench >/dev/null || python3 -m pip install -q --no-deps --no-build-isolation -e .
command -v bench >/dev/null || bench() { python3 -m bench "$@"; }  # installed, but its bin/ is not on PATH
python3 -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available() and torch.cuda.get_device_name())" | tee "$out/$part.log"

timed() {  # timed NAME CMD...: run, keep the log, print the wall time; returns the command's status
  local name=$1 start=$SECONDS rc=0; shift
  echo "== $name: $*" | tee -a "$out/$part.log"
  "$@" 2>&1 | tee -a "$out/$part.log" || rc=$?
  echo "== $name took $((SECONDS - start)) s" | tee -a "$out/$part-times.txt"
  return "$rc"
}

case $part in
harness)
  timed world bench world build
  timed run-cpu bench run --suite mini --post-process --device cpu --out "$work/cpu" "${run_args[@]}"
  timed run-fp32 bench run --suite mini --post-process --device "$device" --out "$work/dev" "${run_args[@]}"
  timed compare-fp32 bench compare "$work/cpu/mini" "$work/dev/mini" --atol 1e-3 || status=1
  # The faster numerics are reported, not required to match: their drift is the measurement.
  for p in tf32 bf16; do
    timed "run-$p" bench run --suite mini --post-process --device "$device" --precision "$p" --out "$work/dev" --run-name "mini-$p" "${run_args[@]}"
    timed "compare-$p" bench compare "$work/cpu/mini" "$work/dev/mini-$p" --atol 1e-3 || true
  done
  for p in fp32 bf16; do
    timed "speed-$p" bench speed --device "$device" --precision "$p" --size 256 --batch-size 64 --batches 20 --output "$out/speed-$p.csv"
  done
  ;;
dear)
  timed world bench world build
  timed dear-r bench dear run --base rajan.mini --alpha 0.3 --lr 1e-2 --steps-per-epoch 25 --max-epochs 20 --device "$device" --workers 8 --out "$work/dear-r"
  # The training recipe and the shared head refit on the device: a few steps each, for the CUDA path.
  timed train-corvi bench train corvi --max-epochs 1 --steps-per-epoch 20 --device "$device" --out "$work/train"
  timed train-corvi-plus bench train corvi-plus --max-epochs 1 --steps-per-epoch 20 --device "$device" --out "$work/train"
  ;;
free)
  timed world bench world build
  timed aeroblade-cpu bench run --suite mini --post-process --detectors aeroblade.mini --device cpu --out "$work/cpu" "${run_args[@]}"
  timed aeroblade-dev bench run --suite mini --post-process --detectors aeroblade.mini --device "$device" --out "$work/dev" "${run_args[@]}"
  timed aeroblade-compare bench compare "$work/cpu/mini" "$work/dev/mini" --atol 1e-3 || status=1
  timed speed-aeroblade bench speed --detectors aeroblade.mini --device "$device" --size 512 --batch-size 16 --batches 10 --output "$out/speed-aeroblade.csv"
  timed speed-warpad python3 benchmarks/warpad_speed.py --device "$device" --batch-size 8 --batches 5
  ;;
ratios)
  # res50nodown (corvi.mini) at 256 and 512 px, NPR at 256 px; fp32 and bf16; batch 64. IMAGES=64
  # makes a quick CPU rehearsal. nvidia-smi samples utilisation while it runs, where it exists.
  images=${IMAGES:-1024}
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -lms 200 >"$out/gpu-util.csv" &
    sampler=$!
  fi
  for p in fp32 bf16; do
    timed "ratios-256-$p" python3 benchmarks/speed_ratios.py --detectors corvi.mini,npr.mini --device "$device" --precision "$p" \
      --size 256 --batch-size 64 --images "$images" --repeats 3
    timed "ratios-512-$p" python3 benchmarks/speed_ratios.py --detectors corvi.mini --device "$device" --precision "$p" \
      --size 512 --batch-size 64 --images "$((images / 2))" --repeats 3
  done
  timed feed python3 benchmarks/speed_ratios.py --feed --images "$((images / 4))"
  if [[ -n ${sampler:-} ]]; then kill "$sampler"; fi
  ;;
proof)
  # Budget on one H200 with 16 cores (rehearse: DEVICE=cpu PER_SET=2 IMAGES=16 REPEATS=1 BATCH=8 WORKERS=auto,1 DEAR_ARGS="--max-batches 2
  # --max-epochs 1 --steps-per-epoch 2"): world ~1 min, correctness ~2 min, ratios ~3 min, DEAR ~1.5 min.
  # Files: proof.log, proof-times.txt, gpu-util.csv, dear-timings.json, summary.md.
  per_set=${PER_SET:-12} images=${IMAGES:-512} repeats=${REPEATS:-3} batch=${BATCH:-64} workers=${WORKERS:-auto,16}
  read -r -a dear_args <<<"${DEAR_ARGS:---max-batches 50 --max-epochs 3 --steps-per-epoch 25}"
  sample=(--max-per-set "$per_set")
  timed world bench world build
  # 1. Correctness: every bundled .mini row, original and post-processed, CPU against the device.
  timed run-cpu bench run --suite mini --post-process --device cpu --out "$work/cpu" "${sample[@]}" "${run_args[@]}"
  timed run-fp32 bench run --suite mini --post-process --device "$device" --out "$work/dev" "${sample[@]}" "${run_args[@]}"
  timed compare-fp32 bench compare "$work/cpu/mini" "$work/dev/mini" --atol 1e-3 || status=1
  for p in tf32 bf16; do  # drift reported, not required
    timed "run-$p" bench run --suite mini --post-process --device "$device" --precision "$p" --out "$work/dev" --run-name "mini-$p" "${sample[@]}" "${run_args[@]}"
    timed "compare-$p" bench compare "$work/cpu/mini" "$work/dev/mini-$p" --atol 1e-3 || true
  done
  # 2. Throughput: res50nodown (corvi.mini) at 256 and 512 px, NPR at 256 px, batch 64; the runner's default
  # workers and 16; the official loop once (fp32, batch 1), peak GPU memory per detector.
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 200 >"$out/gpu-util.csv" &
    sampler=$!
  fi
  timed ratios-256-fp32 python3 benchmarks/speed_ratios.py --detectors corvi.mini,npr.mini --device "$device" --precision fp32 \
    --size 256 --batch-size "$batch" --images "$images" --repeats "$repeats" --workers "$workers"
  timed ratios-256-bf16 python3 benchmarks/speed_ratios.py --detectors corvi.mini,npr.mini --device "$device" --precision bf16 \
    --size 256 --batch-size "$batch" --images "$images" --repeats "$repeats" --workers "$workers" --no-official
  timed ratios-512-bf16 python3 benchmarks/speed_ratios.py --detectors corvi.mini --device "$device" --precision bf16 \
    --size 512 --batch-size "$batch" --images "$((images / 2))" --repeats "$repeats" --workers auto --no-official
  if [[ -n ${sampler:-} ]]; then kill "$sampler"; fi
  # 3. DEAR-r on rajan.mini, every stage timed (timings.json), with a reduced refit budget. The pipeline
  # recomputes the frozen backbone at every refit step; it offers no cached-feature variant to compare.
  timed dear-r bench dear run --base rajan.mini --alpha 0.3 --lr 1e-2 "${dear_args[@]}" --device "$device" --workers 8 --out "$work/dear-r"
  cp "$work/dear-r/timings.json" "$out/dear-timings.json" 2>/dev/null || echo "no timings.json from DEAR" | tee -a "$out/$part.log"
  {
    echo "# Device proof, $(date -u +%F)"
    echo
    echo '```'; head -n 1 "$out/$part.log"; echo '```'
    echo
    echo "## Steps (wall time)"; echo; sed 's/^== /- /' "$out/$part-times.txt"
    echo
    echo "## CPU against the device (bench compare, $per_set images per set and label)"; echo
    echo '```'; grep -E "^== compare|matched scores|logit \|A-B\||tables identical|differ beyond" "$out/$part.log" || true; echo '```'
    echo
    echo "## Throughput (benchmarks/speed_ratios.py)"; echo
    grep -E "^device |^\|" "$out/$part.log" | grep -v "^| Detector" | sed 's/^device \(.*\)/\n**device \1**\n/' || true
    echo
    echo "## DEAR-r stages (s)"; echo
    echo "The refit recomputes the frozen backbone at every step; the pipeline offers no cached-feature variant."
    echo; echo '```'; cat "$out/dear-timings.json" 2>/dev/null || true; echo; echo '```'
  } >"$out/summary.md"
  ;;
*)
  echo "unknown part $part: choose proof, harness, dear, free or ratios" >&2
  exit 2
  ;;
esac
echo "evidence in $out"
exit $status
