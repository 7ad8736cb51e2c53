#include "op_utils.h"

#include <atomic>
#include <limits>
#include <sstream>

#include "../common/scratch.h"

namespace cnnkernels {

DType kernel_dtype(const at::Tensor& t, const char* op, const char* arg) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::f32;
    case at::kDouble: return DType::f64;
    case at::kBFloat16: return DType::bf16;
    case at::kHalf:
      TORCH_CHECK(t.is_cuda(), op, ": ", arg, " has dtype float16, which cnnkernels supports on CUDA only ",
                  "(CPU supports float32, float64 and bfloat16)");
      return DType::f16;
    default:
      TORCH_CHECK(false, op, ": ", arg, " has dtype ", t.scalar_type(),
                  "; cnnkernels supports float32, float64 and bfloat16 (and float16 on CUDA)");
  }
}

ConstView4 const_view(const at::Tensor& t) {
  return ConstView4{t.data_ptr(), {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}};
}

View4 mut_view(at::Tensor& t) {
  return View4{t.data_ptr(), {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}};
}

std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream os;
  os << sizes;
  return os.str();
}

void check_pair(at::IntArrayRef v, const char* op, const char* arg) {
  TORCH_CHECK(v.size() == 2, op, ": ", arg, " must have two values (height, width), got ", v.size());
}

static std::atomic<bool> g_poison{false};
void set_poison_outputs(bool on) {
  g_poison.store(on);
  set_poison_scratch(on);
}
bool poison_outputs() { return g_poison.load(); }

at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
  if (g_poison.load() && t.numel() > 0) {
    if (t.is_floating_point()) t.fill_(std::numeric_limits<double>::quiet_NaN());
    else if (t.scalar_type() == at::kByte) t.fill_(0xff);  // uint8 taps: no tap of a window under 256
    else t.fill_(std::numeric_limits<int64_t>::min());
  }
  return t;
}

bool cuda_kernels_built() {
#ifdef CNNKERNELS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

void fail_no_cuda(const char* op) {
  TORCH_CHECK(false, op, ": got a CUDA tensor, but this cnnkernels build has no CUDA kernels ",
              "(it was built without a CUDA toolkit); reinstall where nvcc is available, or move the ",
              "tensors to the CPU");
}

}  // namespace cnnkernels
