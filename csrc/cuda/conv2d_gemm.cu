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
//                                 fragments read from shared tiles stored k-fastest
//   conv2d_gemm__sm80_mma_pipelined  all three GEMMs of bf16 / f16 (and TF32) channels_last
//                                 layers whose operands come in whole 16-byte chunks (C/G and K/G
//                                 % 8 == 0, TF32 % 4, channels_last weights): operands copied
//                                 straight into shared memory by cp.async (zero-fill for padding)
//                                 through a 2-3 stage pipeline, fragments by ldmatrix (.trans where
//                                 a 16-bit chunk runs along the tile's rows), 64 x 64 or 128 x 128
//                                 tiles
//   conv2d_gemm_finish__sm80      wgrad's slices summed in order into dw
#include "conv2d_gemm.cuh"
#include "cuda_dtype.cuh"
#include "cuda_kernels.h"  // gemm_tiles
#include "cuda_launch.cuh"
#include "cuda_layout.cuh"

#include <algorithm>
#include <cstring>
#include <optional>
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
  A* partial;     // [slice][group][row][col] where the reduction is split, else nullptr
  bool cols_rsc;  // columns (r, s, c), c fastest (the pipeline's order); else (c, r, s)
  __device__ __forceinline__ void tap(int64_t col, int64_t& c, int64_t& r, int64_t& s) const {
    const Conv2dProblem& p = a.p;
    if (cols_rsc) {
      c = col % Cg, s = (col / Cg) % p.S, r = col / Cg / p.S;
    } else {
      s = col % p.S, r = (col / p.S) % p.R, c = col / p.S / p.R;
    }
  }
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
    int64_t c, r, s;
    tap(crs, c, r, s);
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
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 2; ++ni)
#pragma unroll
      for (int v = 0; v < 4; ++v) {
        const int64_t m = m0 + wm + mi * 16 + group + (v / 2) * 8, n = n0 + wn + ni * 8 + 2 * pair + v % 2;
        if (m < gm.rows && n < gm.cols) gm.put(slice, g, m, n, acc[mi][ni][v]);
      }
}

// ---- channels_last layers through a cp.async pipeline ------------------------------------------
// bf16 / f16 (and float32 as TF32) layers whose operands come in whole 16-byte chunks (8 or 4
// elements contiguous in memory): channels_last activations and weights, C/G (and for dgrad / wgrad
// K/G) a multiple of 8 (TF32: 4). Each thread copies one or two 16-byte chunks of each operand per
// stage straight into shared memory with cp.async (zero-filled for padding, edges and tails),
// kStages deep; fragments come from ldmatrix.
// A chunk's 8 elements run along the reduction (fprop's x and w, dgrad's dy) or along the tile's
// rows / columns (dgrad's w along c, wgrad's dy along k and x along c); the shared tile keeps the
// chunk's order and ldmatrix.trans turns the second kind into fragments.

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
// With .trans (kTrans), register i receives (2 (l % 4) + 0..1, l / 4): the transposed matrix's.
template <bool kTrans>
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const uint16_t* row) {
#ifdef CNNKERNELS_CUDA_HOST_EMULATION
  ::cnnk_emu::ldmatrix_exchange<kTrans>(r, row);
#else
  const unsigned addr = unsigned(__cvta_generic_to_shared(row));
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
#endif
}

// Block tiles of the pipeline for shared elements S (16-bit patterns, or float32 bits for TF32):
// kM x kN outputs, kK reduction elements per stage, 8 warps as 2 (m) x 4 (n). A 16-byte chunk holds
// kVec elements; each thread copies kChunks (1 or 2) chunks of each operand per stage.
template <typename S, int M, int N, int K, int Stages>
struct PipeTiles {
  using Elem = S;
  static constexpr int kM = M, kN = N, kK = K, kStages = Stages, kThreads = 256;
  static constexpr int kVec = 16 / int(sizeof(S));
  static constexpr int kChunks = M * K / kVec / kThreads;
  static constexpr int kWarpM = M / 2, kWarpN = N / 4;            // one warp's outputs
  static constexpr int kFragsM = kWarpM / 16, kFragsN = kWarpN / 8;  // its m16 x n8 fragments
  static_assert(M == N && kChunks >= 1 && kChunks * kVec * kThreads == M * K, "whole chunks per thread");
  static_assert(K % 16 == 0 && kFragsN % 2 == 0, "k16 steps; B fragments in pairs (ldmatrix.x4)");
};
// 16-bit: 27-30 KB of shared memory (small), 26-36 KB (large); TF32: 30 KB, 40 KB (two stages: three
// would pass the 48 KB of static shared memory).
template <typename T>
using SmallPipeTiles = std::conditional_t<std::is_same_v<T, float>, PipeTiles<uint32_t, 64, 64, 16, 3>,
                                          PipeTiles<uint16_t, 64, 64, 32, 3>>;  // warp 32 x 16
template <typename T>
using LargePipeTiles = std::conditional_t<std::is_same_v<T, float>, PipeTiles<uint32_t, 128, 128, 16, 2>,
                                          PipeTiles<uint16_t, 128, 128, 16, 3>>;  // warp 64 x 32

// A TF32 operand register: the float32 bits rounded as cvt.rna.tf32.f32 does.
__device__ __forceinline__ uint32_t tf32_round_bits(uint32_t u) {
  float v;
  memcpy(&v, &u, 4);
  return tf32_bits(v);
}

