"""Person segmentation: data, model, losses, metrics, the training loop, export and inference.

Importing the package imports nothing: the live path (webcam.py on an ONNX model) must run with
ONNX Runtime, OpenCV, numpy and a window alone. Entry scripts that read gin configs import
lib.training.configurables, which registers every configurable.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check when albumentations is imported
