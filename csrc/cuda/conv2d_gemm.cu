// Dense and grouped conv2d as implicit GEMM, for every dtype and stride layout: no im2col buffer,
// the operands are gathered from the tensors tile by tile. bfloat16 and float16 run on the tensor
// cores (mma.sync m16n8k16, float accumulation), float32 too where TF32 is allowed (m16n8k8 on
// operands rounded to TF32, as cuDNN does under torch.backends.cudnn.allow_tf32); float32 without
// TF32 and float64 on the CUDA cores, exact in their own type.
//
//   fprop: rows m = (n, p, q) pixels, columns the group's K/G filters, reduction (r, s, c) over
//          the group's C/G channels (c fastest: channels_last reads run along memory)
//   dgrad: rows m = (n, h, w) input pixels, columns the group's C/G channels, reduction (r, s, k)
//          over the taps and filters whose outputs read pixel (h, w) (a gather: no atomics)
//   wgrad: rows the group's K/G filters, columns (c, r, s), reduction over the N P Q pixels,
//          split into slices whose partial sums go to a workspace and are added in slice order
//
//   conv2d_gemm__sm80_tiled       one block per 64 x 64 output tile (and group, slice): 256 threads
//                                 stage 16-deep slices of both operands in shared memory and each
//                                 accumulate a 4 x 4 block of the tile
//   conv2d_gemm__sm80_mma         the same tiles for bf16 / f16 / TF32: 8 warps of 32 x 16 outputs,
//                                 each k16 step 2 x 2 mma.sync m16n8k16 (TF32: twice m16n8k8) on
//                                 fragments read from shared tiles stored k-fastest (no ldmatrix or
//                                 cp.async pipeline yet)
//   conv2d_fprop_nhwc__sm80_mma_pipelined  the forward of bf16 / f16 channels_last layers whose
//                                 group channels come in whole 16-byte chunks (C/G % 8 == 0,
//                                 channels_last weights): operands copied straight into shared
//                                 memory by cp.async (zero-fill for padding) through a 3-stage
//                                 pipeline, fragments by ldmatrix, then the same mma.sync
//   conv2d_gemm_finish__sm80      wgrad's slices summed in order into dw
#include "conv2d_gemm.cuh"
#include "cuda_dtype.cuh"
#include "cuda_launch.cuh"
#include "cuda_layout.cuh"

#include <algorithm>
#include <cstring>
#include <type_traits>

