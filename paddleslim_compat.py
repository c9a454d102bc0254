"""Fixes that PaddleSlim 2.6.0's OFA layers need on Paddle 3.x -- applied only by an explicit call.

PaddleSlim 2.6.0 (its last release, Jan 2024) predates Paddle 3. Two of its super layers break there:

* ``SuperLayerNorm.forward`` unpacks three outputs from ``paddle._C_ops.layer_norm``, which returns a
  single tensor since Paddle 2.5. For batch sizes other than 3 this raises ``ValueError: too many values
  to unpack``; for a batch of exactly 3 it silently unpacks the *batch* and returns garbage.
* ``SuperEmbedding.__init__`` passes ``padding_idx, sparse, weight_attr, name`` positionally to
  ``nn.Embedding``, whose signature changed in Paddle 3.2 (``TypeError ... 7 were given``).

:func:`apply_paddleslim_fixes` replaces those two methods on the PaddleSlim classes. It is idempotent and
is called by the OFA and export stages right before they build a supernet -- importing this module (or the
project's ``utils``) changes nothing. ``tests/test_paddleslim_compat.py`` checks the fixed layers against
plain Paddle layers.

We deliberately do *not* import ``paddleslim.nas.ofa.utils.nlp_utils``: it monkey-patches
``paddle.nn.MultiHeadAttention`` and ``TransformerEncoder`` at import time (head-mask support), which breaks
PaddleNLP 2.8.1's BERT and can cut the head count twice during export. Head importance is computed without
it (see ``utils.compute_head_neuron_importance``), and attention width is handled by setting each attention
layer's ``num_heads`` explicitly (``utils.set_supernet_width``).
"""
import paddle
import paddle.nn.functional as F

_APPLIED = False


def _super_layer_norm_forward(self, input):
    """LayerNorm over the last dim, using the first ``input.shape[-1]`` entries of weight and bias."""
    feature_dim = int(input.shape[-1])
    weight = self.weight[:feature_dim] if self.weight is not None else None
    bias = self.bias[:feature_dim] if self.bias is not None else None
    self.cur_config = {"prune_dim": feature_dim}
    return F.layer_norm(input, normalized_shape=[feature_dim], weight=weight, bias=bias, epsilon=self._epsilon)


def _make_super_embedding_init():
    from paddleslim.nas.ofa.layers import SuperEmbedding

    def __init__(self, num_embeddings, embedding_dim, candidate_config={}, padding_idx=None, sparse=False,
                 weight_attr=None, name=None):
        paddle.nn.Embedding.__init__(self, num_embeddings, embedding_dim, padding_idx=padding_idx,
                                     sparse=sparse, weight_attr=weight_attr, name=name)
        self.candidate_config = candidate_config
        self.cur_config = None
        self.expand_ratio = candidate_config.get("expand_ratio")
        self.base_output_dim = self._embedding_dim
        if self.expand_ratio is not None:
            self.base_output_dim = int(self._embedding_dim / max(self.expand_ratio))

    __init__.__qualname__ = SuperEmbedding.__init__.__qualname__
    return __init__


def apply_paddleslim_fixes():
    """Patch ``SuperLayerNorm.forward`` and ``SuperEmbedding.__init__`` of PaddleSlim for Paddle 3.x.

    Returns the list of what was patched (empty if the fixes were already applied)."""
    global _APPLIED
    if _APPLIED:
        return []
    from paddleslim.nas.ofa.layers import SuperEmbedding, SuperLayerNorm

    SuperLayerNorm.forward = _super_layer_norm_forward
    SuperEmbedding.__init__ = _make_super_embedding_init()
    _APPLIED = True
    return ["SuperLayerNorm.forward", "SuperEmbedding.__init__"]
