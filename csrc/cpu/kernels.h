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

struct CpuKernelTable {
  const char* variant;  // "<isa>_<tile>" part of the kernel names, e.g. "scalar_ref"
  Conv2dFpropFn conv2d_fprop;
  Conv2dDgradFn conv2d_dgrad;
  Conv2dWgradFn conv2d_wgrad;
  Conv2dBgradFn conv2d_bgrad;
  MaxPool2dFwdFn max_pool2d_fwd;
  MaxPool2dBwdFn max_pool2d_bwd;
};

// nullptr when that ISA has no kernels for the dtype.
const CpuKernelTable* reference_kernel_table(DType dtype);
const CpuKernelTable* avx2_kernel_table(DType dtype);
const CpuKernelTable* avx512_kernel_table(DType dtype);

// --- dispatch.cpp ---
CpuIsa active_cpu_isa();
void set_active_cpu_isa(CpuIsa isa);  // capped at what the host supports; returns silently

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
