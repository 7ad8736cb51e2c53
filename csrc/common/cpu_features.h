// CPU instruction sets, read once from CPUID. CNNKERNELS_CPU_ISA=scalar|avx2|avx512 caps the
// choice (tests and benchmarks force each path); a forced ISA the host lacks falls back to the
// best one it has, with a warning on stderr.
#pragma once
#include <cstdint>
#include <string>

namespace cnnkernels {

enum class CpuIsa : int { scalar = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(CpuIsa isa);
bool parse_isa(const std::string& name, CpuIsa* out);

// What the host can run: avx2 means AVX2 + FMA; avx512 means F, BW, VL and DQ.
bool host_supports(CpuIsa isa);
bool host_has_avx512_bf16();
CpuIsa best_host_isa();

// The last-level cache (L3, else L2) in bytes as the OS reports it, read once; 32 MB if unknown.
// Kernels size their prefetching by it: what overflows a 32 MB Zen L3 stays in a Xeon's 480 MB.
int64_t host_last_level_cache_bytes();

}  // namespace cnnkernels
