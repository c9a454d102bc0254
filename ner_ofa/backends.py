"""The ways to get logits from a model: a dygraph model (a model directory, a supernet dir cut to its width),
Paddle Inference on a static export, ONNX Runtime (fp32 and dynamic INT8); saving a static export (of a model
directory too); ONNX export and INT8 quantization."""
import logging
import os

import numpy as np

from ner_ofa.cli import UserError
from ner_ofa.model_io import (
    INFO_NAME,
    load_model_dir,
    load_tokenizer,
    read_json,
    read_model_info,
    write_json,
)
from ner_ofa.supernet import build_supernet, check_recorded_kept_layers, cut_sub_model


def dynamic_logits_fn(model):
    """Wrap a dygraph token classifier (or OFA supernet) as numpy in → numpy logits out, in eval mode (on the CPU
    with copying kernels: ``ner_ofa.cpu_training``; the same logits, faster)."""
    import paddle

    from ner_ofa import cpu_training

    def run(input_ids):
        with paddle.no_grad(), cpu_training.on_cpu(cpu_training.copying_kernels):
            out = model(paddle.to_tensor(input_ids))
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.numpy()

    return run


def load_inference_model(model_dir):
    """(model, tokenizer, model_info) in eval mode, computing what the directory's scores measured: a teacher or an
    exported sub-model as saved; a supernet directory (stage 2's ``model_<width>/``) cut to the width it was
    kept for -- never the full-width network its weights also contain. The returned model_info always holds the
    model's ``max_position_embeddings`` (from its config.json: teachers' and supernets' model_info.json do not
    record it), so a window length the model cannot take is refused (``cli.check_max_seq_length``) before it runs."""
    model, tokenizer, model_info = load_model_dir(model_dir, ["teacher", "supernet", "sub_model"])
    model_info = dict(model_info, max_position_embeddings=model.bert.config.max_position_embeddings)
    if model_info["kind"] == "supernet":
        config = model.bert.config
        check_recorded_kept_layers(model_info, config.num_hidden_layers, model_dir)
        model, _ = cut_sub_model(build_supernet(model, model_info["width_mult_list"]), config,
                                 model_info["width_mult"], model_info.get("depth_mult", 1.0))
    model.eval()
    return model, tokenizer, model_info


def static_paths(prefix):
    return prefix + ".json", prefix + ".pdiparams"


def save_static(model, prefix):
    """Save a dygraph token classifier as a static graph with dynamic batch and sequence length.
    ``paddle.jit.to_static`` converts ``model``'s forward in place: afterwards ``model`` runs the converted
    program, so it cannot serve as the dygraph reference of a parity check."""
    import paddle
    from paddle.static import InputSpec

    model.eval()
    static = paddle.jit.to_static(model, input_spec=[InputSpec(shape=[None, None], dtype="int64", name="input_ids")])
    paddle.jit.save(static, prefix)
    return static_paths(prefix)


STATIC_INFO_SUFFIX = ".info.json"


def static_info_path(prefix):
    return prefix + STATIC_INFO_SUFFIX


def write_static_info(prefix, tokenizer, model_info):
    """What makes PREFIX.json/.pdiparams deployable: PREFIX.info.json (kind "static": labels, window length, width)
    always; and, when the directory is not another model's (the original layout exports into the supernet's
    ``model_<width>/``, whose model_info.json and tokenizer must stay), model_info.json and the tokenizer too, so
    the directory itself can be given to predict.py. The tokenizer is needed beside the prefix either way: a
    supernet directory already holds the same one. Returns the directory."""
    static_dir = os.path.dirname(os.path.abspath(prefix))
    static_info = dict(model_info, kind="static", prefix=os.path.basename(prefix))
    write_json(static_info_path(prefix), static_info)
    existing = read_model_info(static_dir)
    if existing is None or existing.get("kind") == "static":
        tokenizer.save_pretrained(static_dir)
        write_json(os.path.join(static_dir, INFO_NAME), static_info)
    return static_dir


def find_static(path):
    """(prefix, model_info) of a static export given as its directory, its PREFIX or PREFIX.json; None if ``path``
    is not one."""
    if os.path.isdir(path):
        model_info = read_model_info(path)
        if model_info and model_info.get("kind") == "static":
            return os.path.join(path, model_info["prefix"]), model_info
        return None
    prefix = path[:-5] if path.endswith(".json") and not path.endswith(STATIC_INFO_SUFFIX) else path
    if os.path.isfile(prefix + ".json"):
        if os.path.isfile(static_info_path(prefix)):
            return prefix, read_json(static_info_path(prefix))
        raise UserError(f"{prefix}.json: a static model without {os.path.basename(static_info_path(prefix))}; "
                        "re-export it with export_model_msra_ner_ofa.py")
    return None


def load_static_export(path, threads=2, device="cpu"):
    """(logits_fn, tokenizer, model_info) of a static export (see :func:`find_static`), run by Paddle Inference
    with oneDNN on the CPU; None if ``path`` is not one."""
    found = find_static(path)
    if found is None:
        return None
    prefix, model_info = found
    fn = static_logits_fn(prefix, device=device, threads=threads, mkldnn=device == "cpu")
    return fn, load_tokenizer(os.path.dirname(os.path.abspath(prefix))), model_info


