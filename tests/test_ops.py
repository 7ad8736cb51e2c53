"""The ops as PyTorch sees them: opcheck (schema, fake kernels, autograd registration, AOT
dispatch), torch.compile(fullgraph=True), torch.export and autocast."""
import pytest
import torch
import torch.nn.functional as F

import cnnkernels
import cnnkernels.functional as CF

ops = torch.ops.cnnkernels
cl = torch.channels_last


def conv_samples():
    g = torch.Generator().manual_seed(0)
    for fmt in (torch.contiguous_format, cl):
        for dtype in (torch.float32, torch.float64):
            x = torch.randn(2, 4, 7, 6, generator=g, dtype=dtype).contiguous(memory_format=fmt).requires_grad_()
            w = torch.randn(6, 2, 3, 2, generator=g, dtype=dtype).requires_grad_()
            b = torch.randn(6, generator=g, dtype=dtype).requires_grad_()
            yield (x, w, b, [2, 1], [1, 0], [1, 2], 2)
            yield (x, w.detach(), None, [1, 1], [0, 0], [1, 1], 2)


def pool_samples():
    g = torch.Generator().manual_seed(1)
    for fmt in (torch.contiguous_format, cl):
        x = torch.randn(2, 3, 9, 8, generator=g).contiguous(memory_format=fmt).requires_grad_()
        yield (x, [3, 3], [2, 2], [1, 1], [1, 1], False)
        yield (x, [2, 3], [1, 2], [1, 0], [2, 1], True)


@pytest.mark.parametrize("i", range(8))
def test_opcheck_conv2d(i):
    torch.library.opcheck(ops.conv2d.default, list(conv_samples())[i])


@pytest.mark.parametrize("i", range(4))
def test_opcheck_max_pool2d(i):
    args = list(pool_samples())[i]
    torch.library.opcheck(ops.max_pool2d_with_indices.default, args)
    torch.library.opcheck(ops.max_pool2d.default, args)  # training: its autograd saves taps
    torch.library.opcheck(ops.max_pool2d.default, (args[0].detach(), *args[1:]))
    torch.library.opcheck(ops.max_pool2d_with_taps.default, (args[0].detach(), *args[1:]))


@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck_backward_ops(channels_last):
    g = torch.Generator().manual_seed(2)
    fmt = cl if channels_last else torch.contiguous_format
    x = torch.randn(2, 4, 7, 6, generator=g).contiguous(memory_format=fmt)
    w = torch.randn(6, 2, 3, 2, generator=g)
    geometry = ([2, 1], [1, 0], [1, 2], 2)
    dy = ops.conv2d(x, w, None, *geometry)
    torch.library.opcheck(ops.conv2d_input_grad.default, (dy, w, list(x.shape), *geometry, channels_last))
    torch.library.opcheck(ops.conv2d_weight_grad.default, (dy, x, list(w.shape), *geometry))
    torch.library.opcheck(ops.conv2d_bias_grad.default, (dy,))
    y, idx = ops.max_pool2d_with_indices(x, [3, 2], [2, 2], [1, 1], [1, 1], True)
    torch.library.opcheck(ops.max_pool2d_backward.default,
                          (torch.randn_like(y), idx, list(x.shape), [3, 2], [2, 2], [1, 1], [1, 1]))
    y, taps = ops.max_pool2d_with_taps(x, [3, 2], [2, 2], [1, 1], [1, 1], True)
    torch.library.opcheck(ops.max_pool2d_backward_taps.default,
                          (torch.randn_like(y), taps, list(x.shape), [3, 2], [2, 2], [1, 1], [1, 1]))


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = cnnkernels.nn.Conv2d(3, 8, 3, padding=1)
        self.pool = cnnkernels.nn.MaxPool2d(3, 2, 1)
        self.conv2 = cnnkernels.nn.Conv2d(8, 8, 3, padding="same", groups=2, padding_mode="reflect")
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, cl])
def test_compile_fullgraph_forward_and_backward(memory_format):
    torch.manual_seed(0)
    model = SmallCNN()
    x = torch.randn(4, 3, 16, 16).contiguous(memory_format=memory_format)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x)
    out.square().mean().backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = model(x)
    ref.square().mean().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, p in zip(compiled_grads, model.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-5)


def test_compiled_graph_calls_our_ops():
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    torch.compile(SmallCNN(), backend=backend, fullgraph=True)(torch.randn(2, 3, 8, 8))
    assert any("cnnkernels.conv2d" in s for s in seen) and any("cnnkernels.max_pool2d" in s for s in seen), seen
    assert not any("aten.convolution" in s or "aten.conv2d" in s for s in seen), seen


