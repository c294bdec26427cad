"""Person segmentation in three packages, each importing only those before it:

    lib.live       the live install (requirements-live.txt): frames in, a model file run with ONNX Runtime,
                   the composite out. Never imports torch, gin, smp or albumentations.
    lib.training   the training stack: data, model, loss, the loop, run folders, export; the torch
                   loaders for .pt / .ts model files (it fills lib.live.segmenter.LOADERS).
    lib.tools      built on both: evaluate, peers and their comparison, the live benchmark, box labels.

Importing a package imports nothing else. Entry scripts that read gin import
lib.training.configurables, which registers every configurable.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: models/, gin/, samples/ are found from it
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check when albumentations is imported
