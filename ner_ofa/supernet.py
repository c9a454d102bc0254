"""Width compression (DynaBERT / PaddleSlim OFA): head and neuron importance, reordering, conversion of the
encoder into an OFA supernet, running it at a width, and cutting the sub-model of one width out of it."""
import contextlib
import math
import re

import numpy as np

from ner_ofa.cli import UserError
from ner_ofa.model_io import build_token_classifier, encoder_layers, unwrap
from ner_ofa.features import IGNORE_INDEX


def kept_count(width, full):
    """How many heads (or FFN neurons) of ``full`` width ``width`` keeps: round(width * full), at least 1."""
    return max(1, int(round(width * full)))


def compute_head_neuron_importance(model, batches):
    """DynaBERT importance, per layer: heads [L, H] and FFN neurons [L, I], accumulated over ``batches``
    (lists of (input_ids, labels) numpy arrays) of the task loss.

    Head h's importance is |dL/dm_h| for a mask m_h on its context vectors; since the attention output is
    ``ctx @ W_o``, that gradient equals ``sum(W_o[h rows] * dL/dW_o[h rows])`` -- so no head-mask hook into
    MultiHeadAttention is needed. A neuron's importance is |sum(w1 * dL/dw1) + b1 * dL/db1| (PaddleSlim's)."""
    import paddle
    import paddle.nn.functional as F

    layers = encoder_layers(model)
    num_heads = layers[0].self_attn.num_heads
    head_dim = layers[0].self_attn.head_dim
    heads = np.zeros((len(layers), num_heads))
    neurons = np.zeros((len(layers), layers[0].linear1.weight.shape[1]))
    model.eval()
    for input_ids, labels in batches:
        logits = model(paddle.to_tensor(input_ids))
        loss = F.cross_entropy(logits, paddle.to_tensor(labels), ignore_index=IGNORE_INDEX)
        loss.backward()
        for i, layer in enumerate(layers):
            w_o, g_o = layer.self_attn.out_proj.weight.numpy(), layer.self_attn.out_proj.weight.grad.numpy()
            heads[i] += np.abs((w_o * g_o).reshape(num_heads, head_dim, -1).sum(axis=(1, 2)))
            w1, b1 = layer.linear1.weight, layer.linear1.bias
            neurons[i] += np.abs((w1.numpy() * w1.grad.numpy()).sum(axis=0) + b1.numpy() * b1.grad.numpy())
        model.clear_gradients()
    return heads, neurons


def reorder_heads_neurons(model, head_importance, neuron_importance):
    """Permute heads and FFN neurons so the most important come first (what a width sub-model keeps).
    The function computed by the model does not change."""
    import paddle

    def take(param, index, axis):
        param.set_value(paddle.index_select(param, paddle.to_tensor(index), axis=axis))

    for i, layer in enumerate(encoder_layers(model)):
        attn = layer.self_attn
        order = np.argsort(-head_importance[i], kind="stable")
        index = np.concatenate([np.arange(h * attn.head_dim, (h + 1) * attn.head_dim) for h in order]).astype("int64")
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            take(proj.weight, index, 1)
            take(proj.bias, index, 0)
        take(attn.out_proj.weight, index, 0)
        n_order = np.argsort(-neuron_importance[i], kind="stable").astype("int64")
        take(layer.linear1.weight, n_order, 1)
        take(layer.linear1.bias, n_order, 0)
        take(layer.linear2.weight, n_order, 0)


def validate_multiplier_list(values, flag="--width_mult_list", what="width"):
    """A --width_mult_list or --depth_mult_list: non-empty, in (0, 1], with 1.0, no duplicates; sorted descending."""
    widths = values
    if not widths:
        raise UserError(f"{flag} is empty")
    bad = [w for w in widths if not 0.0 < w <= 1.0]
    if bad:
        raise UserError(f"{flag}: {what}s must be in (0, 1], got {bad}")
    if 1.0 not in widths:
        raise UserError(f"{flag} must contain 1.0 (the full {what}), got {widths}")
    if len(set(widths)) != len(widths):
        raise UserError(f"{flag} has duplicates: {widths}")
    return sorted(widths, reverse=True)