def test_export():
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 12, 12)
    exported = torch.export.export(model, (x,))
    targets = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert any("cnnkernels.conv2d" in t for t in targets), targets
    torch.testing.assert_close(exported.module()(x), model(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_autocast_cpu_casts_like_aten(dtype):
    x, w, b = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
    with torch.autocast("cpu", dtype=dtype):
        ours = CF.conv2d(x, w, b, padding=1)
        ref = F.conv2d(x, w, b, padding=1)
    assert ours.dtype == ref.dtype
    torch.testing.assert_close(ours.float(), ref.float(), rtol=2e-2, atol=5e-2)


def test_autocast_under_compile():
    model = SmallCNN()
    x = torch.randn(2, 3, 8, 8)
    torch._dynamo.reset()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch.compile(model, fullgraph=True)(x)
        ref = model(x)
    assert out.dtype == ref.dtype
    torch.testing.assert_close(out.float(), ref.float(), rtol=5e-2, atol=5e-2)


# ---- the eager entry points (cnnkernels._C.conv2d, ...) that cnnkernels.functional calls ------------

class RecordingMode(torch.overrides.TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.funcs = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.funcs.append(func)
        return func(*args, **(kwargs or {}))


class RecordingTensor(torch.Tensor):
    funcs = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.funcs.append(func)
        return super().__torch_function__(func, types, args, kwargs or {})


def functional_calls(x, w):
    CF.conv2d(x, w, None, 1, 1)
    CF.max_pool2d(x, 2)
    CF.max_pool2d(x, 2, return_indices=True)


OUR_OPS = [ops.conv2d, ops.max_pool2d, ops.max_pool2d_with_indices]


def test_torch_function_mode_sees_our_ops():
    # The eager entry points skip __torch_function__: under a mode the functional takes torch.ops.
    x, w = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    with RecordingMode() as mode:
        functional_calls(x, w)
    assert [f for f in mode.funcs if f in OUR_OPS] == OUR_OPS, mode.funcs


def test_tensor_subclass_torch_function_sees_our_ops():
    RecordingTensor.funcs = []
    x = torch.randn(1, 2, 6, 6).as_subclass(RecordingTensor)
    functional_calls(x, torch.randn(3, 2, 3, 3))
    assert [f for f in RecordingTensor.funcs if f in OUR_OPS] == OUR_OPS, RecordingTensor.funcs


@pytest.mark.parametrize("grad", [False, True])
def test_eager_calls_match_torch_ops(grad):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 7, 6, generator=g).requires_grad_(grad)
    w = torch.randn(6, 2, 3, 2, generator=g).requires_grad_(grad)
    b = torch.randn(6, generator=g)
    results = []
    for lib in (cnnkernels._C, ops):
        y = lib.conv2d(x, w, b, [2, 1], [1, 0], [1, 2], 2)
        p, i = lib.max_pool2d_with_indices(x, [3, 2], [2, 2], [1, 1], [1, 1], True)
        q = lib.max_pool2d(x, [3, 2], [2, 2], [1, 1], [1, 1], True)
        assert (y.grad_fn is not None) == grad and (p.grad_fn is not None) == grad == (q.grad_fn is not None)
        grads = torch.autograd.grad((y.sum() + p.sum() + q.sum()), [x, w]) if grad else ()
        results.append((y, p, i, q, *grads))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_no_grad_records_nothing():
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    with torch.no_grad():
        y, p = CF.conv2d(x, w, None, 1, 1), CF.max_pool2d(x, 2)
    assert y.grad_fn is None and not y.requires_grad and p.grad_fn is None and not p.requires_grad


@pytest.mark.parametrize("grad_mode", [False, True])
@pytest.mark.parametrize("op", ["conv2d", "max_pool2d", "max_pool2d_indices"])
def test_forward_mode_ad_raises(op, grad_mode):
    # No jvp: a tangent must raise, also where no backward graph is built (grad mode off or no
    # input requiring grad), never come back dropped.
    import torch.autograd.forward_ad as fwAD
    x, w = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    call = {"conv2d": lambda t: CF.conv2d(t, w), "max_pool2d": lambda t: CF.max_pool2d(t, 2),
            "max_pool2d_indices": lambda t: CF.max_pool2d(t, 2, return_indices=True)}[op]
    with fwAD.dual_level(), torch.set_grad_enabled(grad_mode):
        dual = fwAD.make_dual(x, torch.randn_like(x))
        with pytest.raises(RuntimeError, match="jvp is not implemented"):
            call(dual)


def test_eager_calls_under_fake_tensor_mode_and_vmap():
    # Dispatcher-level machinery still sees the op through the eager entry points.
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        x = torch.randn(2, 3, 8, 8).contiguous(memory_format=cl)
        y, p = CF.conv2d(x, torch.randn(4, 3, 3, 3), None, 2, 1), CF.max_pool2d(x, 3, 2, 1)
        assert y.shape == (2, 4, 4, 4) and y.is_contiguous(memory_format=cl) and p.shape == (2, 3, 4, 4)
    g = torch.Generator().manual_seed(5)
    xs, w = torch.randn(3, 2, 3, 7, 6, generator=g), torch.randn(4, 3, 3, 3, generator=g)
    y = torch.vmap(lambda t: CF.conv2d(t, w, None, 1, 1))(xs)  # the batching fallback: a loop
    assert torch.equal(y, torch.stack([CF.conv2d(t, w, None, 1, 1) for t in xs]))
