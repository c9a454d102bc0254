"""Read a Hugging Face BERT checkpoint directory (pytorch_model.bin or model.safetensors, config.json, vocab.txt
or tokenizer.json) into a Paddle BERT token classifier, in memory: the directory is only read."""
import atexit
import json
import os
import re
import tempfile

import numpy as np

from ner_ofa.cli import UserError, logger

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# config.json fields a Paddle BertConfig needs; everything else (use_cache, output_hidden_states, return_dict,
# torch_dtype, ...) is dropped, so nothing in the checkpoint's config changes what the forward returns.
CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                 "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id")

# Hugging Face name (after the optional "bert." prefix) -> Paddle name; "T" where Linear weights are transposed
# (torch stores [out, in], Paddle [in, out]).
_LAYER = r"encoder\.layer\.(\d+)\."
_RENAMES = [
    (r"embeddings\.(word|position|token_type)_embeddings\.weight$", r"embeddings.\1_embeddings.weight", False),
    (r"embeddings\.LayerNorm\.(weight|gamma)$", "embeddings.layer_norm.weight", False),
    (r"embeddings\.LayerNorm\.(bias|beta)$", "embeddings.layer_norm.bias", False),
    (_LAYER + r"attention\.self\.query\.(weight|bias)$", r"encoder.layers.\1.self_attn.q_proj.\2", True),
    (_LAYER + r"attention\.self\.key\.(weight|bias)$", r"encoder.layers.\1.self_attn.k_proj.\2", True),
    (_LAYER + r"attention\.self\.value\.(weight|bias)$", r"encoder.layers.\1.self_attn.v_proj.\2", True),
    (_LAYER + r"attention\.output\.dense\.(weight|bias)$", r"encoder.layers.\1.self_attn.out_proj.\2", True),
    (_LAYER + r"attention\.output\.LayerNorm\.(weight|gamma)$", r"encoder.layers.\1.norm1.weight", False),
    (_LAYER + r"attention\.output\.LayerNorm\.(bias|beta)$", r"encoder.layers.\1.norm1.bias", False),
    (_LAYER + r"intermediate\.dense\.(weight|bias)$", r"encoder.layers.\1.linear1.\2", True),
    (_LAYER + r"output\.dense\.(weight|bias)$", r"encoder.layers.\1.linear2.\2", True),
    (_LAYER + r"output\.LayerNorm\.(weight|gamma)$", r"encoder.layers.\1.norm2.weight", False),
    (_LAYER + r"output\.LayerNorm\.(bias|beta)$", r"encoder.layers.\1.norm2.bias", False),
    (r"pooler\.dense\.(weight|bias)$", r"pooler.dense.\1", True),
]
# heads and buffers a token classifier does not use
_IGNORED = re.compile(r"^(cls\.|classifier\.|qa_outputs\.|embeddings\.position_ids$)")


def weights_file(model_dir):
    """The Hugging Face weights file in ``model_dir`` (safetensors preferred), or None."""
    for name in WEIGHT_FILES:
        if os.path.isfile(os.path.join(model_dir, name)):
            return os.path.join(model_dir, name)
    return None