def kept_layers(depth, num_layers):
    """The encoder layers (0-based) a depth keeps -- one rule for training, distillation, export and prediction.

    The DynaBERT paper's code: for i = 0 .. round(depth * L) - 1, keep layer floor(i / depth). At depth 0.5 of
    12 layers that is 0, 2, 4, 6, 8, 10: every other layer from the first, the last one dropped (of 4 layers: 0, 2).
    Chosen on dev over the rule of Paddle's DynaBERT scripts (floor(i / depth) - 1 for i = 1 .. round(depth * L),
    which keeps the last layer): scripts/compare_kept_layers.py, results/kept_layers_rule.json, docs/results.md.
    A depth typed with 4 decimals (0.6667, 0.3333) counts as the fraction it stands for. Depth 1.0
    keeps all."""
    count = max(1, int(round(depth * num_layers)))
    return [min(num_layers - 1, int(math.floor(i / depth + 1e-3))) for i in range(count)]



def recorded_kept_layers(depths, num_layers):
    """What a supernet directory records of its depths: {"0.5": [0, 2], ...}, the layers each depth kept in training."""
    return {str(depth): kept_layers(depth, num_layers) for depth in depths}


def check_recorded_kept_layers(model_info, num_layers, model_dir):
    """Refuse a supernet directory whose depths this code would cut differently from how they were trained
    (the rule changed once: directories from before it kept floor(i/d) - 1, and record nothing)."""
    recorded = model_info.get("kept_layers")
    for depth in model_info.get("depth_mult_list", [1.0]):
        now = kept_layers(depth, num_layers)
        if recorded is None and len(now) < num_layers:
            raise UserError(f"{model_dir} does not record which layers its depth {depth} kept in training (it "
                            f"predates the current rule, which keeps {now} of {num_layers}): run stage 2 again")
        if recorded is not None and recorded.get(str(depth)) != now:
            raise UserError(f"{model_dir} trained depth {depth} on layers {recorded.get(str(depth))}; this code "
                            f"keeps {now}: run stage 2 again, or use the code that trained it")

@contextlib.contextmanager
def at_depth(model, depth):
    """Run ``model`` (a BERT token classifier, an OFA supernet or a DataParallel of either) through only the
    layers :func:`kept_layers` keeps: its encoder's layer list is swapped for the kept layers (the same layer
    objects) for the duration, then put back. Yields the kept indices. Nothing is patched: PaddleNLP's encoder
    forward simply iterates the list it is given."""
    import paddle.nn as nn

    encoder = unwrap(getattr(model, "model", model)).bert.encoder
    full = encoder.layers
    kept = kept_layers(depth, len(full))
    if len(kept) == len(full):
        yield kept
        return
    encoder.layers = nn.LayerList([full[i] for i in kept])
    try:
        yield kept
    finally:
        encoder.layers = full


def build_supernet(model, width_mult_list, data_parallel=False, unused_parameters=False):
    """Convert a (reordered) BERT token classifier into a PaddleSlim OFA width supernet, keeping its weights.

    The encoder's Linear/LayerNorm layers become PaddleSlim super layers (in place); the returned ``OFA``
    wraps the whole model and routes the per-width config (:func:`set_supernet_width`) to them. With
    ``data_parallel`` the converted model is wrapped in ``paddle.DataParallel`` inside the OFA."""
    from paddleslim.nas.ofa import OFA
    from paddleslim.nas.ofa.convert_super import Convert, supernet
    from paddleslim.nas.ofa.utils import set_state_dict

    from ner_ofa.paddleslim_compat import apply_paddleslim_fixes

    apply_paddleslim_fixes()
    for layer in encoder_layers(model):
        layer.self_attn.full_num_heads = layer.self_attn.num_heads
    state = model.state_dict()
    # Only the encoder is elastic: embeddings, pooler and classifier stay plain Paddle layers.
    Convert(supernet(expand_ratio=sorted(width_mult_list))).convert(model.bert.encoder)
    set_state_dict(model, state)
    if data_parallel:  # after Convert, so that DataParallel all-reduces the super layers' parameters
        import paddle

        model = paddle.DataParallel(model, find_unused_parameters=unused_parameters)  # skipped layers at depth < 1
    return OFA(model)