// One operand's stage in shared memory, kRows (m or n) x kK elements S, in the order of its chunks:
// reduction-fastest [row][k] (ldmatrix) or rows-fastest [k][row] (ldmatrix.trans for 16-bit
// elements; 32-bit loads for TF32, which ldmatrix cannot transpose). The padding of each row puts
// the 8 rows an ldmatrix (or the 4 k x 8 rows of a TF32 fragment) reads in distinct banks.
template <typename S, bool kRowsFastest, int kRows, int kK>
struct StageTile {
  static constexpr int kVec = 16 / int(sizeof(S));
  static constexpr int kPitch = kRowsFastest ? kRows + 8 : kK + kVec;
  static constexpr int kElems = (kRowsFastest ? kK : kRows) * kPitch;
  static constexpr bool kTf32 = sizeof(S) == 4;
  __device__ static int at(int row, int k) { return kRowsFastest ? k * kPitch + row : row * kPitch + k; }
  // Chunk e's first element (kVec elements along k, or along the rows).
  __device__ static void chunk(int e, int& row, int& k) {
    if (kRowsFastest)
      k = e / (kRows / kVec), row = kVec * (e % (kRows / kVec));
    else
      row = e / (kK / kVec), k = kVec * (e % (kK / kVec));
  }
  __device__ static const uint16_t* bytes(const S* tile, int row, int k) {
    return reinterpret_cast<const uint16_t*>(tile + at(row, k));
  }
  // A's fragments for rows [r0, r0 + 16) x k [k0, k0 + 16), in mma_k16's layout: 16-bit, a[0] =
  // {rows 0-7, k 0-7}, {8-15, 0-7}, {0-7, 8-15}, {8-15, 8-15}; TF32, a[h] the same for k 8h + 0-3
  // and 8h + 4-7 (16 bytes each, so the same ldmatrix).
  __device__ static void load_a(uint32_t a[2][4], const S* tile, int r0, int k0, int lane) {
    const int group = lane / 4, pair = lane % 4;
    if constexpr (!kTf32) {
      if (kRowsFastest)
        ldmatrix_x4<true>(a[0], bytes(tile, r0 + ((lane / 8) % 2) * 8, k0 + (lane / 16) * 8 + lane % 8));
      else
        ldmatrix_x4<false>(a[0], bytes(tile, r0 + lane % 16, k0 + (lane / 16) * 8));
    } else {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        if (kRowsFastest) {
          const int k = k0 + 8 * h + pair;
          a[h][0] = tile[at(r0 + group, k)], a[h][1] = tile[at(r0 + group + 8, k)];
          a[h][2] = tile[at(r0 + group, k + 4)], a[h][3] = tile[at(r0 + group + 8, k + 4)];
        } else {
          ldmatrix_x4<false>(a[h], bytes(tile, r0 + lane % 16, k0 + 8 * h + (lane / 16) * 4));
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) a[h][i] = tf32_round_bits(a[h][i]);
      }
    }
  }
  // B's fragments for columns [n0, n0 + 8) (b0) and [n0 + 8, n0 + 16) (b1): 16-bit, [0] = {k 0-7,
  // 8-15}; TF32, [h] = {k 8h + 0-3, 8h + 4-7}.
  __device__ static void load_b(uint32_t b0[2][2], uint32_t b1[2][2], const S* tile, int n0, int k0, int lane) {
    const int group = lane / 4, pair = lane % 4;
#pragma unroll
    for (int h = 0; h < (kTf32 ? 2 : 1); ++h) {
      uint32_t q[4];
      if (kTf32 && kRowsFastest) {
        const int k = k0 + 8 * h + pair;
        q[0] = tile[at(n0 + group, k)], q[1] = tile[at(n0 + group, k + 4)];
        q[2] = tile[at(n0 + 8 + group, k)], q[3] = tile[at(n0 + 8 + group, k + 4)];
      } else if (kRowsFastest) {
        ldmatrix_x4<true>(q, bytes(tile, n0 + (lane / 16) * 8, k0 + ((lane / 8) % 2) * 8 + lane % 8));
      } else {
        ldmatrix_x4<false>(q, bytes(tile, n0 + (lane / 16) * 8 + lane % 8, k0 + 8 * h + ((lane / 8) % 2) * kVec));
      }
      if constexpr (kTf32) {
#pragma unroll
        for (int i = 0; i < 4; ++i) q[i] = tf32_round_bits(q[i]);
      }
      b0[h][0] = q[0], b0[h][1] = q[1], b1[h][0] = q[2], b1[h][1] = q[3];
    }
  }
};

// Where each GEMM's chunks come from. A thread's chunk keeps its fixed part (its row m or column
// n) and counters for its reduction index kk, which only grows, by Tiles::kK per stage: start(kk)
// once, then src() (the chunk's address, or nullptr for sixteen zero bytes) and advance(kK) per
// stage. Counters instead of divisions: 64-bit division is a long instruction sequence on the GPU,
// and every chunk of every stage needs the decomposition. Activations are dense channels_last,
// weights dense K R S C; sizes other than whole-tensor offsets fit in 32 bits (pipeline_types_fit).
//
// The epilogue splits each output offset into a row part and a column part (out_row, out_col),
// each computed once per row / column a thread holds, and stores through store().

// Two adjacent outputs as one access where their address allows (an accumulator pair's columns are
// adjacent channels in a channels_last output).
template <typename T>
__device__ __forceinline__ void store_pair(T* p, float v0, float v1) {
  if (reinterpret_cast<uintptr_t>(p) % (2 * sizeof(T)) == 0) {
    VecOf<T, 2> v;
    store(&v.v[0], v0), store(&v.v[1], v1);
    *reinterpret_cast<VecOf<T, 2>*>(p) = v;
  } else {
    store(p, v0), store(p + 1, v1);
  }
}

// kk = ((r S) + s) per + i, i < per (the group's channels or filters): counted, not divided.
struct TapCount {
  int i, s, r;
  __device__ void start(int64_t kk, int per, int S) {
    i = int(kk % per);
    const int64_t rs = kk / per;
    s = int(rs % S), r = int(rs / S);
  }
  __device__ void advance(int by, int per, int S) {
    i += by;
    while (i >= per) {
      i -= per;
      if (++s == S) s = 0, ++r;
    }
  }
};

// j = (n P + p) Q + q over the output pixels, counted.
struct PixelCount {
  int q, p;
  int64_t n;
  __device__ void start(int64_t j, int P, int Q) {
    q = int(j % Q);
    const int64_t np = j / Q;
    p = int(np % P), n = np / P;
  }
  __device__ void advance(int by, int P, int Q) {
    q += by;
    while (q >= Q) {
      q -= Q;
      if (++p == P) p = 0, ++n;
    }
  }
};

