// Picks the CPU ISA once (CPUID, capped by CNNKERNELS_CPU_ISA) and routes each op to the best
// table entry for its dtype: the active ISA's kernel if it has one, else the scalar reference.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels.h"

namespace cnnkernels {
namespace {

CpuIsa initial_isa() {
  CpuIsa isa = best_host_isa();
  if (const char* env = std::getenv("CNNKERNELS_CPU_ISA")) {
    CpuIsa wanted;
    if (!parse_isa(env, &wanted)) {
      std::fprintf(stderr, "cnnkernels: ignoring CNNKERNELS_CPU_ISA=%s (expected scalar, avx2 or avx512)\n", env);
    } else if (!host_supports(wanted)) {
      std::fprintf(stderr, "cnnkernels: CNNKERNELS_CPU_ISA=%s is not supported by this CPU; using %s\n", env,
                   isa_name(isa));
    } else {
      isa = wanted;
    }
  }
  if (std::getenv("CNNKERNELS_VERBOSE")) std::fprintf(stderr, "cnnkernels: CPU kernels use %s\n", isa_name(isa));
  return isa;
}

std::atomic<int>& active_isa_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

const CpuKernelTable* isa_table(CpuIsa isa, DType dtype) {
  switch (isa) {
    case CpuIsa::avx512: return avx512_kernel_table(dtype);
    case CpuIsa::avx2: return avx2_kernel_table(dtype);
    case CpuIsa::scalar: return reference_kernel_table(dtype);
  }
  return nullptr;
}

// The table entry `member` for dtype: the active ISA's, else the reference's. The op layer only
// calls with dtypes the reference covers, so the result is never null.
template <typename Fn>
const CpuKernel<Fn>& pick(CpuKernel<Fn> CpuKernelTable::*member, DType dtype) {
  const CpuKernelTable* t = isa_table(active_cpu_isa(), dtype);
  if (t == nullptr || (t->*member).fn == nullptr) t = reference_kernel_table(dtype);
  return t->*member;
}

Bf16Dot initial_bf16_dot() {
  Bf16Dot mode = Bf16Dot::kAuto;
  if (const char* env = std::getenv("CNNKERNELS_BF16_DOT")) {
    if (!parse_bf16_dot(env, &mode))
      std::fprintf(stderr, "cnnkernels: ignoring CNNKERNELS_BF16_DOT=%s (expected auto, on, off or amx)\n", env);
  }
  return mode;
}

std::atomic<int>& bf16_dot_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_bf16_dot())};
  return slot;
}

}  // namespace

const char* bf16_dot_name(Bf16Dot mode) {
  switch (mode) {
    case Bf16Dot::kAuto: return "auto";
    case Bf16Dot::kOn: return "on";
    case Bf16Dot::kOff: return "off";
    case Bf16Dot::kAmx: return "amx";
  }
  return "?";
}

bool parse_bf16_dot(const std::string& name, Bf16Dot* out) {
  for (Bf16Dot mode : {Bf16Dot::kAuto, Bf16Dot::kOn, Bf16Dot::kOff, Bf16Dot::kAmx}) {
    if (name == bf16_dot_name(mode)) {
      *out = mode;
      return true;
    }
  }
  return false;
}

Bf16Dot bf16_dot_mode() { return static_cast<Bf16Dot>(bf16_dot_slot().load()); }
void set_bf16_dot_mode(Bf16Dot mode) { bf16_dot_slot().store(static_cast<int>(mode)); }

double bf16_dot_rate_ratio() {
  static const double ratio = host_has_avx512_bf16() ? measure_bf16_dot_rate_ratio() : 0.0;
  return ratio;
}

double zmm_fma_rate_ratio() {
  static const double ratio = host_supports(CpuIsa::avx512) ? measure_zmm_fma_rate_ratio() : 0.0;
  return ratio;
}

CpuIsa active_cpu_isa() { return static_cast<CpuIsa>(active_isa_slot().load()); }

void set_active_cpu_isa(CpuIsa isa) {
  if (!host_supports(isa)) isa = best_host_isa();
  active_isa_slot().store(static_cast<int>(isa));
}

void cpu_conv2d_fprop(const Conv2dFpropArgs& a) { pick(&CpuKernelTable::conv2d_fprop, a.p.dtype).fn(a); }
void cpu_conv2d_dgrad(const Conv2dDgradArgs& a) { pick(&CpuKernelTable::conv2d_dgrad, a.p.dtype).fn(a); }
void cpu_conv2d_wgrad(const Conv2dWgradArgs& a) { pick(&CpuKernelTable::conv2d_wgrad, a.p.dtype).fn(a); }
void cpu_conv2d_bgrad(const Conv2dBgradArgs& a) { pick(&CpuKernelTable::conv2d_bgrad, a.p.dtype).fn(a); }
void cpu_max_pool2d_fwd(const MaxPool2dFwdArgs& a) { pick(&CpuKernelTable::max_pool2d_fwd, a.p.dtype).fn(a); }
void cpu_max_pool2d_bwd(const MaxPool2dBwdArgs& a) { pick(&CpuKernelTable::max_pool2d_bwd, a.p.dtype).fn(a); }

std::string cpu_kernel_name(const std::string& op, DType dtype) {
  if (reference_kernel_table(dtype) == nullptr) return "";
  if (op == "conv2d_fprop") return pick(&CpuKernelTable::conv2d_fprop, dtype).name;
  if (op == "conv2d_dgrad") return pick(&CpuKernelTable::conv2d_dgrad, dtype).name;
  if (op == "conv2d_wgrad") return pick(&CpuKernelTable::conv2d_wgrad, dtype).name;
  if (op == "conv2d_bgrad") return pick(&CpuKernelTable::conv2d_bgrad, dtype).name;
  if (op == "max_pool2d_fwd") return pick(&CpuKernelTable::max_pool2d_fwd, dtype).name;
  if (op == "max_pool2d_bwd") return pick(&CpuKernelTable::max_pool2d_bwd, dtype).name;
  return "";
}

}  // namespace cnnkernels
