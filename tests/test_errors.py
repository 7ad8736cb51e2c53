"""Bad input raises PyTorch's exception class, with a message naming the argument; never a crash."""
import pytest
import torch
import torch.nn.functional as F

import cnnkernels.functional as CF

x = torch.randn(2, 4, 8, 8)
w = torch.randn(6, 4, 3, 3)

# name: (callable taking the functional module, a word the message must contain)
CONV_CASES = {
    "negative padding": (lambda f: f.conv2d(x, w, padding=-1), "padding"),
    "zero stride": (lambda f: f.conv2d(x, w, stride=0), "stride"),
    "negative stride": (lambda f: f.conv2d(x, w, stride=(1, -2)), "stride"),
    "zero dilation": (lambda f: f.conv2d(x, w, dilation=0), "dilation"),
    "zero groups": (lambda f: f.conv2d(x, w, groups=0), "groups"),
    "negative groups": (lambda f: f.conv2d(x, w, groups=-2), "groups"),
    "5-D input": (lambda f: f.conv2d(x[None], w), "input"),
    "2-D input": (lambda f: f.conv2d(x[0, 0], w), "input"),
    "3-D weight": (lambda f: f.conv2d(x, w[0]), "weight"),
    "input channels": (lambda f: f.conv2d(x, torch.randn(6, 3, 3, 3)), "channels"),
    "out channels vs groups": (lambda f: f.conv2d(x, torch.randn(5, 2, 3, 3), groups=2), "groups"),
    "input smaller than kernel": (lambda f: f.conv2d(x[:, :, :2, :2], w), "kernel"),
    "zero height": (lambda f: f.conv2d(torch.randn(2, 4, 0, 8), w), "kernel"),
    "weight dtype": (lambda f: f.conv2d(x, w.double()), "weight"),
    "bias dtype": (lambda f: f.conv2d(x, w, torch.randn(6).double()), "bias"),
    "bias length": (lambda f: f.conv2d(x, w, torch.randn(5)), "bias"),
    "bias rank": (lambda f: f.conv2d(x, w, torch.randn(6, 1)), "bias"),
    "same with stride": (lambda f: f.conv2d(x, w, stride=2, padding="same"), "same"),
    "bad padding string": (lambda f: f.conv2d(x, w, padding="full"), "padding"),
    "three strides": (lambda f: f.conv2d(x, w, stride=(1, 2, 3)), "stride"),
    "empty stride": (lambda f: f.conv2d(x, w, stride=()), "stride"),
    "float stride": (lambda f: f.conv2d(x, w, stride=1.5), "stride"),
}

POOL_CASES = {
    "padding over half the kernel": (lambda f: f.max_pool2d(x, 2, padding=2), "pad"),
    "zero kernel": (lambda f: f.max_pool2d(x, 0), ""),
    "zero stride": (lambda f: f.max_pool2d(x, 2, stride=0), "stride"),
    "zero dilation": (lambda f: f.max_pool2d(x, 2, dilation=0), "dilation"),
    "negative padding": (lambda f: f.max_pool2d(x, 2, padding=-1), "pad"),
    "output too small": (lambda f: f.max_pool2d(x[:, :, :1, :1], 3, stride=1), "size"),
    "2-D input": (lambda f: f.max_pool2d(x[0, 0], 2), ""),
    "5-D input": (lambda f: f.max_pool2d(x[None], 2), ""),
    "zero channels": (lambda f: f.max_pool2d(torch.randn(2, 0, 8, 8), 2), ""),
    "empty unbatched": (lambda f: f.max_pool2d(torch.randn(0, 8, 8), 2), ""),
    "three kernel sizes": (lambda f: f.max_pool2d(x, (2, 2, 2)), "kernel_size"),
    "float kernel": (lambda f: f.max_pool2d(x, 2.5), "kernel_size"),
}


def torch_exception(case):
    try:
        case(F)
    except Exception as e:  # noqa: BLE001  (we want whatever PyTorch raises)
        return type(e)
    pytest.fail("PyTorch accepted this input; the case is not a bad input")


@pytest.mark.parametrize("name", list(CONV_CASES) + [f"pool: {n}" for n in POOL_CASES])
def test_same_exception_class_as_torch(name):
    case, word = POOL_CASES[name[6:]] if name.startswith("pool: ") else CONV_CASES[name]
    expected = torch_exception(case)
    with pytest.raises(expected) as info:
        case(CF)
    assert word.lower() in str(info.value).lower(), f"message does not name '{word}': {info.value}"


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float16, torch.complex64])
def test_unsupported_dtypes_are_named(dtype):
    """PyTorch computes these on the CPU; cnnkernels refuses them clearly (float16 is CUDA-only)."""
    with pytest.raises(RuntimeError, match="dtype"):
        CF.conv2d(x.to(dtype), w.to(dtype))
    with pytest.raises(RuntimeError, match="dtype"):
        CF.max_pool2d(x.to(dtype), 2)


def test_direct_op_calls_are_checked():
    """The registered ops check their arguments too (they are public via torch.ops)."""
    ops = torch.ops.cnnkernels
    with pytest.raises(RuntimeError, match="stride"):
        ops.conv2d(x, w, None, [1], [0, 0], [1, 1], 1)
    with pytest.raises(RuntimeError, match="grad_output"):
        ops.conv2d_input_grad(torch.randn(2, 6, 5, 5), w, [2, 4, 8, 8], [1, 1], [0, 0], [1, 1], 1, False)
    with pytest.raises(RuntimeError, match="int64"):
        ops.max_pool2d_backward(torch.randn(2, 4, 4, 4), torch.zeros(2, 4, 4, 4, dtype=torch.int32),
                                [2, 4, 8, 8], [2, 2], [2, 2], [0, 0], [1, 1])
    with pytest.raises(RuntimeError, match="indices"):
        ops.max_pool2d_backward(torch.randn(2, 4, 4, 4), torch.zeros(2, 4, 3, 4, dtype=torch.int64),
                                [2, 4, 8, 8], [2, 2], [2, 2], [0, 0], [1, 1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_tensor_without_gpu_raises_cleanly():
    with pytest.raises((RuntimeError, AssertionError)):
        CF.conv2d(x.cuda(), w.cuda())