// fprop: rows m = (n, p, q), columns k, reduction (r, s, c): both chunks along c.
template <typename T>
struct FpropPipe {
  static constexpr bool kLhsRowsFastest = false, kRhsRowsFastest = false;
  FpropGemm<T, float> gm;
  struct Lhs {
    const T* image;  // x of pixel m's image, group g's channels
    int h0, w0;      // the window's corner
    bool ok;
    TapCount t;
  };
  struct Rhs {
    const T* filter;
    bool ok;
    TapCount t;
  };
  __device__ Lhs lhs_chunk(int64_t g, int64_t m, int64_t kk) const {
    const Conv2dProblem& p = gm.a.p;
    Lhs l{nullptr, 0, 0, m < gm.rows, {}};
    if (l.ok) {
      const int64_t q = m % p.Q, np = m / p.Q, pp = np % p.P, n = np / p.P;
      l.image = static_cast<const T*>(gm.a.x.data) + n * p.H * p.W * p.C + g * gm.Cg;
      l.h0 = int(pp * p.stride_h - p.pad_h), l.w0 = int(q * p.stride_w - p.pad_w);
    }
    l.t.start(kk, int(gm.Cg), int(p.S));
    return l;
  }
  __device__ const T* lhs_src(const Lhs& l) const {
    const Conv2dProblem& p = gm.a.p;
    if (!l.ok || l.t.r >= p.R) return nullptr;
    const int h = l.h0 + l.t.r * int(p.dil_h), w = l.w0 + l.t.s * int(p.dil_w);
    if (h < 0 || h >= p.H || w < 0 || w >= p.W) return nullptr;
    return l.image + (int64_t(h) * p.W + w) * p.C + l.t.i;
  }
  __device__ void lhs_advance(Lhs& l, int by) const { l.t.advance(by, int(gm.Cg), int(gm.a.p.S)); }
  __device__ Rhs rhs_chunk(int64_t g, int64_t k, int64_t kk) const {
    Rhs r{static_cast<const T*>(gm.a.w.data) + (g * gm.Kg + k) * gm.a.w.stride[0], k < gm.cols, {}};
    r.t.start(kk, int(gm.Cg), int(gm.a.p.S));
    return r;
  }
  __device__ const T* rhs_src(const Rhs& r) const {
    if (!r.ok || r.t.r >= gm.a.p.R) return nullptr;
    return r.filter + r.t.r * gm.a.w.stride[2] + r.t.s * gm.a.w.stride[3] + r.t.i;
  }
  __device__ void rhs_advance(Rhs& r, int by) const { r.t.advance(by, int(gm.Cg), int(gm.a.p.S)); }
  // y[n, g Kg + k, p, q] (+ bias[g Kg + k])
  __device__ int64_t out_row(int64_t /*slice*/, int64_t g, int64_t m) const {
    const Conv2dProblem& p = gm.a.p;
    const int64_t q = m % p.Q, np = m / p.Q, pp = np % p.P, n = np / p.P;
    const int64_t* ys = gm.a.y.stride;
    return n * ys[0] + g * gm.Kg * ys[1] + pp * ys[2] + q * ys[3];
  }
  __device__ int64_t out_col(int64_t /*g*/, int64_t k) const { return k * gm.a.y.stride[1]; }
  __device__ float col_bias(int64_t g, int64_t k) const {
    return gm.a.bias ? float(load(static_cast<const T*>(gm.a.bias) + g * gm.Kg + k)) : 0.f;
  }
  __device__ void store(int64_t off, float v) const { ::cnnkernels::cuda::store(static_cast<T*>(gm.a.y.data) + off, v); }
  __device__ void store2(int64_t off, float v0, float v1) const { store_pair(static_cast<T*>(gm.a.y.data) + off, v0, v1); }
  __device__ const void* any() const { return gm.a.x.data; }
};

// dgrad: rows m = (n, h, w), columns c, reduction (r, s, k): dy's chunks along k, w's along c.
// Strided layers zero the taps no output reaches (whole chunks: one tap each).
template <typename T>
struct DgradPipe {
  static constexpr bool kLhsRowsFastest = false, kRhsRowsFastest = true;
  DgradGemm<T, float> gm;
  struct Lhs {
    const T* image;  // dy of pixel m's image, group g's filters
    int hp0, wp0;    // h + pad_h, w + pad_w
    bool ok;
    TapCount t;
  };
  struct Rhs {
    const T* column;  // w at channel c of group g's filter 0
    bool ok;
    TapCount t;
  };
  __device__ Lhs lhs_chunk(int64_t g, int64_t m, int64_t kk) const {
    const Conv2dProblem& p = gm.a.p;
    Lhs l{nullptr, 0, 0, m < gm.rows, {}};
    if (l.ok) {
      const int64_t w = m % p.W, nh = m / p.W, h = nh % p.H, n = nh / p.H;
      l.image = static_cast<const T*>(gm.a.dy.data) + n * p.P * p.Q * p.K + g * gm.Kg;
      l.hp0 = int(h + p.pad_h), l.wp0 = int(w + p.pad_w);
    }
    l.t.start(kk, int(gm.Kg), int(p.S));
    return l;
  }
  __device__ const T* lhs_src(const Lhs& l) const {
    const Conv2dProblem& p = gm.a.p;
    if (!l.ok || l.t.r >= p.R) return nullptr;
    int hp = l.hp0 - l.t.r * int(p.dil_h), wp = l.wp0 - l.t.s * int(p.dil_w);
    if (hp < 0 || wp < 0) return nullptr;
    if (p.stride_h != 1) {
      if (hp % int(p.stride_h)) return nullptr;
      hp /= int(p.stride_h);
    }
    if (p.stride_w != 1) {
      if (wp % int(p.stride_w)) return nullptr;
      wp /= int(p.stride_w);
    }
    if (hp >= p.P || wp >= p.Q) return nullptr;
    return l.image + (int64_t(hp) * p.Q + wp) * p.K + l.t.i;
  }
  __device__ void lhs_advance(Lhs& l, int by) const { l.t.advance(by, int(gm.Kg), int(gm.a.p.S)); }
  __device__ Rhs rhs_chunk(int64_t g, int64_t c, int64_t kk) const {
    Rhs r{static_cast<const T*>(gm.a.w.data) + g * gm.Kg * gm.a.w.stride[0] + c, c < gm.cols, {}};
    r.t.start(kk, int(gm.Kg), int(gm.a.p.S));
    return r;
  }
  __device__ const T* rhs_src(const Rhs& r) const {
    if (!r.ok || r.t.r >= gm.a.p.R) return nullptr;
    const int64_t* ws = gm.a.w.stride;
    return r.column + r.t.i * ws[0] + r.t.r * ws[2] + r.t.s * ws[3];
  }
  __device__ void rhs_advance(Rhs& r, int by) const { r.t.advance(by, int(gm.Kg), int(gm.a.p.S)); }
  // dx[n, g Cg + c, h, w]
  __device__ int64_t out_row(int64_t /*slice*/, int64_t g, int64_t m) const {
    const Conv2dProblem& p = gm.a.p;
    const int64_t w = m % p.W, nh = m / p.W, h = nh % p.H, n = nh / p.H;
    const int64_t* xs = gm.a.dx.stride;
    return n * xs[0] + g * gm.Cg * xs[1] + h * xs[2] + w * xs[3];
  }
  __device__ int64_t out_col(int64_t /*g*/, int64_t c) const { return c * gm.a.dx.stride[1]; }
  __device__ float col_bias(int64_t, int64_t) const { return 0.f; }
  __device__ void store(int64_t off, float v) const { ::cnnkernels::cuda::store(static_cast<T*>(gm.a.dx.data) + off, v); }
  __device__ void store2(int64_t off, float v0, float v1) const { store_pair(static_cast<T*>(gm.a.dx.data) + off, v0, v1); }
  __device__ const void* any() const { return gm.a.dy.data; }
};

