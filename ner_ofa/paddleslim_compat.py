"""The fix PaddleSlim 2.6.0's OFA needs on Paddle 3.x -- applied only by an explicit call.

PaddleSlim 2.6.0 (its last release, Jan 2024) predates Paddle 3. ``SuperLayerNorm.forward`` unpacks three outputs
from ``paddle._C_ops.layer_norm``, which returns a single tensor since Paddle 2.5: for batch sizes other than 3
this raises ``ValueError: too many values to unpack``; for a batch of exactly 3 it silently unpacks the *batch*
and returns garbage. (``SuperEmbedding`` is broken on Paddle >= 3.2 too, but only the encoder is converted here,
so no embedding ever becomes a super layer.)

:func:`apply_paddleslim_fixes` replaces that method on the PaddleSlim class. It is idempotent and is called by
:func:`ner_ofa.supernet.build_supernet` right before a supernet is built -- importing this module changes nothing.
``tests/test_paddleslim_compat.py`` checks the fixed layer against plain Paddle layers.

We deliberately do *not* import ``paddleslim.nas.ofa.utils.nlp_utils``: it monkey-patches
``paddle.nn.MultiHeadAttention`` and ``TransformerEncoder`` at import time (head-mask support), which breaks
PaddleNLP 2.8.1's BERT and can cut the head count twice during export. Head importance is computed without
it (see ``ner_ofa.supernet.compute_head_neuron_importance``), and attention width is handled by setting each
attention layer's ``num_heads`` explicitly (``ner_ofa.supernet.set_supernet_width``).
"""
import paddle.nn.functional as F

_APPLIED = False


def _super_layer_norm_forward(self, input):
    """LayerNorm over the last dim, using the first ``input.shape[-1]`` entries of weight and bias."""
    feature_dim = int(input.shape[-1])
    weight = self.weight[:feature_dim] if self.weight is not None else None
    bias = self.bias[:feature_dim] if self.bias is not None else None
    self.cur_config = {"prune_dim": feature_dim}
    return F.layer_norm(input, normalized_shape=[feature_dim], weight=weight, bias=bias, epsilon=self._epsilon)


def apply_paddleslim_fixes():
    """Patch ``SuperLayerNorm.forward`` of PaddleSlim for Paddle 3.x.

    Returns the list of what was patched (empty if the fix was already applied)."""
    global _APPLIED
    if _APPLIED:
        return []
    from paddleslim.nas.ofa.layers import SuperLayerNorm

    SuperLayerNorm.forward = _super_layer_norm_forward
    _APPLIED = True
    return ["SuperLayerNorm.forward"]
