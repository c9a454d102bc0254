"""The training step's CPU fixes: the same forward and gradients as Paddle's own Linear, and the Trainer uses them."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from ner_ofa import cpu_training


def gradients(layer, x, **config):
    """The layer's output and the gradients of a fixed loss wrt its input, weight and bias."""
    x = paddle.to_tensor(x, stop_gradient=False)
    out = layer(x, **config)
    (out * paddle.arange(out.size, dtype="float32").reshape(out.shape)).sum().backward()
    grads = [t.grad.numpy().copy() for t in (x, layer.weight, layer.bias)]
    layer.clear_gradients()
    return out.numpy(), grads


@pytest.mark.parametrize("shape", [[3, 5, 8], [7, 8]])
def test_linear_has_the_same_output_and_gradients(shape):
    paddle.seed(1)
    layer = paddle.nn.Linear(8, 6)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    out, grads = gradients(layer, x)
    with cpu_training.fast_linear_bias_grad():
        fast_out, fast_grads = gradients(layer, x)
    np.testing.assert_array_equal(fast_out, out)  # the same matmul and add
    for fast, plain in zip(fast_grads, grads):
        np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-4)
    assert np.abs(grads[2]).max() > 1  # the bias gradient is not trivially zero


def test_paddleslim_super_linear_at_a_reduced_width():
    from paddleslim.nas.ofa.layers import SuperLinear

    paddle.seed(2)
    layer = SuperLinear(8, 6, candidate_config={"expand_ratio": [0.5, 1.0]})
    x = np.random.default_rng(1).standard_normal([2, 4, 8]).astype("float32")
    out, grads = gradients(layer, x, channel=3)
    with cpu_training.fast_linear_bias_grad():
        fast_out, fast_grads = gradients(layer, x, channel=3)
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(fast_out, out)
    for fast, plain in zip(fast_grads, grads):
        np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-4)
    assert not grads[2][3:].any() and grads[2][:3].all()  # only the kept neurons' biases learn


def test_the_block_restores_paddles_linear_also_on_error():
    original = F.linear
    with pytest.raises(RuntimeError):
        with cpu_training.fast_linear_bias_grad():
            assert F.linear is cpu_training.linear
            raise RuntimeError("a failing step")
    assert F.linear is original


def test_malloc_settings_are_made_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert cpu_training.keep_freed_memory() is True


def what_two_trainer_steps_see(monkeypatch):
    """["malloc"] if the Trainer set malloc up, then for each step whether Paddle's linear was this module's."""
    from test_checks import fake_trainer

    from ner_ofa import training

    seen = []
    monkeypatch.setattr(cpu_training, "keep_freed_memory", lambda: seen.append("malloc") or True)
    monkeypatch.setattr(training, "save_checkpoint", lambda *a, **k: None)
    trainer = fake_trainer([[0], [1]], num_steps=2, save_steps=100)
    trainer.run(lambda input_ids, labels: seen.append((F.linear is cpu_training.linear, stride_kernels()))
                or {"loss": 1.0}, lambda step, epoch: None, {})
    return seen


def stride_kernels():
    return paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"]


def test_the_trainer_steps_inside_the_block(monkeypatch):
    """Each step has this module's linear and copying kernels; after the steps Paddle's own are back."""
    assert what_two_trainer_steps_see(monkeypatch) == ["malloc", (True, False), (True, False)]
    assert F.linear is not cpu_training.linear and stride_kernels() is True


def test_importing_changes_nothing():
    """In a fresh process: importing the module (and the Trainer's) leaves Paddle's linear in place."""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import sys; sys.path.insert(0, %r)\n"
            "import paddle.nn.functional as F\n"
            "before = F.linear\n"
            "from ner_ofa import cpu_training, training\n"
            "print(F.linear is before, F.linear.__module__)\n" % REPO)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True paddle.nn.functional.common"


def test_on_a_gpu_the_trainer_leaves_paddle_alone(monkeypatch):
    monkeypatch.setattr(paddle, "get_device", lambda: "gpu:0")
    assert what_two_trainer_steps_see(monkeypatch) == [(False, True), (False, True)]


@pytest.mark.parametrize("frozen", ["input", "bias"])
def test_an_input_without_gradient(frozen):
    """A frozen bias gets no gradient, and an input that needs none (the first layer's) is no error."""
    paddle.seed(3)
    layer = paddle.nn.Linear(8, 6)
    layer.bias.stop_gradient = frozen == "bias"
    x = paddle.to_tensor(np.random.default_rng(2).standard_normal([5, 8]).astype("float32"),
                         stop_gradient=frozen == "input")
    with cpu_training.fast_linear_bias_grad():
        (layer(x) ** 2).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.numpy().any()
    assert (layer.bias.grad is None) == (frozen == "bias")
    assert (x.grad is None) == (frozen == "input")


