// Python bindings of the CPU-emulated CUDA entry points (emulation.h): each takes CPU tensors laid
// out as a GPU call would have them (outputs preallocated, any strides) and runs csrc/cuda's
// dispatch and kernels on them. tf32: torch.backends.cudnn.allow_tf32 as the op layer passes it.
#include <torch/extension.h>

#include "../../csrc/cuda/cuda_kernels.h"

std::string cnnk_emu_fault_text();  // emu_build_info.cpp

namespace {
using namespace cnnkernels;

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::f32;
    case at::kDouble: return DType::f64;
    case at::kHalf: return DType::f16;
    case at::kBFloat16: return DType::bf16;
    default: TORCH_CHECK(false, "unsupported dtype ", t.scalar_type());
  }
}
ConstView4 cview(const at::Tensor& t) {
  return {t.data_ptr(), {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}};
}
View4 view(at::Tensor& t) { return {t.data_ptr(), {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}}; }
void check(cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, "emulated launch failed: error ", int(err), " (", cnnk_emu_fault_text(), ")");
}

// x-like N C H W, weight K C/G R S, y-like N K P Q.
Conv2dProblem conv_problem(const at::Tensor& x, const at::Tensor& w, const at::Tensor& y, std::vector<int64_t> st,
                           std::vector<int64_t> pd, std::vector<int64_t> dl, int64_t groups) {
  Conv2dProblem p{};
  p.N = x.size(0), p.C = x.size(1), p.H = x.size(2), p.W = x.size(3);
  p.K = w.size(0), p.R = w.size(2), p.S = w.size(3), p.P = y.size(2), p.Q = y.size(3);
  p.groups = groups, p.stride_h = st[0], p.stride_w = st[1], p.pad_h = pd[0], p.pad_w = pd[1];
  p.dil_h = dl[0], p.dil_w = dl[1], p.dtype = dtype_of(x);
  return p;
}

// Each conv entry point runs with the workspace it asks for (poisoned) and returns its size.
at::Tensor poisoned_workspace(size_t bytes, const at::Tensor& like) {
  return at::full({int64_t(bytes)}, 0xff, like.options().dtype(at::kByte));
}
int64_t conv2d_fprop(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias, at::Tensor y,
                     std::vector<int64_t> st, std::vector<int64_t> pd, std::vector<int64_t> dl, int64_t groups,
                     bool tf32) {
  Conv2dFpropArgs a{conv_problem(x, w, y, st, pd, dl, groups), cview(x), cview(w),
                    bias ? bias->data_ptr() : nullptr, view(y)};
  const size_t bytes = cuda::conv2d_fprop_workspace_bytes(a, tf32);
  at::Tensor ws = poisoned_workspace(bytes, x);
  check(cuda::conv2d_fprop(a, tf32, bytes ? ws.data_ptr() : nullptr, bytes, nullptr));
  return int64_t(bytes);
}
int64_t conv2d_dgrad(const at::Tensor& dy, const at::Tensor& w, at::Tensor dx, std::vector<int64_t> st,
                     std::vector<int64_t> pd, std::vector<int64_t> dl, int64_t groups, bool tf32) {
  Conv2dDgradArgs a{conv_problem(dx, w, dy, st, pd, dl, groups), cview(dy), cview(w), view(dx)};
  const size_t bytes = cuda::conv2d_dgrad_workspace_bytes(a, tf32);
  at::Tensor ws = poisoned_workspace(bytes, dy);
  check(cuda::conv2d_dgrad(a, tf32, bytes ? ws.data_ptr() : nullptr, bytes, nullptr));
  return int64_t(bytes);
}
int64_t conv2d_wgrad(const at::Tensor& dy, const at::Tensor& x, at::Tensor dw, std::vector<int64_t> st,
                     std::vector<int64_t> pd, std::vector<int64_t> dl, int64_t groups, bool tf32) {
  Conv2dWgradArgs a{conv_problem(x, dw, dy, st, pd, dl, groups), cview(dy), cview(x), view(dw)};
  const size_t bytes = cuda::conv2d_wgrad_workspace_bytes(a, tf32);
  at::Tensor ws = poisoned_workspace(bytes, x);
  check(cuda::conv2d_wgrad(a, tf32, bytes ? ws.data_ptr() : nullptr, bytes, nullptr));
  return int64_t(bytes);
}
void conv2d_bgrad(const at::Tensor& dy, at::Tensor db) {
  Conv2dBgradArgs a{};
  a.p.N = dy.size(0), a.p.K = dy.size(1), a.p.P = dy.size(2), a.p.Q = dy.size(3), a.p.dtype = dtype_of(dy);
  a.dy = cview(dy), a.db = db.data_ptr();
  check(cuda::conv2d_bgrad(a, nullptr));
}

Pool2dProblem pool_problem(const at::Tensor& x, const at::Tensor& y, std::vector<int64_t> k, std::vector<int64_t> st,
                           std::vector<int64_t> pd, std::vector<int64_t> dl) {
  Pool2dProblem p{};
  p.N = x.size(0), p.C = x.size(1), p.H = x.size(2), p.W = x.size(3), p.P = y.size(2), p.Q = y.size(3);
  p.kernel_h = k[0], p.kernel_w = k[1], p.stride_h = st[0], p.stride_w = st[1], p.pad_h = pd[0], p.pad_w = pd[1];
  p.dil_h = dl[0], p.dil_w = dl[1], p.dtype = dtype_of(x);
  return p;
}
// winners: None, int64 indices or uint8 taps, laid out like y.
void max_pool2d_fwd(const at::Tensor& x, at::Tensor y, std::optional<at::Tensor> winners, std::vector<int64_t> k,
                    std::vector<int64_t> st, std::vector<int64_t> pd, std::vector<int64_t> dl) {
  MaxPool2dFwdArgs a{pool_problem(x, y, k, st, pd, dl), cview(x), view(y), nullptr, {0, 0, 0, 0}};
  if (winners) {
    if (winners->scalar_type() == at::kByte) a.taps = winners->data_ptr<uint8_t>();
    else a.indices = winners->data_ptr<int64_t>();
    for (int d = 0; d < 4; ++d) a.index_stride[d] = winners->stride(d);
  }
  check(cuda::max_pool2d_fwd(a, nullptr));
}
void max_pool2d_bwd(const at::Tensor& dy, const at::Tensor& winners, at::Tensor dx, std::vector<int64_t> k,
                    std::vector<int64_t> st, std::vector<int64_t> pd, std::vector<int64_t> dl) {
  MaxPool2dBwdArgs a{pool_problem(dx, dy, k, st, pd, dl), cview(dy), nullptr, {0, 0, 0, 0}, view(dx)};
  if (winners.scalar_type() == at::kByte) a.taps = winners.data_ptr<uint8_t>();
  else a.indices = winners.data_ptr<int64_t>();
  for (int d = 0; d < 4; ++d) a.index_stride[d] = winners.stride(d);
  check(cuda::max_pool2d_bwd(a, nullptr));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("conv2d_fprop", &conv2d_fprop);
  m.def("conv2d_dgrad", &conv2d_dgrad);
  m.def("conv2d_wgrad", &conv2d_wgrad);
  m.def("conv2d_bgrad", &conv2d_bgrad);
  m.def("max_pool2d_fwd", &max_pool2d_fwd);
  m.def("max_pool2d_bwd", &max_pool2d_bwd);
  m.def("set_reference_kernels_only", &cuda::set_reference_kernels_only);
  m.def("set_gemm_tiles", [](int tiles) { cuda::set_gemm_tiles(cuda::GemmTiles(tiles)); });
}
