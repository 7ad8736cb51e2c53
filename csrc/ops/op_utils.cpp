#include "op_utils.h"

#include <atomic>
#include <cstdint>
#include <limits>
#include <sstream>

#if defined(__linux__)
#include <sys/mman.h>
#endif

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

// Outputs of 32 MB and more are mapped afresh by glibc on every call (its mmap threshold stops
// growing at 32 MB), and the first write to each 4 KB page then faults: 25089 faults and ~30 of
// the 40-46 ms of VGG's conv1_1 forward at N=8 (102 MB out), for PyTorch's call as for ours.
// Asking for transparent huge pages over the buffer's whole 2 MB blocks (what PyTorch does for
// its own tensors under THP_MEM_ALLOC_ENABLE=1) leaves ~550 faults. In-process A/B, arms in
// random order, Xeon VM, N=8: conv1_1 channels_last 35.6 -> 15.9 ms, NCHW 34.6 -> 16.9 ms,
// depthwise 96 @112 /2 input gradient (38.5 MB) 13.3 -> 7.1 ms, 1 -> 64 @128 (33.5 MB) 11-13 ->
// 6-8 ms. On this VM some calls then ran slower (one batch of conv1_1 at 78 ms against 46; the
// 33.5 MB layer 10-18 ms in two processes), likely the host backing fresh 2 MB blocks.
// Where THP is off ("never") the hint does nothing.
static void advise_huge_pages(at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t bytes = uintptr_t(t.numel()) * t.element_size();
  if (!t.device().is_cpu() || bytes < (uintptr_t(32) << 20)) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1), hi = (begin + bytes) & ~(kHuge - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // a hint: errors ignored
#else
  (void)t;
#endif
}

at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
  advise_huge_pages(t);
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