// wgrad: rows k, columns (r, s, c) (gm.cols_rsc), reduction over the N P Q pixels j: dy's chunks
// along k, x's along c.
template <typename T>
struct WgradPipe {
  static constexpr bool kLhsRowsFastest = true, kRhsRowsFastest = true;
  WgradGemm<T, float> gm;
  struct Lhs {
    const T* at;  // dy at pixel j, filter k of group g
    int64_t j;
    bool ok;
  };
  struct Rhs {
    const T* channel;  // x's channel c of group g, image 0, pixel (0, 0)
    int dh, dw;        // tap offsets r dil_h - pad_h, s dil_w - pad_w
    bool ok;
    PixelCount j;
  };
  __device__ Lhs lhs_chunk(int64_t g, int64_t k, int64_t j) const {
    return {static_cast<const T*>(gm.a.dy.data) + g * gm.Kg + k + j * gm.a.p.K, j, k < gm.rows};
  }
  __device__ const T* lhs_src(const Lhs& l) const { return l.ok && l.j < gm.depth ? l.at : nullptr; }
  __device__ void lhs_advance(Lhs& l, int by) const { l.j += by, l.at += int64_t(by) * gm.a.p.K; }
  __device__ Rhs rhs_chunk(int64_t g, int64_t col, int64_t j) const {
    const Conv2dProblem& p = gm.a.p;
    Rhs r{nullptr, 0, 0, col < gm.cols, {}};
    if (r.ok) {
      const int64_t c = col % gm.Cg, rs = col / gm.Cg;
      r.channel = static_cast<const T*>(gm.a.x.data) + g * gm.Cg + c;
      r.dh = int((rs / p.S) * p.dil_h - p.pad_h), r.dw = int((rs % p.S) * p.dil_w - p.pad_w);
    }
    r.j.start(j, int(p.P), int(p.Q));
    return r;
  }
  __device__ const T* rhs_src(const Rhs& r) const {
    const Conv2dProblem& p = gm.a.p;
    if (!r.ok || r.j.n >= p.N) return nullptr;
    const int h = r.j.p * int(p.stride_h) + r.dh, w = r.j.q * int(p.stride_w) + r.dw;
    if (h < 0 || h >= p.H || w < 0 || w >= p.W) return nullptr;
    return r.channel + ((r.j.n * p.H + h) * p.W + w) * p.C;
  }
  __device__ void rhs_advance(Rhs& r, int by) const { r.j.advance(by, int(gm.a.p.P), int(gm.a.p.Q)); }
  // partial[slice][g][k][col], or dw[g Kg + k, c, r, s]
  __device__ int64_t out_row(int64_t slice, int64_t g, int64_t k) const {
    if (gm.partial) return ((slice * gm.a.p.groups + g) * gm.rows + k) * gm.cols;
    return (g * gm.Kg + k) * gm.a.dw.stride[0];
  }
  __device__ int64_t out_col(int64_t /*g*/, int64_t col) const {
    if (gm.partial) return col;
    int64_t c, r, s;
    gm.tap(col, c, r, s);
    return c * gm.a.dw.stride[1] + r * gm.a.dw.stride[2] + s * gm.a.dw.stride[3];
  }
  __device__ float col_bias(int64_t, int64_t) const { return 0.f; }
  __device__ void store(int64_t off, float v) const {
    if (gm.partial)
      gm.partial[off] = v;
    else
      ::cnnkernels::cuda::store(static_cast<T*>(gm.a.dw.data) + off, v);
  }
  __device__ void store2(int64_t off, float v0, float v1) const {
    if (gm.partial)
      store_pair(gm.partial + off, v0, v1);
    else
      store_pair(static_cast<T*>(gm.a.dw.data) + off, v0, v1);
  }
  __device__ const void* any() const { return gm.a.x.data; }
};