def attention_heads_and_back(x):
    """Attention's head split and merge (reshape, transpose, matmul, transpose, reshape): output and input gradient."""
    x = paddle.to_tensor(x, stop_gradient=False)
    heads = x.reshape([0, 0, 2, 4]).transpose([0, 2, 1, 3])
    out = paddle.matmul(heads, heads, transpose_y=True).matmul(heads).transpose([0, 2, 1, 3]).reshape([0, 0, 8])
    (out * paddle.arange(out.size, dtype="float32").reshape(out.shape)).sum().backward()
    return out.numpy(), x.grad.numpy()


def test_copying_kernels_give_contiguous_tensors_and_the_same_values():
    x = np.random.default_rng(4).standard_normal([3, 5, 8]).astype("float32")
    view = paddle.to_tensor(x).transpose([0, 2, 1])
    with cpu_training.copying_kernels():
        copy = paddle.to_tensor(x).transpose([0, 2, 1])
        inside = attention_heads_and_back(x)
    assert not view.is_contiguous() and copy.is_contiguous()
    outside = attention_heads_and_back(x)
    for a, b in zip(inside, outside):
        np.testing.assert_array_equal(a, b)


def test_copying_kernels_restore_the_flag_also_on_error():
    with pytest.raises(RuntimeError):
        with cpu_training.fast_step():
            assert stride_kernels() is False and F.linear is cpu_training.linear
            raise RuntimeError("a step failed")
    assert stride_kernels() is True and F.linear is not cpu_training.linear


class FlagProbe(paddle.nn.Layer):
    """A model that records, at each forward, whether Paddle's stride kernels are on."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, input_ids):
        self.seen.append(stride_kernels())
        return input_ids.astype("float32")


def test_dygraph_scoring_has_copying_kernels_on_the_cpu_only(monkeypatch):
    from ner_ofa import backends

    probe = FlagProbe()
    run = backends.dynamic_logits_fn(probe)
    assert run(np.ones([2, 3], dtype="int64")).shape == (2, 3)
    assert probe.seen == [False] and stride_kernels() is True
    monkeypatch.setattr(paddle, "get_device", lambda: "gpu:0")
    run(np.ones([2, 3], dtype="int64"))
    assert probe.seen == [False, True]


def test_dygraph_scoring_gives_the_same_logits():
    from conftest import random_ids, tiny_model

    from ner_ofa import backends

    model, ids = tiny_model(), random_ids(length=12)
    with paddle.no_grad():
        plain = model(paddle.to_tensor(ids)).numpy()
    np.testing.assert_array_equal(backends.dynamic_logits_fn(model)(ids), plain)


def test_importance_in_a_fast_step_ranks_the_same(monkeypatch):
    """Stage 2's importance (forward + backward on dev) runs in a fast step: the same order of heads and neurons."""
    from types import SimpleNamespace

    from conftest import fake_tokenizer, random_ids, tiny_model

    import run_msra_ner_ofa
    from ner_ofa import distributed, supernet
    from ner_ofa.features import CharEncoder

    batches = [(random_ids(seed, length=12), np.random.RandomState(seed).randint(0, 5, [3, 12]).astype("int64"))
               for seed in range(3)]
    plain = supernet.compute_head_neuron_importance(tiny_model(), batches)
    with cpu_training.fast_step():
        fast = supernet.compute_head_neuron_importance(tiny_model(), batches)
    for a, b in zip(fast, plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
        np.testing.assert_array_equal(np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable"))
    seen = []
    monkeypatch.setattr(supernet, "compute_head_neuron_importance",
                        lambda model, batches: seen.append((F.linear is cpu_training.linear, stride_kernels()))
                        or plain)
    monkeypatch.setattr(supernet, "reorder_heads_neurons", lambda *a: None)
    dev = [{"chars": list("abc"), "labels": ["O", "O", "O"]}]
    args = SimpleNamespace(max_seq_length=12, importance_batches=0, batch_size=4)
    run_msra_ner_ofa.reorder_by_importance(None, dev, CharEncoder(fake_tokenizer("a", "b", "c")), ["O"], args,
                                           distributed.Ranks(0, 1))
    assert seen == [(True, False)] and stride_kernels() is True
