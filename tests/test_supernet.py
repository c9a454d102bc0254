"""Width supernet: reordering keeps the function, widths cut whole heads/neurons, exported shapes and parity."""
import os
import re

import numpy as np
import pytest
from conftest import random_ids, tiny_model

from ner_ofa import backends, cli, model_io, supernet

WIDTHS = [1.0, 0.75, 0.5]


def batch(vocab_size=60, seed=0):
    return random_ids(seed, vocab_size)


def logits(model, ids):
    return backends.dynamic_logits_fn(model)(ids)


def importance_batches(ids):
    labels = np.where(ids > 30, 1, 0).astype("int64")
    return [(ids, labels)]


def test_reorder_keeps_outputs_and_sorts_importance():
    model = tiny_model()
    ids = batch()
    before = logits(model, ids)
    heads, neurons = supernet.compute_head_neuron_importance(model, importance_batches(ids))
    assert heads.shape == (2, 4) and neurons.shape == (2, 64) and heads.sum() > 0
    supernet.reorder_heads_neurons(model, heads, neurons)
    np.testing.assert_allclose(logits(model, ids), before, rtol=1e-4, atol=1e-5)
    heads_after, neurons_after = supernet.compute_head_neuron_importance(model, importance_batches(ids))
    for layer in range(2):
        assert np.all(np.diff(heads_after[layer]) <= 1e-6 * heads_after[layer].max())
        np.testing.assert_allclose(np.sort(heads_after[layer])[::-1], heads_after[layer], rtol=1e-4)


def test_supernet_full_width_equals_model_and_cut_shapes():
    model = tiny_model()
    ids = batch()
    expected = logits(model, ids)
    config = model.bert.config
    ofa = supernet.build_supernet(model, WIDTHS)
    supernet.set_supernet_width(ofa, 1.0)
    np.testing.assert_allclose(logits(ofa, ids), expected, rtol=1e-5, atol=1e-5)
    for width in WIDTHS:
        supernet.set_supernet_width(ofa, width)
        at_width = logits(ofa, ids)
        sub, sub_config = supernet.cut_sub_model(ofa, config, width)
        layer = sub.bert.encoder.layers[0]
        hidden, inner = config.hidden_size, config.intermediate_size
        for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
            assert proj.weight.shape == [hidden, int(width * hidden)]
        assert layer.self_attn.out_proj.weight.shape == [int(width * hidden), hidden]
        assert layer.linear1.weight.shape == [hidden, int(width * inner)]
        assert layer.linear2.weight.shape == [int(width * inner), hidden]
        assert layer.self_attn.num_heads == int(width * config.num_attention_heads)
        # the cut sub-model computes what the supernet computes at that width
        np.testing.assert_allclose(logits(sub, ids), at_width, rtol=1e-4, atol=1e-5)
        if width < 1.0:
            assert not np.allclose(at_width, expected, atol=1e-4)


def test_width_rounds_to_whole_heads_and_keeps_the_first_ones():
    """Width w keeps round(w*heads) whole heads and round(w*neurons) neurons -- the *first* ones, which the
    importance reordering made the most important."""
    model = tiny_model(num_heads=12, hidden_size=48, intermediate_size=96)
    full = {k: v.numpy() for k, v in model.state_dict().items()}
    ofa = supernet.build_supernet(model, [1.0, 0.8333, 0.6667, 0.5])
    assert supernet.set_supernet_width(ofa, 0.8333) == (10, 80)
    assert supernet.set_supernet_width(ofa, 0.6667) == (8, 64)
    logits(ofa, batch())  # runs: q/k/v keep exactly 10 heads x 4 dims
    sub, _ = supernet.cut_sub_model(ofa, model.bert.config, 0.6667)
    for i, layer in enumerate(model_io.encoder_layers(sub)):
        prefix = f"bert.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj"):
            np.testing.assert_array_equal(getattr(layer.self_attn, proj).weight.numpy(),
                                          full[prefix + f"self_attn.{proj}.weight"][:, :8 * 4])
        np.testing.assert_array_equal(layer.self_attn.out_proj.weight.numpy(),
                                      full[prefix + "self_attn.out_proj.weight"][:8 * 4])
        np.testing.assert_array_equal(layer.linear1.weight.numpy(), full[prefix + "linear1.weight"][:, :64])
        np.testing.assert_array_equal(layer.linear1.bias.numpy(), full[prefix + "linear1.bias"][:64])
        np.testing.assert_array_equal(layer.linear2.weight.numpy(), full[prefix + "linear2.weight"][:64])


@pytest.mark.parametrize("widths, message", [
    ([0.5], "must contain 1.0"), ([1.0, 1.5], r"in \(0, 1\]"), ([1.0, 0.0], r"in \(0, 1\]"), ([1.0, 1.0], "duplicates"),
])
def test_width_list_validation(widths, message):
    with pytest.raises(cli.UserError, match=message):
        supernet.validate_multiplier_list(widths)