// blockIdx as conv2d_gemm__sm80_tiled's; per_slice counts Tiles::kK-deep steps.
template <typename T, class Tiles, class Pipe>
__global__ void __launch_bounds__(Tiles::kThreads)
    conv2d_gemm__sm80_mma_pipelined(Pipe pipe, int slices, int64_t per_slice) {
  using S = typename Tiles::Elem;
  constexpr int kK = Tiles::kK, kStages = Tiles::kStages, kChunks = Tiles::kChunks;
  using LhsTile = StageTile<S, Pipe::kLhsRowsFastest, Tiles::kM, kK>;
  using RhsTile = StageTile<S, Pipe::kRhsRowsFastest, Tiles::kN, kK>;
  __shared__ __align__(16) S lhs_tile[kStages][LhsTile::kElems];
  __shared__ __align__(16) S rhs_tile[kStages][RhsTile::kElems];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, pair = lane % 4;
  const int wm = (warp / 4) * Tiles::kWarpM, wn = (warp % 4) * Tiles::kWarpN;
  const int64_t m0 = int64_t(blockIdx.x) * Tiles::kM, n0 = int64_t(blockIdx.y) * Tiles::kN;
  const int64_t g = blockIdx.z / slices, slice = blockIdx.z % slices;
  const int64_t steps = (pipe.gm.depth + kK - 1) / kK;
  const int64_t first = std::min(steps, slice * per_slice), last = std::min(steps, first + per_slice);
  // This thread's chunks: chunk e = threadIdx.x + i kThreads, at a fixed (row, k-in-stage) of
  // every stage; their counters start at stage `first`.
  int lrow[kChunks], lk[kChunks], rrow[kChunks], rk[kChunks];
  typename Pipe::Lhs lhs[kChunks];
  typename Pipe::Rhs rhs[kChunks];
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    LhsTile::chunk(threadIdx.x + i * Tiles::kThreads, lrow[i], lk[i]);
    RhsTile::chunk(threadIdx.x + i * Tiles::kThreads, rrow[i], rk[i]);
    lhs[i] = pipe.lhs_chunk(g, m0 + lrow[i], first * kK + lk[i]);
    rhs[i] = pipe.rhs_chunk(g, n0 + rrow[i], first * kK + rk[i]);
  }
  // The stages are loaded in order, each once: the counters step with them.
  const auto load_stage = [&](int stage) {
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const void* a = pipe.lhs_src(lhs[i]);
      const void* b = pipe.rhs_src(rhs[i]);
      // a null source: sixteen zero bytes (padding, edges, tails), read from nowhere
      cp_async_16(&lhs_tile[stage][LhsTile::at(lrow[i], lk[i])], a ? a : pipe.any(), a ? 16 : 0);
      cp_async_16(&rhs_tile[stage][RhsTile::at(rrow[i], rk[i])], b ? b : pipe.any(), b ? 16 : 0);
      pipe.lhs_advance(lhs[i], kK);
      pipe.rhs_advance(rhs[i], kK);
    }
  };
  for (int st = 0; st < kStages - 1; ++st) {
    if (first + st < last) load_stage(st);
    cp_async_commit();  // one group per stage, empty or not: wait counts stay uniform
  }
  float acc[Tiles::kFragsM][Tiles::kFragsN][4] = {};
  for (int64_t step = first; step < last; ++step) {
    cp_async_wait<kStages - 2>();  // this thread's copies for `step` have landed
    __syncthreads();               // everyone's have; and the stage of step - 1 is free again
    const int64_t next = step + kStages - 1;
    if (next < last) load_stage(int((next - first) % kStages));  // into step - 1's stage
    cp_async_commit();
    const int stage = int((step - first) % kStages);
#pragma unroll
    for (int k16 = 0; k16 < kK; k16 += 16) {
      uint32_t a[Tiles::kFragsM][2][4], b[Tiles::kFragsN][2][2];
#pragma unroll
      for (int mi = 0; mi < Tiles::kFragsM; ++mi) LhsTile::load_a(a[mi], lhs_tile[stage], wm + mi * 16, k16, lane);
#pragma unroll
      for (int ni = 0; ni < Tiles::kFragsN; ni += 2)
        RhsTile::load_b(b[ni], b[ni + 1], rhs_tile[stage], wn + ni * 8, k16, lane);
#pragma unroll
      for (int mi = 0; mi < Tiles::kFragsM; ++mi)
#pragma unroll
        for (int ni = 0; ni < Tiles::kFragsN; ++ni) mma_k16<T>(acc[mi][ni], a[mi], b[ni]);
    }
  }
  cp_async_wait<0>();
  // Accumulator v of fragment (mi, ni) is row wm + 16 mi + group + 8 (v / 2), column wn + 8 ni +
  // 2 pair + v % 2: each row and column's offset part once.
  int64_t col_off[Tiles::kFragsN][2];
  float col_bias[Tiles::kFragsN][2];
  bool col_ok[Tiles::kFragsN][2];
#pragma unroll
  for (int ni = 0; ni < Tiles::kFragsN; ++ni)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int64_t n = n0 + wn + ni * 8 + 2 * pair + e;
      col_ok[ni][e] = n < pipe.gm.cols;
      col_off[ni][e] = col_ok[ni][e] ? pipe.out_col(g, n) : 0;
      col_bias[ni][e] = col_ok[ni][e] ? pipe.col_bias(g, n) : 0.f;
    }
#pragma unroll
  for (int mi = 0; mi < Tiles::kFragsM; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t m = m0 + wm + mi * 16 + group + 8 * h;
      if (m >= pipe.gm.rows) continue;
      const int64_t row = pipe.out_row(slice, g, m);
#pragma unroll
      for (int ni = 0; ni < Tiles::kFragsN; ++ni) {
        const float v0 = acc[mi][ni][2 * h] + col_bias[ni][0], v1 = acc[mi][ni][2 * h + 1] + col_bias[ni][1];
        if (col_ok[ni][1] && col_off[ni][1] == col_off[ni][0] + 1) {
          pipe.store2(row + col_off[ni][0], v0, v1);
        } else {
          if (col_ok[ni][0]) pipe.store(row + col_off[ni][0], v0);
          if (col_ok[ni][1]) pipe.store(row + col_off[ni][1], v1);
        }
      }
    }
}

// ---- channels_last inside: operands copied for the pipeline ------------------------------------
// An operand the pipeline reads (activations N C H W, weights K C/G R S) that is not dense
// channels_last and 16-byte aligned is first copied into the workspace as such: a 32 x 32 tile of
// (channels, pixels) through shared memory, read along the source's pixels and written along the
// copy's channels. The copy may hold more channels than the source (Cpad: the stem's 3 made one
// 16-byte chunk), zeros past C. blockIdx: x the pixel tile, y the channel tile, z the image.
constexpr int kCopyTile = 32;
template <typename T>
__global__ void __launch_bounds__(256)
    to_channels_last__sm80(ConstView4 src, T* dst, int C, int Cpad, int H, int W) {
  __shared__ T tile[kCopyTile][kCopyTile + 1];
  const int tx = threadIdx.x % kCopyTile, ty = threadIdx.x / kCopyTile;  // 32 x 8 threads
  const int64_t n = blockIdx.z, pix0 = int64_t(blockIdx.x) * kCopyTile, c0 = int64_t(blockIdx.y) * kCopyTile;
  const int64_t pixels = int64_t(H) * W;
  const T* s = static_cast<const T*>(src.data);
  T zero;
  memset(&zero, 0, sizeof zero);  // +0.0 in every type
  for (int i = ty; i < kCopyTile; i += 8) {
    const int64_t c = c0 + i, pix = pix0 + tx;
    if (c < Cpad && pix < pixels)
      tile[i][tx] = c < C ? s[offset4(src.stride, n, c, pix / W, pix % W)] : zero;
  }
  __syncthreads();
  for (int i = ty; i < kCopyTile; i += 8) {
    const int64_t pix = pix0 + i, c = c0 + tx;
    if (c < Cpad && pix < pixels) dst[(n * pixels + pix) * Cpad + c] = tile[tx][i];
  }
}

