// The CPU kernel tables. Each ISA (scalar reference, avx2, avx512) provides a table per dtype; an
// entry left null falls back to the reference. dispatch.cpp picks the ISA once (CPUID, capped by
// CNNKERNELS_CPU_ISA) and exposes one entry point per op.
#pragma once
#include <string>

#include "../common/conv_params.h"
#include "../common/cpu_features.h"
#include "../common/pool_params.h"

namespace cnnkernels {

using Conv2dFpropFn = void (*)(const Conv2dFpropArgs&);
using Conv2dDgradFn = void (*)(const Conv2dDgradArgs&);
using Conv2dWgradFn = void (*)(const Conv2dWgradArgs&);
using Conv2dBgradFn = void (*)(const Conv2dBgradArgs&);
using MaxPool2dFwdFn = void (*)(const MaxPool2dFwdArgs&);
using MaxPool2dBwdFn = void (*)(const MaxPool2dBwdArgs&);

template <typename Fn>
struct CpuKernel {
  Fn fn = nullptr;
  std::string name;  // <op>_<direction>_<layout>_<dtype>__<isa>_<tile>, e.g. "conv2d_fprop_any_f32__scalar_ref"
};

struct CpuKernelTable {
  CpuKernel<Conv2dFpropFn> conv2d_fprop;
  CpuKernel<Conv2dDgradFn> conv2d_dgrad;
  CpuKernel<Conv2dWgradFn> conv2d_wgrad;
  CpuKernel<Conv2dBgradFn> conv2d_bgrad;
  CpuKernel<MaxPool2dFwdFn> max_pool2d_fwd;
  CpuKernel<MaxPool2dBwdFn> max_pool2d_bwd;
};

// The reference loops for storage type T, compiled in namespace ns, named "<op>_any_<dtype>__<variant>".
#define CNNKERNELS_REFERENCE_TABLE(ns, T, dtype, variant)                                   \
  ::cnnkernels::CpuKernelTable {                                                           \
    {ns::conv2d_fprop<T>, std::string("conv2d_fprop_any_") + dtype + "__" + variant},      \
    {ns::conv2d_dgrad<T>, std::string("conv2d_dgrad_any_") + dtype + "__" + variant},      \
    {ns::conv2d_wgrad<T>, std::string("conv2d_wgrad_any_") + dtype + "__" + variant},      \
    {ns::conv2d_bgrad<T>, std::string("conv2d_bgrad_any_") + dtype + "__" + variant},      \
    {ns::max_pool2d_fwd<T>, std::string("max_pool2d_fwd_any_") + dtype + "__" + variant},  \
    {ns::max_pool2d_bwd<T>, std::string("max_pool2d_bwd_any_") + dtype + "__" + variant},  \
  }

// nullptr when that ISA has no kernels for the dtype.
const CpuKernelTable* reference_kernel_table(DType dtype);
const CpuKernelTable* avx2_kernel_table(DType dtype);
const CpuKernelTable* avx512_kernel_table(DType dtype);

// --- dispatch.cpp ---
CpuIsa active_cpu_isa();
void set_active_cpu_isa(CpuIsa isa);  // capped at what the host supports; returns silently

// Which engine the avx512 bfloat16 convolutions run where the host has AVX512-BF16: kAuto (the
// default, or CNNKERNELS_BF16_DOT=auto|on|off|amx): AMX tiles where the host has AMX-BF16 (and
// the layer suits them), and otherwise the vdpbf16ps engine where its measured
// multiply-add rate is at least the float FMAs' (Zen 4: twice), else the float engine (bfloat16
// widened as it is packed) except on layers of few pixels, where packing the weights dominates;
// kOn: always vdpbf16ps (no AMX); kOff: always the float engine; kAmx: AMX tiles where they
// apply, vdpbf16ps for the rest.
enum class Bf16Dot : int { kAuto = 0, kOn = 1, kOff = 2, kAmx = 3 };
Bf16Dot bf16_dot_mode();
void set_bf16_dot_mode(Bf16Dot mode);
const char* bf16_dot_name(Bf16Dot mode);
bool parse_bf16_dot(const std::string& name, Bf16Dot* out);
// vdpbf16ps multiply-adds per second over FMA multiply-adds per second (zmm, one thread), measured
// once on first use; 0 where the host has no AVX512-BF16.
double bf16_dot_rate_ratio();
// The measurement (conv2d_bf16dot_avx512.cpp, built with -mavx512bf16): call only where the host
// has AVX512-BF16.
double measure_bf16_dot_rate_ratio();
// 512-bit FMA multiply-adds per second over 256-bit ones (one thread), measured once on first use;
// 0 where the host has no AVX-512. Winograd's rule for few tiles reads it (conv2d_winograd.h).
double zmm_fma_rate_ratio();
// The measurement (conv2d_bf16dot_avx512.cpp): call only where the host has AVX-512.
double measure_zmm_fma_rate_ratio();
// Whether this process can run AMX-BF16 tiles (CPUID, and the OS's permission, asked once).
bool host_can_run_amx_bf16();

void cpu_conv2d_fprop(const Conv2dFpropArgs& args);
void cpu_conv2d_dgrad(const Conv2dDgradArgs& args);
void cpu_conv2d_wgrad(const Conv2dWgradArgs& args);
void cpu_conv2d_bgrad(const Conv2dBgradArgs& args);
void cpu_max_pool2d_fwd(const MaxPool2dFwdArgs& args);
void cpu_max_pool2d_bwd(const MaxPool2dBwdArgs& args);

// The name of the kernel the active ISA runs for (op, dtype), e.g. op "conv2d_fprop" gives
// "conv2d_fprop_any_f32__avx512_autovec".
std::string cpu_kernel_name(const std::string& op, DType dtype);

}  // namespace cnnkernels
