#!/usr/bin/env bash
# Wheels for the GPU machine (Python 3.12, no network there), into the git-ignored .whl/.
# It already has torch, torchvision, timm, accelerate, onnx, onnxruntime, opencv-headless,
# tensorboard, matplotlib, tqdm, scipy, pyyaml, huggingface-hub; what our code needs beyond them:
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl \
  segmentation-models-pytorch==0.6.0 gin-config==0.5.0 albumentations==2.0.8 albucore==0.0.24 \
  stringzilla==5.3.2 simsimd==6.5.16 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
  typing-inspection==0.4.5
ls -la .whl
du -sh .whl