// Whether a view is what the pipeline reads: dense channels_last, 16-byte aligned.
bool channels_last_ready(const ConstView4& v, int64_t N, int64_t C, int64_t H, int64_t W) {
  return strides_are(Dense::nhwc, v.stride, N, C, H, W) && aligned(v.data, 16);
}

// The operands a GEMM copies: bytes of workspace each takes (0: read in place), 256-byte aligned.
struct OperandCopy {
  const ConstView4* view;
  int64_t N, C, H, W;
  int64_t Cpad;  // the copy's channels (>= C)
  size_t bytes(size_t elem) const {
    return Cpad == C && channels_last_ready(*view, N, C, H, W) ? 0 : (size_t(N * Cpad * H * W) * elem + 255) / 256 * 256;
  }
};

// Copies the operands that need it into `workspace` (in order) and points their views at the
// copies. False (nothing launched) where a copy's grid does not fit.
template <typename T, size_t kCount>
bool copy_to_channels_last(OperandCopy (&ops)[kCount], ConstView4 (&out)[kCount], char* workspace,
                           cudaStream_t stream) {
  for (size_t i = 0; i < kCount; ++i) {
    const OperandCopy& o = ops[i];
    if (o.bytes(sizeof(T)) && ((o.H * o.W + kCopyTile - 1) / kCopyTile >= (int64_t(1) << 31) ||
                               (o.Cpad + kCopyTile - 1) / kCopyTile > 65535 || o.N > 65535))
      return false;
  }
  for (size_t i = 0; i < kCount; ++i) {
    const OperandCopy& o = ops[i];
    out[i] = *o.view;
    const size_t bytes = o.bytes(sizeof(T));
    if (bytes == 0) continue;
    T* dst = reinterpret_cast<T*>(workspace);
    const dim3 grid(unsigned((o.H * o.W + kCopyTile - 1) / kCopyTile),
                    unsigned((o.Cpad + kCopyTile - 1) / kCopyTile), unsigned(o.N));
    CNNK_LAUNCH(grid, 256, 0, stream, to_channels_last__sm80<T>)(*o.view, dst, int(o.C), int(o.Cpad), int(o.H),
                                                                 int(o.W));
    out[i] = {dst, {o.H * o.W * o.Cpad, 1, o.W * o.Cpad, o.Cpad}};
    workspace += bytes;
  }
  return true;
}

// Whether the pipeline takes a layer's types: 16-bit, or float32 as TF32; whole 16-byte chunks of
// each group's channels (C/G) and, where a chunk runs along them, filters (K/G); sizes whose
// per-image offsets fit the pipeline's 32-bit counters. Its operands it reads as dense
// channels_last, copied first where they are not (the copies' bytes: pipeline_copies).
// Elements per 16-byte chunk for the pipeline's types (0: not a pipeline type).
int64_t pipeline_vec(const Conv2dProblem& p, bool allow_tf32) {
  if (p.dtype == DType::f32) return allow_tf32 ? 4 : 0;
  return p.dtype == DType::bf16 || p.dtype == DType::f16 ? 8 : 0;
}
// The forward's channels in its copies: an ungrouped layer of fewer channels than a chunk (the
// stem's 3) is padded with zero channels to one chunk, as cuDNN pads it; else C.
int64_t fprop_channels(const Conv2dProblem& p, bool allow_tf32) {
  const int64_t vec = pipeline_vec(p, allow_tf32);
  return p.groups == 1 && vec && p.C < vec ? vec : p.C;
}
bool pipeline_types_fit(const Conv2dProblem& p, bool allow_tf32, bool filters_in_chunks) {
  const int64_t vec = pipeline_vec(p, allow_tf32);
  if (!vec) return false;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups, lim = int64_t(1) << 30;
  return Cg % vec == 0 && (!filters_in_chunks || Kg % vec == 0) && p.H * p.W < lim && p.P * p.Q < lim &&
         p.H + p.pad_h + p.R * p.dil_h < lim && p.W + p.pad_w + p.S * p.dil_w < lim && p.C < lim && p.K < lim;
}
// The operands each GEMM reads through the pipeline.
// (The forward's channels: fprop_channels, the same for x and w since it pads ungrouped layers only.)
struct FpropCopies {
  OperandCopy ops[2];
  FpropCopies(const Conv2dFpropArgs& a, int64_t C)
      : ops{{&a.x, a.p.N, a.p.C, a.p.H, a.p.W, C}, {&a.w, a.p.K, a.p.C / a.p.groups, a.p.R, a.p.S, C / a.p.groups}} {}
};
struct DgradCopies {
  OperandCopy ops[2];
  DgradCopies(const Conv2dDgradArgs& a, int64_t /*C*/)
      : ops{{&a.dy, a.p.N, a.p.K, a.p.P, a.p.Q, a.p.K},
            {&a.w, a.p.K, a.p.C / a.p.groups, a.p.R, a.p.S, a.p.C / a.p.groups}} {}
};
struct WgradCopies {
  OperandCopy ops[2];
  explicit WgradCopies(const Conv2dWgradArgs& a)
      : ops{{&a.dy, a.p.N, a.p.K, a.p.P, a.p.Q, a.p.K}, {&a.x, a.p.N, a.p.C, a.p.H, a.p.W, a.p.C}} {}
};
template <class Copies>
size_t copies_bytes(const Copies& c, DType dtype) {
  const size_t elem = dtype == DType::f32 ? 4 : 2;
  size_t total = 0;
  for (const OperandCopy& o : c.ops) total += o.bytes(elem);
  return total;
}

// fprop / dgrad: large tiles where the layer has the columns to fill them and enough tiles for ~2
// waves on 132 SMs (a first guess, to be tuned on the GPU); set_gemm_tiles overrides.
bool large_pipe_tiles(int64_t rows, int64_t cols, int64_t groups) {
  if (gemm_tiles() != GemmTiles::automatic) return gemm_tiles() == GemmTiles::large;
  const int64_t blocks = ((rows + 127) / 128) * ((cols + 127) / 128) * groups;
  return cols >= 128 && blocks >= 264;
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
  const int64_t per_slice = gm.a.p.groups * gm.rows * gm.cols;
  for (int64_t i = global_thread(); i < per_slice; i += grid_threads()) {
    A sum = A(0);
    for (int s = 0; s < slices; ++s) sum += gm.partial[s * per_slice + i];
    int64_t c, r, s_;
    gm.tap(i % gm.cols, c, r, s_);  // i / cols = g * rows + k: the filter index
    store(static_cast<T*>(gm.a.dw.data) + offset4(gm.a.dw.stride, i / gm.cols, c, r, s_), sum);
  }
}