def read_config(model_dir):
    """The checkpoint's config.json, checked to describe a BERT; a one-line UserError otherwise."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{model_dir}: no config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    model_type = raw.get("model_type")
    archs = raw.get("architectures") or []
    if model_type != "bert" and not (model_type is None and any(a.startswith("Bert") for a in archs)):
        raise UserError(f"{path}: model_type {model_type!r} (architectures {archs}) is not a BERT; this code "
                        "reads BERT checkpoints only")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise UserError(f"{path}: position_embedding_type {raw['position_embedding_type']!r} is not supported "
                        "(absolute only)")
    missing = [f for f in CONFIG_FIELDS[:5] + ("max_position_embeddings",) if f not in raw]
    if missing:
        raise UserError(f"{path}: missing BERT fields {', '.join(missing)}")
    return raw


def bert_config(raw, num_labels, label_list):
    from paddlenlp.transformers import BertConfig

    config = BertConfig(**{k: raw[k] for k in CONFIG_FIELDS if k in raw})
    config.num_labels = num_labels
    config.id2label = dict(enumerate(label_list))
    config.label2id = {v: k for k, v in config.id2label.items()}
    return config


def read_tensors(path):
    """name -> float32 NumPy array, from model.safetensors or pytorch_model.bin (PaddleNLP's torch-free reader)."""
    try:
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file

            tensors = load_file(path)
        else:
            from paddlenlp.utils.serialization import load_torch

            tensors = load_torch(path)
    except Exception as error:
        raise UserError(f"{path}: cannot read the weights ({type(error).__name__}: {error})") from None
    return {name: np.asarray(value) for name, value in tensors.items()}


def to_paddle_names(tensors, path):
    """Hugging Face BERT tensors -> Paddle ``BertForTokenClassification`` names (``bert.`` prefix added),
    Linear weights transposed; heads (MLM, NSP, an old classifier) dropped. A tensor this mapping does not know
    is a UserError: the checkpoint is not the BERT it claims to be."""
    converted, unknown = {}, []
    for name, value in tensors.items():
        short = name[len("bert."):] if name.startswith("bert.") else name
        if _IGNORED.match(short):
            continue
        for pattern, target, transpose in _RENAMES:
            if re.match(pattern, short):
                array = value.astype(np.float32)
                if transpose and array.ndim == 2:
                    array = array.T
                converted["bert." + re.sub(pattern, target, short)] = np.ascontiguousarray(array)
                break
        else:
            unknown.append(name)
    if unknown:
        raise UserError(f"{path}: {len(unknown)} tensors that are not BERT's (first: {unknown[0]}); this code reads "
                        "BERT checkpoints only")
    return converted


def load_token_classifier(model_dir, num_labels, label_list):
    """A Paddle ``BertForTokenClassification`` with the checkpoint's encoder weights and a new classifier."""
    from paddlenlp.transformers import BertForTokenClassification

    raw = read_config(model_dir)
    path = weights_file(model_dir)
    config = bert_config(raw, num_labels, label_list)
    model = BertForTokenClassification(config)
    state = to_paddle_names(read_tensors(path), path)
    expected = model.state_dict()
    optional = {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}  # unused by a token classifier
    missing = [k for k in expected if k not in state and not k.startswith("classifier.") and k not in optional]
    if missing:
        raise UserError(f"{path}: lacks {len(missing)} tensors of the BERT its config.json describes "
                        f"(first: {missing[0]})")
    for name, value in state.items():
        if name not in expected:
            raise UserError(f"{path}: {name} is beyond what config.json describes (more layers than "
                            f"num_hidden_layers {config.num_hidden_layers}?)")
        if list(value.shape) != list(expected[name].shape):
            raise UserError(f"{path}: {name} has shape {list(value.shape)}, config.json implies "
                            f"{list(expected[name].shape)}")
    model.set_state_dict({**expected, **state})  # the new classifier (and a missing pooler) keep their init
    logger.info("read Hugging Face checkpoint %s (%d tensors; new classifier for %d labels)", path, len(state),
                num_labels)
    return model


def vocab_tokens(model_dir):
    """The vocabulary in id order, from vocab.txt or else tokenizer.json (a WordPiece model), or None."""
    vocab_txt = os.path.join(model_dir, "vocab.txt")
    if os.path.isfile(vocab_txt):
        with open(vocab_txt, encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle]
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            model = json.load(handle)["model"]
        vocab = model["vocab"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: no readable vocabulary ({type(error).__name__}: {error})") from None
    if model.get("type") != "WordPiece" or not isinstance(vocab, dict):
        raise UserError(f"{path}: a {model.get('type')} tokenizer, not BERT's WordPiece")
    tokens = sorted(vocab, key=vocab.get)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise UserError(f"{path}: vocabulary ids are not 0..{len(tokens) - 1}")
    return tokens


def do_lower_case(model_dir):
    """tokenizer_config.json's do_lower_case, else tokenizer.json's normalizer, else BERT's default (True)."""
    for name, read in (("tokenizer_config.json", lambda d: d.get("do_lower_case")),
                       ("tokenizer.json", lambda d: (d.get("normalizer") or {}).get("lowercase"))):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    value = read(json.load(handle))
            except (ValueError, AttributeError, UnicodeDecodeError):
                value = None
            if value is not None:
                return bool(value)
    return True


def load_tokenizer(model_dir):
    """A PaddleNLP BertTokenizer with the checkpoint's vocabulary (vocab.txt or tokenizer.json) and case rule.
    ``model_dir`` is only read: the vocabulary goes to a temporary file that lives as long as this process
    (the tokenizer copies it when it is saved)."""
    from paddlenlp.transformers import BertTokenizer

    tokens = vocab_tokens(model_dir)
    if tokens is None:
        raise UserError(f"{model_dir}: no vocab.txt or tokenizer.json")
    handle, tmp = tempfile.mkstemp(suffix="-vocab.txt")
    atexit.register(lambda: os.path.exists(tmp) and os.remove(tmp))
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write("".join(token + "\n" for token in tokens))
    return BertTokenizer(vocab_file=tmp, do_lower_case=do_lower_case(model_dir))
