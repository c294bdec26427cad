"""The live install: sources, preprocessing, the ONNX segmenter, compositing, sinks, the window and the loop.

Needs only requirements-live.txt (ONNX Runtime, OpenCV, numpy, pygame-ce, PyAV); nothing here may
import the training stack (tests/test_live_guard.py fails naming the module that does).
"""