// A block's output tile and reduction step: the tiled and simple mma kernels' 64 x 64 x 16, or a
// pipeline's.
struct TileShape {
  int m, n, k;
  bool pipelined;
};
constexpr TileShape kSimpleTiles{kTileM, kTileN, kTileK, false};
template <class Tiles>
constexpr TileShape shape_of() {
  return {Tiles::kM, Tiles::kN, Tiles::kK, true};
}

dim3 tiles(TileShape t, int64_t rows, int64_t cols, int64_t z) {
  return dim3(unsigned((rows + t.m - 1) / t.m), unsigned((cols + t.n - 1) / t.n), unsigned(z));
}

// grid.x takes 2^31 - 1 tiles, y and z 65535.
bool grid_fits(TileShape t, int64_t rows, int64_t cols, int64_t z) {
  return (rows + t.m - 1) / t.m < (int64_t(1) << 31) && (cols + t.n - 1) / t.n <= 65535 && z <= 65535;
}

// The weight gradient's slices: enough blocks for ~4 per SM on 132 SMs, each slice at least 128
// pixels.
struct WgradSplit {
  int slices;
  int64_t per_slice;  // reduction steps (t.k pixels each) per slice
};
WgradSplit wgrad_split(const Conv2dProblem& p, TileShape t) {
  const int64_t rows = p.K / p.groups, cols = p.C / p.groups * p.R * p.S;
  const int64_t steps = (p.N * p.P * p.Q + t.k - 1) / t.k;
  const int64_t blocks = ((rows + t.m - 1) / t.m) * ((cols + t.n - 1) / t.n) * p.groups;
  const int64_t want = std::min((528 + blocks - 1) / blocks, std::max<int64_t>(1, steps * t.k / 128));
  const int64_t slices = std::max<int64_t>(1, std::min<int64_t>(want, 65535 / p.groups));
  const int64_t per_slice = std::max<int64_t>(1, (steps + slices - 1) / slices);
  return {int(std::max<int64_t>(1, (steps + per_slice - 1) / per_slice)), per_slice};  // no empty slice
}

// The pipeline's tiles for the storage type T.
template <typename T>
TileShape pipe_shape(bool large) {
  return large ? shape_of<LargePipeTiles<T>>() : shape_of<SmallPipeTiles<T>>();
}
TileShape pipe_shape(DType dtype, bool large) {
  switch (dtype) {
    case DType::f32: return pipe_shape<float>(large);
    default: return pipe_shape<__half>(large);  // bf16 and f16 alike
  }
}

// The weight gradient's kernel, slices and workspace ([copies][partial sums]): the pipeline where
// the types fit it, else the simple tiles.
struct WgradPlan {
  TileShape shape;
  WgradSplit split;
  size_t copies, partial;  // workspace bytes
};
WgradPlan wgrad_plan(const Conv2dWgradArgs& a, bool allow_tf32) {
  const Conv2dProblem& p = a.p;
  WgradPlan plan{kSimpleTiles, {}, 0, 0};
  if (pipeline_types_fit(p, allow_tf32, true)) {
    const int64_t rows = p.K / p.groups, cols = p.C / p.groups * p.R * p.S;
    // split-K supplies the blocks: large tiles wherever they are filled
    bool large = rows >= 128 && cols >= 128;
    if (gemm_tiles() != GemmTiles::automatic) large = gemm_tiles() == GemmTiles::large;
    plan.shape = pipe_shape(p.dtype, large);
    plan.copies = copies_bytes(WgradCopies(a), p.dtype);
  }
  plan.split = wgrad_split(p, plan.shape);
  if (plan.split.slices > 1)
    plan.partial = size_t(plan.split.slices) * size_t(p.K) * size_t(p.C / p.groups * p.R * p.S) *
                   (p.dtype == DType::f64 ? 8 : 4);
  return plan;
}

// Launches Pipe's GEMM on the pipeline with small or large tiles.
template <typename T, class Pipe>
cudaError_t launch_pipeline(const Pipe& pipe, bool large, int64_t groups, int slices, int64_t per_slice,
                            cudaStream_t stream) {
  using Small = SmallPipeTiles<T>;
  using Large = LargePipeTiles<T>;
  const int64_t z = groups * slices;
  if (large) {
    CNNK_LAUNCH(tiles(shape_of<Large>(), pipe.gm.rows, pipe.gm.cols, z), Large::kThreads, 0, stream,
                conv2d_gemm__sm80_mma_pipelined<T, Large, Pipe>)(pipe, slices, per_slice);
  } else {
    CNNK_LAUNCH(tiles(shape_of<Small>(), pipe.gm.rows, pipe.gm.cols, z), Small::kThreads, 0, stream,
                conv2d_gemm__sm80_mma_pipelined<T, Small, Pipe>)(pipe, slices, per_slice);
  }
  return last_launch_error();
}

// The storage types the pipeline runs: bf16 and f16, and float32 as TF32.
template <typename T>
constexpr bool kPipelined = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half> || std::is_same_v<T, float>;

// The bytes of the channels_last copies fprop / dgrad make for the pipeline, whose problem has C
// channels (the forward may pad them), or nullopt where the pipeline does not take the layer.
template <class Copies, class Args>
std::optional<size_t> pipeline_copies(const Args& args, int64_t C, bool filters_in_chunks, bool allow_tf32) {
  Conv2dProblem pp = args.p;
  pp.C = C;
  if (!pipeline_types_fit(pp, allow_tf32, filters_in_chunks)) return std::nullopt;
  return copies_bytes(Copies(args, C), pp.dtype);
}

// fprop and dgrad (rows x cols outputs, reductions of depth_of(problem)): the pipeline, on a problem
// of C channels, where it takes the layer and the workspace holds the operands' channels_last copies
// (retarget points the arguments at them), else the simple tiles.
template <template <typename, typename> class Gemm, template <typename> class Pipe, class Copies, class Args,
          class DepthOf, class Retarget>
