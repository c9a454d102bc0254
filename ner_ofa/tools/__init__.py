"""The deployment tools, importable and installed as console scripts (pyproject.toml): ``predict`` (text →
entities), ``serve`` (HTTP), ``quantize`` (ONNX Runtime INT8). The top-level predict.py, serve.py and
quantize_model.py run the same ``main``."""
