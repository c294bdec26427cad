#!/usr/bin/env bash
# One GPU run (device machine, repo root): install the carried wheels, train the shipped recipes
# on the packed data, evaluate, export, and leave the results in $OUT (at most 8 files come back).
#
#   prepare here:  bash scripts/fetch_wheels.sh
#                  python -m scripts.pack_data ../shared/data/pfcn_aisegment ../shared/data/ccp --out .pack
#   on the GPU:    bash scripts/gpu_train.sh            (carry .whl and .pack; OUT is set there)
#   rehearse here: TINY=1 OUT=/tmp/gpu-out bash scripts/gpu_train.sh
#
# RECIPES (default "lite quality") and MINUTES (training budget per recipe, default 3) may be set:
# two recipes, their start-up, test scoring and export must fit the 10 minutes one command may run.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that comes back}"
mkdir -p "$OUT"
PACK=${PACK:-.pack}
RECIPES=${RECIPES:-lite quality}
MINUTES=${MINUTES:-3}
PY=${PY:-python3}
RUNS=$(mktemp -d /tmp/runs.XXXX)
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1

if [ -n "${TINY:-}" ]; then  # here the wheels are for another Python: check they would install there
  [ -d .whl ] && $PY -m pip install -q --dry-run --no-index --no-deps --only-binary=:all: --python-version 3.12 \
    --target /tmp/site-check .whl/*.whl && echo "wheels: installable on Python 3.12"
elif [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU";
  $PY -c "import torch, segmentation_models_pytorch as smp; print('torch', torch.__version__, 'smp', smp.__version__)"; } \
  | tee "$OUT/summary.txt"

if [ -n "${TINY:-}" ]; then  # a CPU rehearsal on the committed sample: same commands, tiny sizes
  ROOTS="['samples/portraits', 'samples/fullbody']"; WEIGHTS=None
  EXTRA=(--gin-param "train.max_steps=2" --gin-param "build_dataloaders.input_size=(64, 64)"
         --gin-param "make_splits.split=(0.75, 0.125, 0.125)" --gin-param "build_dataloaders.num_workers=2"
         --gin-param "build_dataloaders.batch_size=4")
  LAUNCH=(accelerate launch --num_processes 1 --mixed_precision no)
else
  ROOTS="['$PACK/pfcn_aisegment', '$PACK/ccp']"; WEIGHTS="'$PACK/mobilenet_v2_imagenet_encoder.pt'"
  EXTRA=(--gin-param "train.max_minutes=$MINUTES" --gin-param "train.channels_last=True"
         --gin-param "build_dataloaders.num_workers=14")
  LAUNCH=(accelerate launch --num_processes 1 --num_machines 1 --mixed_precision bf16 --dynamo_backend no)
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 2 > "$RUNS/gpu_util.csv" &
  UTIL_PID=$!
fi

for recipe in $RECIPES; do
  start=$(date +%s)
  status=0
  INIT=()  # the lite recipe continues from the shipped CPU-trained weights (same network)
  if [ "$recipe" = lite ] && [ -f models/lite.pt ] && [ -z "${TINY:-}" ]; then
    INIT=(--gin-param "build_model.init_from='models/lite.pt'")
  fi
  "${LAUNCH[@]}" train.py --gin "gin/$recipe.gin" "${INIT[@]}" \
    --gin-param "make_splits.roots=$ROOTS" --gin-param "build_model.encoder_weights=$WEIGHTS" \
    --gin-param "train.run_root='$RUNS/$recipe'" --gin-param "train.log_with=('tensorboard',)" \
    "${EXTRA[@]}" > "$RUNS/$recipe.log" 2>&1 || status=$?
  tr '\r' '\n' < "$RUNS/$recipe.log" | grep -v "step/s" | tail -40 || true
  if [ "$status" != 0 ]; then echo "$recipe: training failed ($status)" | tee -a "$OUT/summary.txt"; continue; fi
  run="$RUNS/$recipe/exp1"
  for root in $(cut -f1 "$run/splits/test.tsv" | grep -v '^#' | sort -u); do  # test split, one root at a time
    $PY - "$run" "$root" <<'PY'
import sys
from pathlib import Path
import lib.training.inference  # the torch loaders: .pt files too
from lib.live.segmenter import load_segmenter
from lib.training.scoring import score
from lib.training.splits import read_split
run, root = Path(sys.argv[1]), sys.argv[2]
pairs = [p for p in read_split(run / "splits" / "test.tsv") if p.root == root]
for path in (run / "weights" / "best.pt", run / "weights" / "best.onnx"):
    r = score(load_segmenter(path), pairs, batch_size=16, num_workers=8, progress=False)
    print(f"test {Path(root).name} {path.name}: n={r['n']} iou={r['iou']:.4f} mean_iou={r['mean_iou']:.4f} "
          f"boundary_f={r['boundary_f']:.4f}")
PY
  done 2>&1 | tee -a "$RUNS/$recipe.log"
  echo "$recipe: $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
  tr '\r' '\n' < "$RUNS/$recipe.log" | grep -h "^run \|^test \|max_minutes\|^epoch" | tail -12 >> "$OUT/summary.txt" || true
  # Only the best weights come back, in half precision (load_checkpoint casts them back to fp32);
  # ONNX and TorchScript are made from them here by export.py, and checked there.
  $PY export.py --ckpt "$run/weights/best.pt" --formats half --out "$run"
  rm -rf "$run/checkpoints" "$run/weights"
done

[ -n "${UTIL_PID:-}" ] && kill "$UTIL_PID" 2>/dev/null || true
# Everything in one archive, cut into pieces under the 16 MiB a file may have on the way back.
tar -C "$RUNS" -czf - . | split -b 15m - "$OUT/results.tgz.part-"
ls -la "$OUT"
