"""Three costs of Paddle 3.1's dygraph on the CPU that are not the model's, cut by explicit calls (the Trainer makes
them around each training step; dygraph scoring and stage 2's importance use the first two, :func:`on_cpu`).

- **The bias gradient of a Linear layer.** In the dynamic graph ``F.linear`` is a matmul and a broadcast add, and the
  add's CPU gradient sums the output gradient over the rows in a scalar loop, some hundred times slower than the
  same sum as one GEMV (``ones @ grad``; on the CPUs measured it even gives the same bits). Inside
  :func:`fast_linear_bias_grad`, ``paddle.nn.functional.linear`` -- what ``nn.Linear`` and PaddleSlim's
  ``SuperLinear`` call -- adds the bias through :class:`BiasAdd`, whose backward is that GEMV. The forward is the
  same matmul and add.
- **Copies of strided views.** With Paddle's default ``FLAGS_use_stride_kernel``, ``transpose`` and ``slice`` return
  views, and the next op that needs a contiguous tensor (attention's ``reshape`` of its transposed heads, the
  gradients of both) copies them element by element. Inside :func:`copying_kernels` the flag is off: those ops use
  their own copying kernels, which are many times faster on these shapes. The values are the same.
- **Page faults in the allocator.** Paddle's CPU allocator is ``malloc``; glibc returns freed blocks of a few MB to
  the kernel (``munmap``, heap trimming), so each step faults the same pages in again. :func:`keep_freed_memory`
  raises glibc's mmap and trim thresholds (``mallopt``) so that freed blocks are reused.

What they save, measured: docs/results.md ("A training step's own costs").
"""
import contextlib
import ctypes
import ctypes.util

import paddle
import paddle.nn.functional as F
from paddle.autograd import PyLayer

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest on 64-bit: blocks up to 32 MB come from the heap
_KEEP = 1 << 30  # trim the heap only when 1 GiB at its top is free
_STRIDE_FLAG = "FLAGS_use_stride_kernel"


class BiasAdd(PyLayer):
    """``x + bias`` (bias 1-D, over the last axis of x), with the bias gradient computed as one matmul."""

    @staticmethod
    def forward(ctx, x, bias):
        ctx.needs_grad = (not x.stop_gradient, not bias.stop_gradient)
        return x + bias

    @staticmethod
    def backward(ctx, grad):
        x_needs, bias_needs = ctx.needs_grad
        bias_grad = None
        if bias_needs:
            rows = grad.reshape([-1, grad.shape[-1]])
            ones = paddle.ones([1, rows.shape[0]], dtype=rows.dtype)
            bias_grad = paddle.matmul(ones, rows).reshape([grad.shape[-1]])
        return grad if x_needs else None, bias_grad


def linear(x, weight, bias=None, name=None):
    """``paddle.nn.functional.linear`` with :class:`BiasAdd` for the bias (same signature, same output)."""
    out = paddle.matmul(x, weight)
    return out if bias is None else BiasAdd.apply(out, bias)


@contextlib.contextmanager
def fast_linear_bias_grad():
    """Within the block, ``paddle.nn.functional.linear`` is :func:`linear` (restored on exit, also on error)."""
    original = F.linear
    F.linear = linear
    try:
        yield
    finally:
        F.linear = original


@contextlib.contextmanager
def copying_kernels():
    """Within the block, ``FLAGS_use_stride_kernel`` is off (view ops copy into contiguous tensors); restored on exit,
    also on error."""
    before = paddle.get_flags([_STRIDE_FLAG])[_STRIDE_FLAG]
    paddle.set_flags({_STRIDE_FLAG: False})
    try:
        yield
    finally:
        paddle.set_flags({_STRIDE_FLAG: before})


@contextlib.contextmanager
def fast_step():
    """The training step's forward and backward with both of the above: :func:`fast_linear_bias_grad` and
    :func:`copying_kernels`."""
    with fast_linear_bias_grad(), copying_kernels():
        yield


def on_cpu(context):
    """``context()`` (one of the context managers above) when Paddle runs on the CPU, else a no-op context: a GPU's
    path stays Paddle's own."""
    return context() if paddle.get_device() == "cpu" else contextlib.nullcontext()


def keep_freed_memory():
    """Make glibc's malloc keep freed blocks for reuse instead of returning them to the kernel.

    Returns True when the settings were made, False where the C library is not glibc (nothing changes)."""
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, _KEEP), (_M_TOP_PAD, 64 * 1024 * 1024)))
