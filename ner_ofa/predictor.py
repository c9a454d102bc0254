"""The Python API: NerPredictor loads any model this project writes and labels texts with it.

    from ner_ofa import NerPredictor
    ner = NerPredictor("../tmp/msra_ner_ofa/model_0.5/static_model")
    ner(["张伟在北京大学工作。"])   # [[{"type": "PER", "text": "张伟", "start": 0, "end": 2}, ...]]

The answers are what predict.py prints for the same directory and options (it uses this class)."""
import os
import threading

from ner_ofa.features import CharEncoder
from ner_ofa.labelling import predict_entities
from ner_ofa import backends, cli, model_io
from ner_ofa.cli import UserError


def load_logits_fn(model_dir, device="cpu", threads=2, backend="paddle", precision="int8"):
    """(logits_fn, tokenizer, model_info) for a static export (its directory or PREFIX), a quantize_model.py
    directory (backend "onnxruntime", or its model_info says onnx) or a dygraph model directory."""
    if backend == "paddle":
        static = backends.load_static_export(model_dir, threads=threads, device=device)
        if static is not None:
            return static
    model_info = model_io.read_model_info(model_dir)
    if model_info is None:
        raise UserError(f"{model_dir}: no {model_io.INFO_NAME}; give an exported or trained model directory")
    if backend == "onnxruntime" or model_info.get("kind") == "onnx":
        if model_info.get("kind") != "onnx":
            raise UserError(f"{model_dir}: --backend onnxruntime needs a quantize_model.py output directory")
        path = os.path.join(model_dir, model_info["onnx_int8" if precision == "int8" else "onnx_fp32"])
        return backends.onnx_logits_fn(path, threads), model_io.load_tokenizer(model_dir), model_info
    import paddle

    paddle.set_device(device)
    model, tokenizer, model_info = backends.load_inference_model(model_dir)
    return backends.dynamic_logits_fn(model), tokenizer, model_info


class NerPredictor:
    """Texts -> entities with one model.

    ``model_dir``: a static export (dir or PREFIX), a quantize_model.py directory (``backend="onnxruntime"``,
    ``precision`` "int8" or "fp32"), or a model directory (teacher, sub-model, stage 2's ``model_<width>/``).
    ``max_seq_length``: window length (default: the model's). Calling it with a list of texts gives, per text, a
    list of ``{"type", "text", "start", "end", "score"}`` with [start, end) character offsets (score:
    docs/deploy.md); with one string, that text's list. Bad input (a missing directory, a window longer than the
    model's positions) raises ``ner_ofa.cli.UserError`` with a one-line message.

    Safe to share between threads: each model call holds a lock (one Paddle Inference predictor and its input
    handle cannot run two calls at once); windowing and decoding run outside it. docs/deploy.md has the
    measurement (4 threads against 1)."""

    def __init__(self, model_dir, device="cpu", threads=2, backend="paddle", precision="int8", max_seq_length=None,
                 batch_size=32):
        if batch_size <= 0:
            raise UserError(f"--batch_size must be positive, got {batch_size}")
        if device != "cpu":
            cli.set_device(device)  # a one-line error where this Paddle cannot run on it
        logits_fn, self.tokenizer, self.model_info = load_logits_fn(model_dir, device, threads, backend, precision)
        self._lock = threading.Lock()

        def locked_logits_fn(input_ids):
            with self._lock:
                return logits_fn(input_ids)

        self.logits_fn = locked_logits_fn
        self.encoder = CharEncoder(self.tokenizer)
        self.labels = self.model_info["labels"]
        self.max_seq_length = max_seq_length or self.model_info.get("max_seq_length", 128)
        cli.check_max_seq_length(self.max_seq_length, self.model_info)
        self.batch_size = batch_size
        # ONNX Runtime keeps no kernels per input shape: its calls run unpadded (see ner_ofa.labelling.Labelling)
        self.shapes = "exact" if self.model_info.get("kind") == "onnx" else "buckets"

    def __call__(self, texts):
        if isinstance(texts, str):
            return self([texts])[0]
        return predict_entities(self.logits_fn, list(texts), self.encoder, self.labels, self.max_seq_length,
                                self.batch_size, self.shapes)