namespace cnnkernels {
namespace cuda {
namespace {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16;
constexpr int kGemmThreads = 256;  // 16 x 16 threads, 4 x 4 outputs each
constexpr int kPad = 4;            // shared rows of 68: keeps 16-byte alignment, staggers banks

// The operands and the output of each GEMM, addressed by (group, row or reduction, column).
template <typename T, typename A>
struct FpropGemm {
  Conv2dFpropArgs a;
  int64_t rows, cols, depth;  // M = N P Q, N = K / G, K = R S C / G
  int64_t Cg, Kg;
  __device__ A lhs(int64_t g, int64_t m, int64_t kk) const {  // x at pixel m, tap and channel kk
    const Conv2dProblem& p = a.p;
    const int64_t q = m % p.Q, np = m / p.Q, pp = np % p.P, n = np / p.P;
    const int64_t c = kk % Cg, rs = kk / Cg, s = rs % p.S, r = rs / p.S;
    const int64_t h = pp * p.stride_h - p.pad_h + r * p.dil_h, w = q * p.stride_w - p.pad_w + s * p.dil_w;
    if (h < 0 || h >= p.H || w < 0 || w >= p.W) return A(0);
    return load(static_cast<const T*>(a.x.data) + offset4(a.x.stride, n, g * Cg + c, h, w));
  }
  __device__ A rhs(int64_t g, int64_t kk, int64_t k) const {  // w of filter k at tap and channel kk
    const int64_t c = kk % Cg, rs = kk / Cg;
    return load(static_cast<const T*>(a.w.data) + offset4(a.w.stride, g * Kg + k, c, rs / a.p.S, rs % a.p.S));
  }
  __device__ void put(int64_t /*slice*/, int64_t g, int64_t m, int64_t k, A v) const {
    const Conv2dProblem& p = a.p;
    const int64_t q = m % p.Q, np = m / p.Q, pp = np % p.P, n = np / p.P;
    if (a.bias) v += load(static_cast<const T*>(a.bias) + g * Kg + k);
    store(static_cast<T*>(a.y.data) + offset4(a.y.stride, n, g * Kg + k, pp, q), v);
  }
};

template <typename T, typename A>
struct DgradGemm {
  Conv2dDgradArgs a;
  int64_t rows, cols, depth;  // M = N H W, N = C / G, K = R S K / G
  int64_t Cg, Kg;
  // dy[n, k, p, q] where output (p, q) reads pixel m through tap (r, s), else 0.
  __device__ A lhs(int64_t g, int64_t m, int64_t kk) const {
    const Conv2dProblem& p = a.p;
    const int64_t w = m % p.W, nh = m / p.W, h = nh % p.H, n = nh / p.H;
    const int64_t k = kk % Kg, rs = kk / Kg, s = rs % p.S, r = rs / p.S;
    const int64_t hp = h + p.pad_h - r * p.dil_h, wp = w + p.pad_w - s * p.dil_w;
    if (hp < 0 || wp < 0 || hp % p.stride_h || wp % p.stride_w) return A(0);
    const int64_t pp = hp / p.stride_h, q = wp / p.stride_w;
    if (pp >= p.P || q >= p.Q) return A(0);
    return load(static_cast<const T*>(a.dy.data) + offset4(a.dy.stride, n, g * Kg + k, pp, q));
  }
  __device__ A rhs(int64_t g, int64_t kk, int64_t c) const {
    const int64_t k = kk % Kg, rs = kk / Kg;
    return load(static_cast<const T*>(a.w.data) + offset4(a.w.stride, g * Kg + k, c, rs / a.p.S, rs % a.p.S));
  }
  __device__ void put(int64_t /*slice*/, int64_t g, int64_t m, int64_t c, A v) const {
    const Conv2dProblem& p = a.p;
    const int64_t w = m % p.W, nh = m / p.W, h = nh % p.H, n = nh / p.H;
    store(static_cast<T*>(a.dx.data) + offset4(a.dx.stride, n, g * Cg + c, h, w), v);
  }
};

template <typename T, typename A>
struct WgradGemm {
  Conv2dWgradArgs a;
  int64_t rows, cols, depth;  // M = K / G, N = C / G R S, K = N P Q
  int64_t Cg, Kg;
  A* partial;  // [slice][group][row][col] where the reduction is split, else nullptr
  __device__ A lhs(int64_t g, int64_t k, int64_t j) const {  // dy of filter k at pixel j
    const Conv2dProblem& p = a.p;
    const int64_t q = j % p.Q, np = j / p.Q, pp = np % p.P, n = np / p.P;
    return load(static_cast<const T*>(a.dy.data) + offset4(a.dy.stride, n, g * Kg + k, pp, q));
  }
  __device__ A rhs(int64_t g, int64_t j, int64_t crs) const {  // x under tap (r, s) of pixel j
    const Conv2dProblem& p = a.p;
    const int64_t q = j % p.Q, np = j / p.Q, pp = np % p.P, n = np / p.P;
    const int64_t s = crs % p.S, cr = crs / p.S, r = cr % p.R, c = cr / p.R;
    const int64_t h = pp * p.stride_h - p.pad_h + r * p.dil_h, w = q * p.stride_w - p.pad_w + s * p.dil_w;
    if (h < 0 || h >= p.H || w < 0 || w >= p.W) return A(0);
    return load(static_cast<const T*>(a.x.data) + offset4(a.x.stride, n, g * Cg + c, h, w));
  }
  __device__ void put(int64_t slice, int64_t g, int64_t k, int64_t crs, A v) const {
    if (partial) {
      partial[((slice * a.p.groups + g) * rows + k) * cols + crs] = v;
      return;
    }
    const Conv2dProblem& p = a.p;
    const int64_t s = crs % p.S, cr = crs / p.S, r = cr % p.R, c = cr / p.R;
    store(static_cast<T*>(a.dw.data) + offset4(a.dw.stride, g * Kg + k, c, r, s), v);
  }
};

// blockIdx: x the row tile, y the column tile, z = group * slices + slice. A slice covers
// reduction steps [slice * per_slice, (slice + 1) * per_slice) (kTileK-deep steps).
template <typename A, class Gemm>
__global__ void __launch_bounds__(kGemmThreads) conv2d_gemm__sm80_tiled(Gemm gm, int slices, int64_t per_slice) {
  __shared__ A lhs_tile[kTileK][kTileM + kPad];
  __shared__ A rhs_tile[kTileK][kTileN + kPad];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = int64_t(blockIdx.x) * kTileM, n0 = int64_t(blockIdx.y) * kTileN;
  const int64_t g = blockIdx.z / slices, slice = blockIdx.z % slices;
  const int64_t steps = (gm.depth + kTileK - 1) / kTileK;
  const int64_t first = std::min(steps, slice * per_slice), last = std::min(steps, first + per_slice);
  A acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = A(0);
  for (int64_t step = first; step < last; ++step) {
    const int64_t k0 = step * kTileK;
    // 16 x 64 elements of each operand, 4 per thread; rows (and columns) fastest.
#pragma unroll
    for (int e = threadIdx.x; e < kTileK * kTileM; e += kGemmThreads) {
      const int kk = e / kTileM, mm = e % kTileM;
      const int64_t m = m0 + mm, k = k0 + kk;
      lhs_tile[kk][mm] = m < gm.rows && k < gm.depth ? gm.lhs(g, m, k) : A(0);
    }
#pragma unroll
    for (int e = threadIdx.x; e < kTileK * kTileN; e += kGemmThreads) {
      const int kk = e / kTileN, nn = e % kTileN;
      const int64_t n = n0 + nn, k = k0 + kk;
      rhs_tile[kk][nn] = n < gm.cols && k < gm.depth ? gm.rhs(g, k, n) : A(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      A l[4], r[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) l[i] = lhs_tile[kk][ty + 16 * i], r[i] = rhs_tile[kk][tx + 16 * i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += l[i] * r[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
      if (m >= gm.rows || n >= gm.cols) continue;
      gm.put(slice, g, m, n, acc[i][j]);
    }
}

// ---- tensor cores: bf16 / f16, and float32 as TF32 ---------------------------------------------
// mma.sync fragments (PTX ISA, per lane: group = lane / 4, pair = lane % 4). m16n8k16 (bf16, f16):
// A 16 x 16 row-major in four 32-bit registers of two elements, {(group, 2 pair + 0..1), (group + 8,
// same), (group, 2 pair + 8..9), (group + 8, same)}; B 16 x 8 in two, {(k = 2 pair + 0..1, n =
// group), (k + 8, n)}; the lower element in the lower 16 bits, as two adjacent elements in memory
// load. m16n8k8 (tf32, one element per register): A {(group, pair), (group + 8, pair), (group,
// pair + 4), (group + 8, pair + 4)}; B {(k = pair, n = group), (pair + 4, group)}. C / D 16 x 8
// floats for both: {(group, 2 pair + 0..1), (group + 8, same)}.
constexpr int kMmaSkew = 8;  // row padding in elements: spreads a fragment load over the banks

// Shared-tile storage per element type: 16-bit patterns, or TF32 patterns in 32 bits.
template <typename T>
using MmaBits = std::conditional_t<std::is_same_v<T, float>, uint32_t, uint16_t>;

// float -> TF32, round to nearest with ties away from zero (cvt.rna.tf32.f32).
__device__ __forceinline__ uint32_t tf32_bits(float v) {
#ifdef CNNKERNELS_CUDA_HOST_EMULATION
  return ::cnnk_emu::round_to_tf32(v);
#else
  uint32_t u;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(u) : "f"(v));
  return u;
#endif
}

template <typename T>
__device__ __forceinline__ MmaBits<T> mma_bits(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return tf32_bits(v);
  } else {
    T t;
    store(&t, v);
    uint16_t u;
    memcpy(&u, &t, 2);
    return u;
  }
}

// d += a b over one k16 step of the warp's fragments.
template <typename T>
__device__ __forceinline__ void mma_k16(float d[4], const uint32_t a[2][4], const uint32_t b[2][2]) {
#ifdef CNNKERNELS_CUDA_HOST_EMULATION
  if constexpr (std::is_same_v<T, float>) {
    ::cnnk_emu::mma_m16n8k8_tf32(d, a[0], b[0]);
    ::cnnk_emu::mma_m16n8k8_tf32(d, a[1], b[1]);
  } else {
    ::cnnk_emu::mma_m16n8k16(std::is_same_v<T, __nv_bfloat16>, d, a[0], b[0]);
  }
#else
  if constexpr (std::is_same_v<T, float>) {
    for (int h = 0; h < 2; ++h)
      asm volatile(
          "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[h][0]), "r"(a[h][1]), "r"(a[h][2]), "r"(a[h][3]), "r"(b[h][0]), "r"(b[h][1]));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0][0]), "r"(a[0][1]), "r"(a[0][2]), "r"(a[0][3]), "r"(b[0][0]), "r"(b[0][1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0][0]), "r"(a[0][1]), "r"(a[0][2]), "r"(a[0][3]), "r"(b[0][0]), "r"(b[0][1]));
  }
#endif
}

// The fragments of one k16 step: for 16-bit types one m16n8k16 set ([0]); for TF32 two m16n8k8
// sets, k 0-7 ([0]) and 8-15 ([1]). rows: the two A rows (group, group + 8); col: B's column.
template <typename T, typename S>
__device__ __forceinline__ void load_a(uint32_t a[2][4], const S* r0, const S* r1, int pair) {
  if constexpr (std::is_same_v<T, float>) {
    for (int h = 0; h < 2; ++h)
      a[h][0] = r0[8 * h + pair], a[h][1] = r1[8 * h + pair], a[h][2] = r0[8 * h + pair + 4],
      a[h][3] = r1[8 * h + pair + 4];
  } else {
    const auto word = [](const S* p) { return *reinterpret_cast<const uint32_t*>(p); };
    a[0][0] = word(r0 + 2 * pair), a[0][1] = word(r1 + 2 * pair);
    a[0][2] = word(r0 + 2 * pair + 8), a[0][3] = word(r1 + 2 * pair + 8);
  }
}
template <typename T, typename S>
__device__ __forceinline__ void load_b(uint32_t b[2][2], const S* col, int pair) {
  if constexpr (std::is_same_v<T, float>) {
    for (int h = 0; h < 2; ++h) b[h][0] = col[8 * h + pair], b[h][1] = col[8 * h + pair + 4];
  } else {
    const auto word = [](const S* p) { return *reinterpret_cast<const uint32_t*>(p); };
    b[0][0] = word(col + 2 * pair), b[0][1] = word(col + 2 * pair + 8);
  }
}

// Warps: 2 along m (32 rows each) x 4 along n (16 columns each); per warp and k16 step, 2 x 2
// fragments' products.
template <typename T, class Gemm>
__global__ void __launch_bounds__(kGemmThreads) conv2d_gemm__sm80_mma(Gemm gm, int slices, int64_t per_slice) {
  using S = MmaBits<T>;
  __shared__ __align__(16) S lhs_tile[kTileM][kTileK + kMmaSkew];  // [m][k]
  __shared__ __align__(16) S rhs_tile[kTileN][kTileK + kMmaSkew];  // [n][k]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, pair = lane % 4;
  const int wm = (warp / 4) * 32, wn = (warp % 4) * 16;
  const int64_t m0 = int64_t(blockIdx.x) * kTileM, n0 = int64_t(blockIdx.y) * kTileN;
  const int64_t g = blockIdx.z / slices, slice = blockIdx.z % slices;
  const int64_t steps = (gm.depth + kTileK - 1) / kTileK;
  const int64_t first = std::min(steps, slice * per_slice), last = std::min(steps, first + per_slice);
  float acc[2][2][4] = {};
  for (int64_t step = first; step < last; ++step) {
    const int64_t k0 = step * kTileK;
    // k fastest: channels_last operands run along memory.
    for (int e = threadIdx.x; e < kTileK * kTileM; e += kGemmThreads) {
      const int mm = e / kTileK, kk = e % kTileK;
      const int64_t m = m0 + mm, k = k0 + kk;
      lhs_tile[mm][kk] = mma_bits<T>(m < gm.rows && k < gm.depth ? gm.lhs(g, m, k) : 0.f);
    }
    for (int e = threadIdx.x; e < kTileK * kTileN; e += kGemmThreads) {
      const int nn = e / kTileK, kk = e % kTileK;
      const int64_t n = n0 + nn, k = k0 + kk;
      rhs_tile[nn][kk] = mma_bits<T>(n < gm.cols && k < gm.depth ? gm.rhs(g, k, n) : 0.f);
    }
    __syncthreads();
    uint32_t a[2][2][4], b[2][2][2];
    for (int mi = 0; mi < 2; ++mi)
      load_a<T>(a[mi], lhs_tile[wm + mi * 16 + group], lhs_tile[wm + mi * 16 + group + 8], pair);
    for (int ni = 0; ni < 2; ++ni) load_b<T>(b[ni], rhs_tile[wn + ni * 8 + group], pair);
    for (int mi = 0; mi < 2; ++mi)
      for (int ni = 0; ni < 2; ++ni) mma_k16<T>(acc[mi][ni], a[mi], b[ni]);
    __syncthreads();
  }
  for (int mi = 0; mi < 2; ++mi)
    for (int ni = 0; ni < 2; ++ni)
      for (int v = 0; v < 4; ++v) {
        const int64_t m = m0 + wm + mi * 16 + group + (v / 2) * 8, n = n0 + wn + ni * 8 + 2 * pair + v % 2;
        if (m < gm.rows && n < gm.cols) gm.put(slice, g, m, n, acc[mi][ni][v]);
      }
}

// ---- the channels_last forward through a cp.async pipeline -------------------------------------
constexpr int kStages = 3;

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
#ifdef CNNKERNELS_CUDA_HOST_EMULATION
  ::cnnk_emu::cp_async(smem, gmem, 16, src_bytes);
#else
  const unsigned dst = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifdef CNNKERNELS_CUDA_HOST_EMULATION
  ::cnnk_emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#ifdef CNNKERNELS_CUDA_HOST_EMULATION
  ::cnnk_emu::cp_async_wait(kPending);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
#endif
}
// ldmatrix.x4: lane l names row l % 8 of 8 x 8 matrix l / 8 (8 contiguous 16-bit elements);
// register i receives matrix i's elements (l / 4, 2 (l % 4) + 0..1), an mma fragment's layout.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const uint16_t* row) {
#ifdef CNNKERNELS_CUDA_HOST_EMULATION
  ::cnnk_emu::ldmatrix_x4(r, row);
#else
  const unsigned addr = unsigned(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
#endif
}

template <typename T>
__global__ void __launch_bounds__(kGemmThreads)
    conv2d_fprop_nhwc__sm80_mma_pipelined(FpropGemm<T, float> gm) {
  __shared__ __align__(16) uint16_t lhs_tile[kStages][kTileM][kTileK + kMmaSkew];  // [m][k]
  __shared__ __align__(16) uint16_t rhs_tile[kStages][kTileN][kTileK + kMmaSkew];  // [n][k]
  const Conv2dProblem& p = gm.a.p;
  const T* x = static_cast<const T*>(gm.a.x.data);
  const T* w = static_cast<const T*>(gm.a.w.data);
  const int64_t* ws = gm.a.w.stride;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, pair = lane % 4;
  const int wm = (warp / 4) * 32, wn = (warp % 4) * 16;
  const int64_t m0 = int64_t(blockIdx.x) * kTileM, n0 = int64_t(blockIdx.y) * kTileN, g = blockIdx.z;
  const int64_t steps = (gm.depth + kTileK - 1) / kTileK;
  // Each thread copies one 16-byte chunk per stage: threads 0-127 the 64 x 16 input tile (row
  // t / 2, channels 8 (t % 2) onwards), threads 128-255 the weight tile. Its row's pixel (or
  // filter) is fixed for the whole loop.
  const bool is_lhs = threadIdx.x < 128;
  const int row = (threadIdx.x % 128) / 2, half = threadIdx.x % 2;
  const int64_t m = m0 + row, n = n0 + row;
  const bool row_ok = is_lhs ? m < gm.rows : n < gm.cols;
  int64_t img = 0, h_base = 0, w_base = 0;
  if (is_lhs && row_ok) {
    const int64_t q = m % p.Q, np = m / p.Q;
    img = np / p.P;
    h_base = (np % p.P) * p.stride_h - p.pad_h, w_base = q * p.stride_w - p.pad_w;
  }
  const auto load_stage = [&](int64_t step, int stage) {
    const int64_t k = step * kTileK + 8 * half;  // 8 channels of one tap: Cg % 8 == 0
    const int64_t c = k % gm.Cg, rs = k / gm.Cg, r = rs / p.S, s_ = rs % p.S;
    const T* src = x;
    int bytes = 0;
    if (row_ok && k < gm.depth) {
      if (is_lhs) {
        const int64_t h = h_base + r * p.dil_h, ww = w_base + s_ * p.dil_w;
        if (h >= 0 && h < p.H && ww >= 0 && ww < p.W)
          src = x + ((img * p.H + h) * p.W + ww) * p.C + g * gm.Cg + c, bytes = 16;
      } else {
        src = w + (g * gm.Kg + n) * ws[0] + r * ws[2] + s_ * ws[3] + c, bytes = 16;
      }
    }
    uint16_t* dst = is_lhs ? &lhs_tile[stage][row][8 * half] : &rhs_tile[stage][row][8 * half];
    cp_async_16(dst, src, bytes);  // bytes 0: sixteen zero bytes (padding, past the edge)
  };
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < steps) load_stage(st, st);
    cp_async_commit();  // one group per stage, empty or not: wait counts stay uniform
  }
  float acc[2][2][4] = {};
  for (int64_t step = 0; step < steps; ++step) {
    cp_async_wait<kStages - 2>();  // this thread's copies for `step` have landed
    __syncthreads();               // everyone's have; and stage (step - 1) % 3 is free
    const int stage = int(step % kStages);
    uint32_t a[2][2][4], b[2][2][2];
    for (int mi = 0; mi < 2; ++mi)
      ldmatrix_x4(a[mi][0], &lhs_tile[stage][wm + mi * 16 + lane % 16][(lane / 16) * 8]);
    uint32_t bq[4];
    ldmatrix_x4(bq, &rhs_tile[stage][wn + (lane / 16) * 8 + lane % 8][((lane / 8) % 2) * 8]);
    b[0][0][0] = bq[0], b[0][0][1] = bq[1], b[1][0][0] = bq[2], b[1][0][1] = bq[3];
    for (int mi = 0; mi < 2; ++mi)
      for (int ni = 0; ni < 2; ++ni) mma_k16<T>(acc[mi][ni], a[mi], b[ni]);
    const int64_t next = step + kStages - 1;
    if (next < steps) load_stage(next, int(next % kStages));
    cp_async_commit();
  }
  cp_async_wait<0>();
  for (int mi = 0; mi < 2; ++mi)
    for (int ni = 0; ni < 2; ++ni)
      for (int v = 0; v < 4; ++v) {
        const int64_t mm = m0 + wm + mi * 16 + group + (v / 2) * 8, nn = n0 + wn + ni * 8 + 2 * pair + v % 2;
        if (mm < gm.rows && nn < gm.cols) gm.put(0, g, mm, nn, acc[mi][ni][v]);
      }
}

// Whether the pipelined forward takes the layer: 16-bit channels_last activations and weights,
// whole 16-byte chunks of each group's channels.
bool pipelined_fprop_fits(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != DType::bf16 && p.dtype != DType::f16) return false;
  const int64_t Cg = p.C / p.groups;
  return Cg % 8 == 0 && strides_are(Dense::nhwc, a.x.stride, p.N, p.C, p.H, p.W) &&
         strides_are(Dense::nhwc, a.w.stride, p.K, Cg, p.R, p.S) && aligned(a.x.data, 16) && aligned(a.w.data, 16);
}

// The tiled kernel for the storage type: tensor cores for the 16-bit types, and for float32 where
// TF32 is allowed.
template <typename T, typename A, class Gemm>
auto gemm_kernel(bool allow_tf32) {
  if constexpr (std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>)
    return conv2d_gemm__sm80_mma<T, Gemm>;
  else if constexpr (std::is_same_v<T, float>)
    return allow_tf32 ? conv2d_gemm__sm80_mma<T, Gemm> : conv2d_gemm__sm80_tiled<A, Gemm>;
  else
    return conv2d_gemm__sm80_tiled<A, Gemm>;
}

// dw = the slices' partial sums added in slice order (bit-reproducible).
template <typename T, typename A>
__global__ void conv2d_gemm_finish__sm80(WgradGemm<T, A> gm, int slices) {
  const Conv2dProblem& p = gm.a.p;
  const int64_t per_slice = p.groups * gm.rows * gm.cols;
  for (int64_t i = global_thread(); i < per_slice; i += grid_threads()) {
    A sum = A(0);
    for (int s = 0; s < slices; ++s) sum += gm.partial[s * per_slice + i];
    const int64_t crs = i % gm.cols, gk = i / gm.cols;  // gk = g * rows + k: the filter index
    const int64_t s_ = crs % p.S, cr = crs / p.S, r = cr % p.R, c = cr / p.R;
    store(static_cast<T*>(gm.a.dw.data) + offset4(gm.a.dw.stride, gk, c, r, s_), sum);
  }
}

dim3 tiles(int64_t rows, int64_t cols, int64_t z) {
  return dim3(unsigned((rows + kTileM - 1) / kTileM), unsigned((cols + kTileN - 1) / kTileN), unsigned(z));
}

// grid.x takes 2^31 - 1 tiles, y and z 65535.
bool grid_fits(int64_t rows, int64_t cols, int64_t z) {
  return (rows + kTileM - 1) / kTileM < (int64_t(1) << 31) && (cols + kTileN - 1) / kTileN <= 65535 && z <= 65535;
}

// The weight gradient's slices: enough blocks for ~4 per SM on 132 SMs, each slice at least 8
// reduction steps (128 pixels).
struct WgradSplit {
  int slices;
  int64_t per_slice;  // reduction steps per slice
};
WgradSplit wgrad_split(const Conv2dProblem& p) {
  const int64_t rows = p.K / p.groups, cols = p.C / p.groups * p.R * p.S;
  const int64_t steps = (p.N * p.P * p.Q + kTileK - 1) / kTileK;
  const int64_t blocks = ((rows + kTileM - 1) / kTileM) * ((cols + kTileN - 1) / kTileN) * p.groups;
  const int64_t want = std::min((528 + blocks - 1) / blocks, std::max<int64_t>(1, steps / 8));
  const int64_t slices = std::max<int64_t>(1, std::min<int64_t>(want, 65535 / p.groups));
  const int64_t per_slice = std::max<int64_t>(1, (steps + slices - 1) / slices);
  return {int(std::max<int64_t>(1, (steps + per_slice - 1) / per_slice)), per_slice};  // no empty slice
}

}  // namespace

Launched gemm_fprop(const Conv2dFpropArgs& args, bool allow_tf32, cudaStream_t stream) {
  const Conv2dProblem& p = args.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t rows = p.N * p.P * p.Q, cols = Kg, depth = Cg * p.R * p.S;
  if (!grid_fits(rows, cols, p.groups)) return {false, cudaSuccess};
  const cudaError_t err = dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename AccOf<T>::type;
    const FpropGemm<T, A> gm{args, rows, cols, depth, Cg, Kg};
    const int64_t steps = (depth + kTileK - 1) / kTileK;
    if constexpr (std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>) {
      if (pipelined_fprop_fits(args)) {
        CNNK_LAUNCH(tiles(rows, cols, p.groups), kGemmThreads, 0, stream, conv2d_fprop_nhwc__sm80_mma_pipelined<T>)(gm);
        return last_launch_error();
      }
    }
    CNNK_LAUNCH(tiles(rows, cols, p.groups), kGemmThreads, 0, stream, gemm_kernel<T, A, FpropGemm<T, A>>(allow_tf32))(gm, 1, steps);
    return last_launch_error();
  });
  return {true, err};
}

