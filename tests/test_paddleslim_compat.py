"""The PaddleSlim fix, checked against plain Paddle layers (batch sizes other than 3, and 3)."""
import numpy as np
import paddle
import pytest

from ner_ofa.paddleslim_compat import apply_paddleslim_fixes


@pytest.fixture(scope="module", autouse=True)
def fixed():
    apply_paddleslim_fixes()


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_super_layer_norm_full_width_equals_layer_norm(batch):
    from paddleslim.nas.ofa.layers import SuperLayerNorm

    paddle.seed(0)
    plain = paddle.nn.LayerNorm(16)
    plain.weight.set_value(paddle.rand([16]) + 0.5)
    plain.bias.set_value(paddle.rand([16]))
    sup = SuperLayerNorm(16)
    sup.set_state_dict(plain.state_dict())
    x = paddle.randn([batch, 7, 16])
    np.testing.assert_allclose(sup(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-5)


def numpy_layer_norm(x, weight, bias, epsilon):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * weight + bias


@pytest.mark.parametrize("batch", [2, 3])
def test_super_layer_norm_width_uses_first_features(batch):
    """At a narrower width the layer normalises the input's 8 features with the first 8 of its 16 weights and
    biases -- against a layer norm written out in NumPy from the weights as set, not from the layer."""
    from paddleslim.nas.ofa.layers import SuperLayerNorm

    rng = np.random.RandomState(1)
    weight, bias = rng.rand(16).astype("float32") + 0.5, rng.rand(16).astype("float32")
    x = rng.randn(batch, 4, 8).astype("float32")
    sup = SuperLayerNorm(16)
    sup.weight.set_value(weight)
    sup.bias.set_value(bias)
    out = sup(paddle.to_tensor(x))
    assert out.shape == [batch, 4, 8]
    np.testing.assert_allclose(out.numpy(), numpy_layer_norm(x, weight[:8], bias[:8], sup._epsilon),
                               rtol=1e-5, atol=1e-5)


def test_apply_patches_once_and_only_when_called():
    """In a fresh process: importing the project changes nothing, the first call patches, a second call nothing."""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ner_ofa import data, features, labelling, scoring\n"
            "from ner_ofa import backends, paddleslim_compat, supernet, training\n"
            "from paddleslim.nas.ofa.layers import SuperLayerNorm\n"
            "before = SuperLayerNorm.forward\n"
            "first = paddleslim_compat.apply_paddleslim_fixes()\n"
            "after = SuperLayerNorm.forward\n"
            "second = paddleslim_compat.apply_paddleslim_fixes()\n"
            "assert before is not after, 'not patched'\n"
            "assert SuperLayerNorm.forward is after, 'patched twice'\n"
            "print(first, second)\n") % REPO
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['SuperLayerNorm.forward'] []"
