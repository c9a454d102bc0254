"""Tiny Hugging Face BERT checkpoints written by the tests (safetensors, or torch's zip format without torch)."""
import collections
import hashlib
import io
import json
import os
import pickle
import sys
import types
import zipfile

import numpy as np

SIZES = dict(hidden=32, layers=2, heads=4, ffn=64, positions=64)


def hf_tensors(vocab_size, seed=0, prefix="bert.", mlm_head=True):
    """Random weights under Hugging Face BertForMaskedLM names (torch layout: Linear weights [out, in])."""
    rng = np.random.RandomState(seed)
    h, f = SIZES["hidden"], SIZES["ffn"]

    def w(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    t = {"embeddings.word_embeddings.weight": w(vocab_size, h),
         "embeddings.position_embeddings.weight": w(SIZES["positions"], h),
         "embeddings.token_type_embeddings.weight": w(2, h),
         "embeddings.LayerNorm.weight": 1 + w(h), "embeddings.LayerNorm.bias": w(h),
         "embeddings.position_ids": np.arange(SIZES["positions"], dtype=np.int64)[None],
         "pooler.dense.weight": w(h, h), "pooler.dense.bias": w(h)}
    for i in range(SIZES["layers"]):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            t[p + name + ".weight"], t[p + name + ".bias"] = w(h, h), w(h)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = w(f, h), w(f)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = w(h, f), w(h)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + norm + ".weight"], t[p + norm + ".bias"] = 1 + w(h), w(h)
    t = {prefix + k: v for k, v in t.items()}
    if mlm_head:
        t.update({"cls.predictions.bias": w(vocab_size), "cls.predictions.transform.dense.weight": w(h, h),
                  "cls.predictions.transform.dense.bias": w(h), "cls.predictions.transform.LayerNorm.weight": w(h),
                  "cls.predictions.transform.LayerNorm.bias": w(h)})
    return t


def write_torch_bin(path, tensors):
    """A pytorch_model.bin in torch's zip format, written without torch: data.pkl (an OrderedDict of tensors
    rebuilt by torch._utils._rebuild_tensor_v2 from persistent storages) and one data/<key> file per tensor."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage_types = {}
    for np_type, name in ((np.float32, "FloatStorage"), (np.int64, "LongStorage")):
        storage_types[np.dtype(np_type)] = type(name, (), {"__module__": "torch"})
        setattr(torch_mod, name, storage_types[np.dtype(np_type)])
    torch_mod._utils = utils_mod

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class Tensor:
        def __init__(self, storage):
            self.storage = storage

        def __reduce__(self):
            shape = self.storage.array.shape
            stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
            return _rebuild_tensor_v2, (self.storage, 0, shape, stride, False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", storage_types[obj.array.dtype], obj.key, "cpu", obj.array.size)
            return None

    storages = [Storage(str(k), np.ascontiguousarray(v)) for k, v in enumerate(tensors.values())]
    state = collections.OrderedDict((name, Tensor(s)) for name, s in zip(tensors, storages))
    saved = {m: sys.modules.get(m) for m in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch_mod, "torch._utils": utils_mod})
    try:
        buffer = io.BytesIO()
        Pickler(buffer, protocol=2).dump(state)
    finally:
        for m, mod in saved.items():
            if mod is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = mod
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())  # first: the reader takes its prefix from it
        for s in storages:
            archive.writestr(f"archive/data/{s.key}", s.array.tobytes())


def write_checkpoint(root, vocab, fmt="safetensors", prefix="bert.", vocab_file="vocab.txt", config_extra=None,
                     tensors=None):
    """A Hugging Face BERT checkpoint directory; returns (path, tensors)."""
    os.makedirs(root)
    tensors = hf_tensors(len(vocab), prefix=prefix) if tensors is None else tensors
    config = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": len(vocab),
              "hidden_size": SIZES["hidden"], "num_hidden_layers": SIZES["layers"],
              "num_attention_heads": SIZES["heads"], "intermediate_size": SIZES["ffn"], "hidden_act": "gelu",
              "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
              "max_position_embeddings": SIZES["positions"], "type_vocab_size": 2, "layer_norm_eps": 1e-12,
              "pad_token_id": 0, "position_embedding_type": "absolute",
              # fields that change what a PaddleNLP forward returns, as real checkpoints carry them
              "use_cache": True, "output_hidden_states": True, "return_dict": True, "torch_dtype": "float32",
              **(config_extra or {})}
    with open(os.path.join(root, "config.json"), "w") as handle:
        json.dump(config, handle)
    if vocab_file == "vocab.txt":
        with open(os.path.join(root, "vocab.txt"), "w", encoding="utf-8") as handle:
            handle.write("".join(t + "\n" for t in vocab))
    else:  # tokenizer.json only, as m3e-small ships it; keys deliberately not in id order
        tok = {"normalizer": {"type": "BertNormalizer", "lowercase": False},
               "model": {"type": "WordPiece", "vocab": dict(sorted((t, i) for i, t in enumerate(vocab)))}}
        with open(os.path.join(root, "tokenizer.json"), "w", encoding="utf-8") as handle:
            json.dump(tok, handle, ensure_ascii=False)
        with open(os.path.join(root, "tokenizer_config.json"), "w") as handle:
            json.dump({"do_lower_case": False, "tokenizer_class": "BertTokenizer"}, handle)
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file(tensors, os.path.join(root, "model.safetensors"))
    else:
        write_torch_bin(os.path.join(root, "pytorch_model.bin"), tensors)
    return root, tensors


def tree_digest(root):
    """Every file's name and bytes under ``root`` (what 'byte-identical' means here)."""
    digest = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                digest[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return digest


def demo_vocab(tiny_demo):
    with open(os.path.join(tiny_demo["model_dir"], "vocab.txt"), encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