Launched pipeline_or_tiles(const Args& args, int64_t C, int64_t rows, int64_t cols, const DepthOf& depth_of,
                           bool filters_in_chunks, bool allow_tf32, void* workspace, size_t workspace_bytes,
                           cudaStream_t stream, const Retarget& retarget) {
  const Conv2dProblem& p = args.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  if (!grid_fits(kSimpleTiles, rows, cols, p.groups)) return {false, cudaSuccess};
  const std::optional<size_t> need = pipeline_copies<Copies>(args, C, filters_in_chunks, allow_tf32);
  const cudaError_t err = dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename AccOf<T>::type;
    if constexpr (kPipelined<T>) {
      if (need && (*need == 0 || (workspace && workspace_bytes >= *need))) {
        Copies copies(args, C);
        ConstView4 v[2];
        if (copy_to_channels_last<T>(copies.ops, v, static_cast<char*>(workspace), stream)) {
          Args a = args;
          retarget(a, v);
          a.p.C = C;
          return launch_pipeline<T>(Pipe<T>{{a, rows, cols, depth_of(a.p), C / p.groups, Kg}},
                                    large_pipe_tiles(rows, cols, p.groups), p.groups, 1, INT64_MAX, stream);
        }
      }
    }
    const int64_t depth = depth_of(p);
    const Gemm<T, A> gm{args, rows, cols, depth, Cg, Kg};
    CNNK_LAUNCH(tiles(kSimpleTiles, rows, cols, p.groups), kGemmThreads, 0, stream,
                gemm_kernel<T, A, Gemm<T, A>>(allow_tf32))(gm, 1, (depth + kTileK - 1) / kTileK);
    return last_launch_error();
  });
  return {true, err};
}

}  // namespace

size_t gemm_fprop_workspace_bytes(const Conv2dFpropArgs& args, bool allow_tf32) {
  return pipeline_copies<FpropCopies>(args, fprop_channels(args.p, allow_tf32), false, allow_tf32).value_or(0);
}

Launched gemm_fprop(const Conv2dFpropArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  const Conv2dProblem& p = args.p;
  return pipeline_or_tiles<FpropGemm, FpropPipe, FpropCopies>(
      args, fprop_channels(p, allow_tf32), p.N * p.P * p.Q, p.K / p.groups,
      [](const Conv2dProblem& q) { return q.C / q.groups * q.R * q.S; }, false, allow_tf32, workspace,
      workspace_bytes, stream, [](Conv2dFpropArgs& a, const ConstView4(&v)[2]) { a.x = v[0], a.w = v[1]; });
}

size_t gemm_dgrad_workspace_bytes(const Conv2dDgradArgs& args, bool allow_tf32) {
  return pipeline_copies<DgradCopies>(args, args.p.C, true, allow_tf32).value_or(0);
}

Launched gemm_dgrad(const Conv2dDgradArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  const Conv2dProblem& p = args.p;
  return pipeline_or_tiles<DgradGemm, DgradPipe, DgradCopies>(
      args, p.C, p.N * p.H * p.W, p.C / p.groups, [](const Conv2dProblem& q) { return q.K / q.groups * q.R * q.S; },
      true, allow_tf32, workspace, workspace_bytes, stream,
      [](Conv2dDgradArgs& a, const ConstView4(&v)[2]) { a.dy = v[0], a.w = v[1]; });
}

size_t gemm_wgrad_workspace_bytes(const Conv2dWgradArgs& args, bool allow_tf32) {
  const WgradPlan plan = wgrad_plan(args, allow_tf32);
  return plan.copies + plan.partial;
}

Launched gemm_wgrad(const Conv2dWgradArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  const Conv2dProblem& p = args.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t rows = Kg, cols = Cg * p.R * p.S, depth = p.N * p.P * p.Q;
  WgradPlan plan = wgrad_plan(args, allow_tf32);
  const size_t have = workspace ? workspace_bytes : 0;
  if (have < plan.copies + plan.partial) {  // less than asked for: one slice, and the copies if they fit
    plan.partial = 0;
    if (have < plan.copies) plan.shape = kSimpleTiles, plan.copies = 0;
    plan.split = {1, (depth + plan.shape.k - 1) / plan.shape.k};
  }
  if (!grid_fits(plan.shape, rows, cols, int64_t(p.groups) * plan.split.slices)) return {false, cudaSuccess};
  const cudaError_t err = dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename AccOf<T>::type;
    A* partial = plan.partial ? reinterpret_cast<A*>(static_cast<char*>(workspace) + plan.copies) : nullptr;
    WgradGemm<T, A> gm{args, rows, cols, depth, Cg, Kg, partial, plan.shape.pipelined};
    cudaError_t e = cudaSuccess;
    bool ran = false;
    if constexpr (kPipelined<T>) {
      WgradCopies copies(args);
      ConstView4 v[2];
      if (plan.shape.pipelined && copy_to_channels_last<T>(copies.ops, v, static_cast<char*>(workspace), stream)) {
        gm.a.dy = v[0], gm.a.x = v[1];
        e = launch_pipeline<T>(WgradPipe<T>{gm}, plan.shape.m == LargePipeTiles<T>::kM, p.groups, plan.split.slices,
                               plan.split.per_slice, stream);
        ran = true;
      }
    }
    if (!ran) {
      if (plan.shape.pipelined) {  // the copies' grids did not fit: the simple tiles, one slice
        gm.partial = nullptr, gm.cols_rsc = false;
        plan.split = {1, (depth + kTileK - 1) / kTileK};
      }
      CNNK_LAUNCH(tiles(kSimpleTiles, rows, cols, int64_t(p.groups) * plan.split.slices), kGemmThreads, 0, stream,
                  gemm_kernel<T, A, WgradGemm<T, A>>(allow_tf32))(gm, plan.split.slices, plan.split.per_slice);
      e = last_launch_error();
    }
    if (e == cudaSuccess && gm.partial)
      CNNK_LAUNCH(grid_for(p.K * cols, kThreads), kThreads, 0, stream, conv2d_gemm_finish__sm80<T, A>)(gm,
                                                                                                     plan.split.slices);
    return e == cudaSuccess ? last_launch_error() : e;
  });
  return {true, err};
}

}  // namespace cuda
}  // namespace cnnkernels