Launched gemm_dgrad(const Conv2dDgradArgs& args, bool allow_tf32, cudaStream_t stream) {
  const Conv2dProblem& p = args.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t rows = p.N * p.H * p.W, cols = Cg, depth = Kg * p.R * p.S;
  if (!grid_fits(rows, cols, p.groups)) return {false, cudaSuccess};
  const cudaError_t err = dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename AccOf<T>::type;
    const DgradGemm<T, A> gm{args, rows, cols, depth, Cg, Kg};
    const int64_t steps = (depth + kTileK - 1) / kTileK;
    CNNK_LAUNCH(tiles(rows, cols, p.groups), kGemmThreads, 0, stream, gemm_kernel<T, A, DgradGemm<T, A>>(allow_tf32))(gm, 1, steps);
    return last_launch_error();
  });
  return {true, err};
}

size_t gemm_wgrad_workspace_bytes(const Conv2dWgradArgs& args) {
  const Conv2dProblem& p = args.p;
  const WgradSplit split = wgrad_split(p);
  if (split.slices <= 1) return 0;
  const size_t acc = p.dtype == DType::f64 ? 8 : 4;
  return size_t(split.slices) * size_t(p.K) * size_t(p.C / p.groups * p.R * p.S) * acc;
}

Launched gemm_wgrad(const Conv2dWgradArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  const Conv2dProblem& p = args.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t rows = Kg, cols = Cg * p.R * p.S, depth = p.N * p.P * p.Q;
  WgradSplit split = wgrad_split(p);
  const size_t need = gemm_wgrad_workspace_bytes(args);
  if (need > 0 && (workspace == nullptr || workspace_bytes < need)) split = {1, (depth + kTileK - 1) / kTileK};
  if (!grid_fits(rows, cols, int64_t(p.groups) * split.slices)) return {false, cudaSuccess};
  const cudaError_t err = dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename AccOf<T>::type;
    A* partial = split.slices > 1 ? static_cast<A*>(workspace) : nullptr;
    const WgradGemm<T, A> gm{args, rows, cols, depth, Cg, Kg, partial};
    CNNK_LAUNCH(tiles(rows, cols, int64_t(p.groups) * split.slices), kGemmThreads, 0, stream,
                gemm_kernel<T, A, WgradGemm<T, A>>(allow_tf32))(gm, split.slices, split.per_slice);
    if (partial)
      CNNK_LAUNCH(grid_for(p.K * cols, kThreads), kThreads, 0, stream, conv2d_gemm_finish__sm80<T, A>)(gm, split.slices);
    return last_launch_error();
  });
  return {true, err};
}

}  // namespace cuda
}  // namespace cnnkernels
