"""A model directory on disk: build a BERT token classifier from a config (a cut sub-model included), load and
check its weights and tokenizer, read its model_info.json, save it atomically (write aside, swap in), and write a
config-only one to start from random weights."""
import json
import os
import shutil

import numpy as np

from ner_ofa import hf_checkpoint
from ner_ofa.cli import UserError, logger
from ner_ofa.data import read_ner_file
from ner_ofa.features import CharEncoder

WEIGHTS_NAME = "model_state.pdparams"


INFO_NAME = "model_info.json"


BERT_CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size", "max_position_embeddings")


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_json(path, data):
    """Write JSON atomically (temporary file + rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def load_tokenizer(name_or_dir):
    from paddlenlp.transformers import BertTokenizer

    if os.path.isdir(name_or_dir):
        vocab = os.path.join(name_or_dir, "vocab.txt")
        if not os.path.isfile(vocab):
            if os.path.isfile(os.path.join(name_or_dir, "tokenizer.json")):
                return hf_checkpoint.load_tokenizer(name_or_dir)
            raise UserError(f"{name_or_dir}: no vocab.txt or tokenizer.json")
        if os.path.isfile(os.path.join(name_or_dir, "tokenizer_config.json")):
            return BertTokenizer.from_pretrained(name_or_dir)
        return BertTokenizer(vocab_file=vocab)
    try:
        return BertTokenizer.from_pretrained(name_or_dir)
    except Exception as error:
        raise UserError(f"could not get tokenizer {name_or_dir!r} ({type(error).__name__}: {error}); "
                        "pass a local model directory") from None


def read_model_info(model_dir):
    path = os.path.join(model_dir, INFO_NAME)
    return read_json(path) if os.path.isfile(path) else None


def bert_config_from_dir(model_dir, num_labels=None):
    from paddlenlp.transformers import BertConfig

    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{model_dir}: no config.json")
    raw = read_json(path)
    missing = [f for f in BERT_CONFIG_FIELDS if f not in raw]
    if missing:
        raise UserError(f"{path}: missing BERT fields {', '.join(missing)}")
    config = BertConfig.from_pretrained(model_dir)
    # a checkpoint's config may ask for tuples (use_cache) or extra outputs; the stages expect plain logits
    config.use_cache = config.output_hidden_states = config.output_attentions = False
    config.return_dict = False
    if num_labels is not None:
        config.num_labels = num_labels
    return config


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def write_init_dir(path, bert_dir, num_layers, hidden_size, num_heads, intermediate_size, dropout=0.0,
                   vocab_from=None):
    """A config-only model directory (stage 1 starts it from random initialisation): ``bert_dir``'s config.json
    with these sizes and hidden/attention dropout, and its vocab.txt -- with ``vocab_from`` (an msra_ner-layout
    file, e.g. train.tsv), only the entries that file's characters map to, the specials first, in the original
    order. Returns the config written."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(bert_dir, "vocab.txt"), encoding="utf-8") as handle:
        vocab = [line.rstrip("\n") for line in handle]
    if vocab_from:
        encoder = CharEncoder(load_tokenizer(bert_dir))
        used = {encoder.char_id(c) for ex in read_ner_file(vocab_from) for c in ex["chars"]}
        specials = {i for i, token in enumerate(vocab) if token in SPECIAL_TOKENS}
        vocab = [token for i, token in enumerate(vocab) if i in specials | used]
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as handle:
        handle.write("".join(token + "\n" for token in vocab))
    config = read_json(os.path.join(bert_dir, "config.json"))
    config.update(vocab_size=len(vocab), num_hidden_layers=num_layers, hidden_size=hidden_size,
                  num_attention_heads=num_heads, intermediate_size=intermediate_size,
                  hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    write_json(os.path.join(path, "config.json"), config)
    return config


def build_token_classifier(config):
    from paddlenlp.transformers import BertForTokenClassification

    model = BertForTokenClassification(config)
    sub = getattr(config, "ofa_sub_model", None)
    if sub:
        shrink_bert(model, sub["num_heads"], sub["intermediate_size"])
    return model


def load_state_checked(model, weights_path):
    """Load weights, failing with one line if names or shapes differ from the model built from config."""
    import paddle

    state = paddle.load(weights_path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise UserError(f"{weights_path}: weights lack {len(missing)} parameters of the config's model "
                        f"(first: {missing[0]})")
    for name, param in expected.items():
        if list(state[name].shape) != list(param.shape):
            raise UserError(f"{weights_path}: {name} has shape {list(state[name].shape)}, config implies "
                            f"{list(param.shape)}")
    model.set_state_dict({k: state[k] for k in expected})
    return model


FOREIGN_WEIGHT_SUFFIXES = (".bin", ".safetensors", ".h5", ".ckpt", ".pt", ".pth", ".msgpack", ".pdparams",
                           ".index", ".onnx")


def load_teacher_start(name_or_dir, num_labels, label_list):
    """Stage 1's starting model: a hub name, a local pretrained dir, or a config-only dir (random init)."""
    from paddlenlp.transformers import BertForTokenClassification

    id2label = dict(enumerate(label_list))
    if not os.path.isdir(name_or_dir):
        # a path (not a hub name such as "bert-base-chinese" or "org/name") that is not a directory
        if os.path.exists(name_or_dir) or name_or_dir.startswith((".", os.sep, "~")):
            raise UserError(f"--model_name_or_path {name_or_dir}: not a directory")
        try:
            model = BertForTokenClassification.from_pretrained(name_or_dir, num_labels=num_labels)
        except Exception as error:
            raise UserError(f"could not load {name_or_dir!r} ({type(error).__name__}: {error}); "
                            "pass a local model directory") from None
        return model, f"pretrained {name_or_dir}"
    model_info = read_model_info(name_or_dir)
    if model_info and model_info.get("kind") != "teacher":
        raise UserError(f"{name_or_dir} holds a {model_info.get('kind')} from a later stage; stage 1 needs a "
                        "pretrained BERT directory or a config-only one")
    if not os.path.isfile(os.path.join(name_or_dir, WEIGHTS_NAME)) and hf_checkpoint.weights_file(name_or_dir):
        model = hf_checkpoint.load_token_classifier(name_or_dir, num_labels, label_list)
        return model, f"Hugging Face checkpoint {hf_checkpoint.weights_file(name_or_dir)}"
    config = bert_config_from_dir(name_or_dir, num_labels)
    config.id2label, config.label2id = id2label, {v: k for k, v in id2label.items()}
    if not os.path.isfile(os.path.join(name_or_dir, WEIGHTS_NAME)):
        foreign = sorted(f for f in os.listdir(name_or_dir) if f.endswith(FOREIGN_WEIGHT_SUFFIXES))
        if foreign:
            raise UserError(f"{name_or_dir}: has {', '.join(foreign)} but no {WEIGHTS_NAME}; this code reads Paddle "
                            "weights and Hugging Face pytorch_model.bin / model.safetensors (convert the others), or "
                            "remove them to train from random init on purpose")
        model = BertForTokenClassification(config)
        return model, f"RANDOM INIT from {name_or_dir}/config.json (no weights in the directory)"
    model = BertForTokenClassification.from_pretrained(name_or_dir, config=config)
    return model, f"pretrained weights from {name_or_dir}"


def load_model_dir(model_dir, expect_kinds):
    """Load a directory written by this project: (model, tokenizer, model_info). ``expect_kinds``: allowed kinds.

    Read-only: a save in progress (``DIR.tmp*``/``DIR.old*`` beside it) is left alone; only the run that owns
    the directory repairs an interrupted save, at its start (:func:`recover_interrupted_save`)."""
    if not os.path.isdir(model_dir):
        pending = interrupted_save_leftovers(model_dir)
        hint = f" ({', '.join(pending)} beside it: a save is in progress or was interrupted; retry, or re-run " \
               "the stage that writes it to recover)" if pending else ""
        raise UserError(f"{model_dir}: model directory not found{hint}")
    model_info = read_model_info(model_dir)
    if model_info is None:
        raise UserError(f"{model_dir}: no {INFO_NAME}; expected the output of "
                        f"{' or '.join(KIND_SOURCE[k] for k in expect_kinds)}")
    if model_info.get("kind") not in expect_kinds:
        raise UserError(f"{model_dir} holds a {model_info.get('kind')} ({KIND_SOURCE.get(model_info.get('kind'), '?')}); "
                        f"expected a {' or '.join(expect_kinds)} ({' or '.join(KIND_SOURCE[k] for k in expect_kinds)})")
    weights = os.path.join(model_dir, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        raise UserError(f"{model_dir}: no {WEIGHTS_NAME}")
    config = bert_config_from_dir(model_dir)
    model = load_state_checked(build_token_classifier(config), weights)
    return model, load_tokenizer(model_dir), model_info


KIND_SOURCE = {"teacher": "run_msra_ner.py's model_best/", "supernet": "run_msra_ner_ofa.py's model_<width>/",
               "sub_model": "export_model_msra_ner_ofa.py's --sub_model_output_dir"}


def save_model_dir(path, config, state_dict, tokenizer, model_info, metrics=None, args=None, set_aside=None):
    """Write config, weights, tokenizer, model_info.json, metrics.json, args.json to a temporary
    directory, then swap it into place, so ``path`` is always either the old or the new complete model.

    ``set_aside``: a directory to move whatever else the old ``path`` holds (e.g. an export written inside it)
    into, instead of deleting it with the old version. Returns the names moved there."""
    import paddle

    tmp = fresh_save_dir(path)
    config.save_pretrained(tmp)
    paddle.save({k: v for k, v in state_dict.items()}, os.path.join(tmp, WEIGHTS_NAME))
    tokenizer.save_pretrained(tmp)
    write_json(os.path.join(tmp, INFO_NAME), model_info)
    if metrics is not None:
        write_json(os.path.join(tmp, "metrics.json"), metrics)
    if args is not None:
        write_json(os.path.join(tmp, "args.json"), args)
    moved = []
    if set_aside and os.path.isdir(path):
        ours = set(os.listdir(tmp)) | {"metrics.json", "args.json"}
        moved = sorted(n for n in os.listdir(path) if n not in ours)
        if moved:
            os.makedirs(set_aside, exist_ok=True)
            for name in moved:
                os.rename(os.path.join(path, name), os.path.join(set_aside, name))
    swap_into_place(tmp, path)
    return moved


def fresh_save_dir(path):
    """An empty ``path.tmp<pid>`` beside ``path`` (its parent created) to write a new version into."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    return tmp


def swap_into_place(tmp, path):
    """Replace directory ``path`` by the complete directory ``tmp``. The only moment ``path`` is absent is
    between two renames; :func:`recover_interrupted_save` (at the owning run's next start) puts the old one back if a crash hits exactly there."""
    old = f"{path}.old{os.getpid()}"
    if os.path.exists(path):
        os.rename(path, old)
    os.rename(tmp, path)
    if os.path.exists(old):
        shutil.rmtree(old)


def interrupted_save_leftovers(path):
    """Names of ``path.old*`` / ``path.tmp*`` siblings (what a save in progress or an interrupted one leaves)."""
    parent, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(parent):
        return []
    return sorted(n for n in os.listdir(parent) if n.startswith(name + ".old") or n.startswith(name + ".tmp"))


def recover_interrupted_save(path):
    """Repair what an interrupted save of ``path`` left: restore ``path`` from ``path.old*`` if it is missing,
    delete ``path.tmp*``. This deletes files: only the run that owns ``path`` calls it, once, at its start
    (rank 0 only), never a reader."""
    parent = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(os.path.abspath(path))
    for leftover in interrupted_save_leftovers(path):
        full = os.path.join(parent, leftover)
        if leftover.startswith(name + ".old") and not os.path.exists(path):
            os.rename(full, path)
            logger.warning("restored %s from an interrupted save", path)
        elif os.path.isdir(full):
            shutil.rmtree(full)


def count_parameters(model):
    return int(sum(int(np.prod(p.shape)) for p in model.parameters()))


def unwrap(model):
    """The model inside a ``paddle.DataParallel`` wrapper (or the model itself)."""
    return model._layers if hasattr(model, "_layers") else model


def encoder_layers(model):
    return unwrap(model).bert.encoder.layers


def shrink_bert(model, num_heads, intermediate_size):
    """Replace each layer's q/k/v/out and FFN Linears with ones of ``num_heads`` heads and
    ``intermediate_size`` neurons (a width sub-model); weights are then loaded by the caller."""
    import paddle.nn as nn

    for layer in encoder_layers(model):
        attn = layer.self_attn
        hidden, inner = attn.embed_dim, num_heads * attn.head_dim
        attn.q_proj, attn.k_proj, attn.v_proj = nn.Linear(hidden, inner), nn.Linear(hidden, inner), nn.Linear(hidden, inner)
        attn.out_proj = nn.Linear(inner, hidden)
        attn.num_heads = num_heads
        layer.linear1 = nn.Linear(hidden, intermediate_size)
        layer.linear2 = nn.Linear(intermediate_size, hidden)
    return model