_LAYER_NAME = re.compile(r"^(.*encoder\.layers\.)(\d+)(\..*)$")
_ELASTIC_ATTN = re.compile(r"encoder\.layers\.\d+\.self_attn\.[qkv]_proj$")


_ELASTIC_FFN = re.compile(r"encoder\.layers\.\d+\.linear1$")


def set_supernet_width(ofa_model, width):
    """Run the supernet at ``width``: q/k/v keep round(width*heads) whole heads, linear1 keeps
    round(width*intermediate) neurons; everything else at full size. Returns (heads, neurons) kept."""
    layers = encoder_layers(ofa_model.model)
    attn = layers[0].self_attn
    heads = kept_count(width, attn.full_num_heads)
    intermediate = layers[0].linear1.fn.weight.shape[1]
    neurons = kept_count(width, intermediate)
    config = {}
    for name in ofa_model._ofa_layers:
        if _ELASTIC_ATTN.search(name):
            config[name] = {"channel": heads * attn.head_dim}
        elif _ELASTIC_FFN.search(name):
            config[name] = {"channel": neurons}
        else:
            config[name] = {}
    ofa_model.set_net_config(config)
    for layer in layers:
        layer.self_attn.num_heads = heads  # stock MultiHeadAttention reshapes q/k/v with num_heads
    return heads, neurons


def supernet_state_dict(ofa_model):
    """The supernet's weights under the plain model's parameter names (PaddleSlim's Block adds '.fn.')."""
    model = unwrap(ofa_model.model)
    return {name.replace(".fn.", "."): param for name, param in model.state_dict().items()}


def load_supernet_weights(ofa_model, state_dict):
    from paddleslim.nas.ofa.utils import set_state_dict

    model = unwrap(ofa_model.model)
    set_state_dict(model, state_dict)


def cut_sub_model(ofa_model, config, width, depth=1.0):
    """The plain (pruned) BERT of ``width`` and ``depth``: PaddleSlim records the slice each super layer used at
    that width (``cur_config['prune_dim']``); those slices of the supernet's weights fill a BERT whose q/k/v/out
    and FFN Linears are built at the kept size, with only the :func:`kept_layers` of ``depth`` (renumbered 0..).
    Returns (model, sub_config)."""
    import copy

    import paddle

    heads, neurons = set_supernet_width(ofa_model, width)
    ofa_model.model.eval()
    with paddle.no_grad():
        ofa_model(paddle.to_tensor(np.array([[1, 2, 3]], dtype="int64")))
    pruned, _ = ofa_model._get_model_pruned_weight()
    state = {k: v.numpy() for k, v in supernet_state_dict(ofa_model).items()}
    state.update({name.replace(".fn.", "."): value for name, value in pruned.items()})
    kept = kept_layers(depth, config.num_hidden_layers)
    sub_config = copy.deepcopy(config)
    sub_config.num_hidden_layers = len(kept)
    sub_config.ofa_sub_model = {"width_mult": width, "num_heads": heads, "intermediate_size": neurons,
                                "depth_mult": depth, "kept_layers": kept}
    sub_model = build_token_classifier(sub_config)

    def source(name):  # sub-model layer j is the supernet's layer kept[j]
        match = _LAYER_NAME.match(name)
        return f"{match.group(1)}{kept[int(match.group(2))]}{match.group(3)}" if match else name

    sub_model.set_state_dict({k: paddle.to_tensor(state[source(k)]) for k in sub_model.state_dict()})
    for name, param in sub_model.state_dict().items():
        if list(param.shape) != list(state[source(name)].shape):
            raise RuntimeError(f"cut sub-model: {name} {param.shape} vs {state[source(name)].shape}")
    sub_model.eval()
    return sub_model, sub_config