def save_static_dir(model, prefix, tokenizer, model_info):
    """:func:`save_static` + :func:`write_static_info`; ``model`` is converted in place."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    save_static(model, prefix)
    return write_static_info(prefix, tokenizer, model_info)


def export_static(model_dir, prefix):
    """Save a model directory as a static model with its tokenizer and model_info.json (a supernet dir at the
    width it was kept for, see :func:`load_inference_model`). Returns ``prefix``."""
    model, tokenizer, model_info = load_inference_model(model_dir)
    save_static_dir(model, prefix, tokenizer, model_info)
    return prefix


def static_logits_fn(prefix, device="cpu", threads=2, mkldnn=False):
    """Paddle Inference predictor for ``prefix.json``/``prefix.pdiparams``, as numpy in → numpy logits out."""
    import paddle.inference as paddle_infer

    model_file, params_file = static_paths(prefix)
    for path in (model_file, params_file):
        if not os.path.isfile(path):
            raise UserError(f"{path}: static model file not found")
    config = paddle_infer.Config(model_file, params_file)
    if device == "gpu":
        config.enable_use_gpu(256, 0)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)
        if mkldnn:
            config.enable_mkldnn()
        else:
            config.disable_mkldnn()
    config.disable_glog_info()
    predictor = paddle_infer.create_predictor(config)
    input_handle = predictor.get_input_handle(predictor.get_input_names()[0])
    output_handle = predictor.get_output_handle(predictor.get_output_names()[0])

    def run(input_ids):
        input_handle.reshape(list(input_ids.shape))
        input_handle.copy_from_cpu(np.ascontiguousarray(input_ids, dtype="int64"))
        predictor.run()
        return output_handle.copy_to_cpu()

    return run


def export_onnx(prefix, onnx_path, opset=17):
    """Convert a static Paddle model (PREFIX.json/.pdiparams) to ONNX with paddle2onnx.

    Opset 17 has a native LayerNormalization (opset 14 spells it out in ~8 elementwise ops per norm).

    ``optimize_tool="None"``: no ONNX-level optimizer. paddle2onnx's default (Polygraphy) sets
    POLYGRAPHY_AUTOINSTALL_DEPS=1 and pip-installs onnx-graphsurgeon at run time, which pulls NumPy 2 into this
    NumPy-1 stack; its "onnxoptimizer" option fails on every model (it asks for a pass named "eliminate_nop_cast "
    with a trailing space) and writes the model unoptimized anyway. The one rewrite that matters,
    constants to initializers, is :func:`constants_to_initializers`; ONNX Runtime does the constant folding and
    fusions itself when it loads the model."""
    import paddle2onnx

    model_file, params_file = static_paths(prefix)
    paddle2onnx.export(model_file, params_file, onnx_path, opset_version=opset, enable_onnx_checker=True,
                       optimize_tool="None")
    constants_to_initializers(onnx_path)
    return onnx_path


def constants_to_initializers(onnx_path):
    """paddle2onnx 2.1 emits the weights as ``Constant`` nodes; ONNX Runtime's quantizer only quantizes a MatMul
    whose weight is an *initializer* (else: "Ignore MatMul due to non constant B" and nothing becomes INT8).
    Move every Constant's tensor into the initializers, in place. Returns how many were moved."""
    import onnx

    model = onnx.load(onnx_path)
    graph, kept, moved = model.graph, [], 0
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            moved += 1
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    onnx.save(model, onnx_path)
    return moved


def cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_reduce_range(machine=None, flags=None):
    """Whether ONNX Runtime's dynamic INT8 should quantize weights to 7 bits (``reduce_range``).

    On x86 without VNNI, the u8 x s8 multiply (vpmaddubsw) adds pairs of products into int16 and can saturate
    with full-range 8-bit weights; 7-bit weights cannot overflow there. CPUs with AVX-512 VNNI or AVX-VNNI
    (and non-x86 CPUs) accumulate in int32, so full range is safe and more accurate."""
    import platform

    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    flags = cpu_flags() if flags is None else set(flags)
    return not ({"avx512_vnni", "avx_vnni", "avx512vnni"} & flags)


def quantize_onnx(fp32_path, int8_path, reduce_range=None):
    """ONNX Runtime dynamic quantization: INT8 weights (per channel) for MatMul, activations quantized on the fly.
    ``reduce_range`` None: chosen for this CPU (:func:`int8_reduce_range`). Returns the reduce_range used."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if reduce_range is None:
        reduce_range = int8_reduce_range()

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # the quantizer logs one INFO line per tensor
    try:
        quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=reduce_range, op_types_to_quantize=["MatMul"])
    finally:
        root.setLevel(level)
    return reduce_range


def onnx_logits_fn(path, threads=2):
    """ONNX Runtime CPU session as numpy in → numpy logits out."""
    import onnxruntime as ort

    if not os.path.isfile(path):
        raise UserError(f"{path}: ONNX model not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # no warnings about unused initializers from paddle2onnx
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(input_ids):
        return session.run(None, {name: np.ascontiguousarray(input_ids, dtype="int64")})[0]

    return run