def test_static_export_parity(tmp_path):
    """Paddle Inference with oneDNN (what predict runs) against the supernet at that width, computed before the
    export (``to_static`` converts the exported layer in place, so it cannot be its own reference)."""
    model = tiny_model()
    ofa = supernet.build_supernet(model, WIDTHS)
    sub, _ = supernet.cut_sub_model(ofa, model.bert.config, 0.5)
    ids = batch()
    ids2 = np.concatenate([batch(seed=3)] * 2)[:, :5]  # another batch size and sequence length
    expected, expected2 = logits(ofa, ids), logits(ofa, ids2)
    prefix = str(tmp_path / "static" / "model")
    backends.save_static(sub, prefix)
    assert all(os.path.isfile(p) for p in backends.static_paths(prefix))
    static = backends.static_logits_fn(prefix, mkldnn=True)
    np.testing.assert_allclose(static(ids), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(static(ids2), expected2, rtol=0, atol=1e-5)


@pytest.mark.parametrize("layers, depth, kept", [
    (12, 1.0, list(range(12))), (12, 0.5, [0, 2, 4, 6, 8, 10]), (12, 0.75, [0, 1, 2, 4, 5, 6, 8, 9, 10]),
    (12, 0.25, [0, 4, 8]), (4, 0.5, [0, 2]), (2, 0.5, [0]), (3, 0.5, [0, 2]), (1, 0.5, [0]),
    (12, 0.6667, [0, 1, 3, 4, 6, 7, 9, 10]), (12, 0.7, [0, 1, 2, 4, 5, 7, 8, 10]),
])
def test_kept_layers(layers, depth, kept):
    assert supernet.kept_layers(depth, layers) == kept


def test_depth_half_supernet_equals_a_model_of_the_kept_layers():
    """The supernet run at depth 0.5 computes what a BERT built from the kept layers alone computes, and the cut
    sub-model at (width, depth) what the supernet computes there."""
    from paddlenlp.transformers import BertForTokenClassification

    model = tiny_model(num_layers=4)
    full_state = {k: v.numpy() for k, v in model.state_dict().items()}
    ids = batch()
    config = model.bert.config
    kept = supernet.kept_layers(0.5, 4)
    assert kept == [0, 2]
    small_config = type(config)(**{**config.to_dict(), "num_hidden_layers": 2})
    small = BertForTokenClassification(small_config)

    def renumbered(name):  # small's layer j is the full model's layer kept[j]
        match = re.match(r"(.*layers\.)(\d+)(\..*)", name)
        return f"{match.group(1)}{kept[int(match.group(2))]}{match.group(3)}" if match else name

    small.set_state_dict({k: full_state[renumbered(k)] for k in small.state_dict()})
    small.eval()
    ofa = supernet.build_supernet(model, WIDTHS)
    supernet.set_supernet_width(ofa, 1.0)
    with supernet.at_depth(ofa, 0.5):
        at_depth = logits(ofa, ids)
    np.testing.assert_allclose(at_depth, logits(small, ids), rtol=0, atol=1e-5)
    assert len(utils_layers(ofa)) == 4  # put back
    assert not np.allclose(logits(ofa, ids), at_depth, atol=1e-4)
    for width in (1.0, 0.5):
        supernet.set_supernet_width(ofa, width)
        with supernet.at_depth(ofa, 0.5):
            expected = logits(ofa, ids)
        sub, sub_config = supernet.cut_sub_model(ofa, config, width, depth=0.5)
        assert sub_config.num_hidden_layers == 2 and sub_config.ofa_sub_model["kept_layers"] == [0, 2]
        np.testing.assert_allclose(logits(sub, ids), expected, rtol=0, atol=1e-5)


def utils_layers(ofa):
    return model_io.encoder_layers(ofa.model)


def test_importance_batches_the_chosen_dev_sentences_by_length(monkeypatch):
    """Stage 2's importance pass takes the first --importance_batches x --batch_size dev sentences, as before,
    but batches them by length: in dev order most batches were padded to their longest sentence."""
    import argparse

    import run_msra_ner_ofa
    from conftest import fake_tokenizer
    from ner_ofa import distributed
    from ner_ofa.features import CharEncoder

    lengths = [30, 2, 29, 3, 28, 4, 27, 5, 26, 6]  # long and short alternate; the last two are not chosen
    dev = [{"chars": list("a" * n), "labels": ["O"] * n} for n in lengths]
    seen = []
    monkeypatch.setattr(supernet, "compute_head_neuron_importance",
                        lambda model, batches: seen.extend(batches) or (np.ones((1, 1)), np.ones((1, 1))))
    monkeypatch.setattr(supernet, "reorder_heads_neurons", lambda *a: None)
    args = argparse.Namespace(max_seq_length=64, batch_size=2, importance_batches=4)
    run_msra_ner_ofa.reorder_by_importance(None, dev, CharEncoder(fake_tokenizer("a")), ["O"], args,
                                           distributed.Ranks(0, 1))
    real = [int((labels != -100).sum()) for _, labels in seen]
    assert sum(real) == sum(lengths[:8])  # the same sentences, none dropped, none added
    assert [ids.shape for ids, _ in seen] == [(2, 5), (2, 7), (2, 30), (2, 32)]  # [CLS] + chars + [SEP]
