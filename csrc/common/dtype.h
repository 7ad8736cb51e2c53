// Element types the kernels understand, without torch: the op layer maps at::ScalarType to DType,
// and bf16/f16 are plain 16-bit storage with float conversions, bit-compatible with c10's types.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace cnnkernels {

enum class DType : int { f32 = 0, f64 = 1, bf16 = 2, f16 = 3 };
constexpr int kNumDTypes = 4;

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
  }
  return "?";
}

inline int dtype_size(DType t) { return t == DType::f64 ? 8 : t == DType::f32 ? 4 : 2; }

// bfloat16 storage: the top 16 bits of an IEEE float. Rounding to nearest even, NaN kept quiet.
struct bf16 {
  uint16_t bits;
};

static inline float to_float(bf16 v) {
  uint32_t u = uint32_t(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

static inline bf16 bf16_from_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if (std::isnan(f)) return bf16{uint16_t((u >> 16) | 0x0040u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}

// Accumulator type and conversions used by the templated reference kernels.
template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

static inline float load_acc(const float* p) { return *p; }
static inline double load_acc(const double* p) { return *p; }
static inline float load_acc(const bf16* p) { return to_float(*p); }
static inline void store_from(float* p, float v) { *p = v; }
static inline void store_from(double* p, double v) { *p = v; }
static inline void store_from(bf16* p, float v) { *p = bf16_from_float(v); }

// The DType of a storage type, for kernels templated on it.
template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }

}  // namespace cnnkernels
