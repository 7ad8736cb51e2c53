// Hand-written max_pool2d kernels for float32 and bfloat16 (storage type T), written once over a
// vector type V of floats and compiled per ISA.
// csrc/cpu/avx512/max_pool2d_avx512.cpp (V = 16 lanes: zmm registers, k-masks) and
// csrc/cpu/avx2/max_pool2d_avx2.cpp (V = 8 lanes: ymm registers, lane masks) each define V, then
// include this header inside their own namespace (cnnkernels::<isa>, anonymous), so the copies built
// with different -m flags never merge at link time. V's interface is listed in those files.
//
// Kernels (entry points max_pool2d_fwd_f32<V> / max_pool2d_bwd_f32<V> at the end pick one by strides):
//   fwd_nhwc  channels contiguous (x, y and indices stride[1] == 1): one output pixel at a time,
//             V::kW channels per vector (4 vectors unrolled, then 1, then a masked tail), looping
//             over the window's in-bounds taps, whose offsets are worked out once per pixel.
//   fwd_nchw_rows  rows contiguous, windows overlapping along the rows (stride_h < kernel_h),
//             dilation 1, column stride 1 or 2: the window max taken as a row pass per input row
//             (over each window's columns, on a -inf padded float copy of the row; V::kW outputs
//             per vector), shared by the output rows whose windows hold that row, then a column
//             pass per output row. Rows without NaN (checked on the way) take v > best alone.
//   fwd_nchw  the other NCHW forwards (stride[3] == 1): V::kW consecutive output columns per
//             vector. Columns whose window row lies inside the input ("interior") load each tap
//             with one unaligned load (stride 1), two loads and an even-lane de-interleave (stride 2;
//             float32 at dilation 1: two loads for a pair of taps, fwd_nchw_block_pairs) or a gather
//             (stride >= 3); the few border columns go through the scalar rule (scalar_output). A
//             partial last vector is the row's last V::kW outputs again where they fit the interior.
//             Long rows read from DRAM get a software prefetch.
//   bwd_nhwc  scatter by taps: a thread owns a band of dx rows of one image; for each output pixel
//             whose window reaches the band (row-major) and each channel vector it reads the stored
//             index once and adds dy into the tap the index names (one int32 compare and a masked
//             add per tap). dx rows are zeroed just before the first window reaches them.
//             Disjoint windows (stride >= dilated kernel) store each tap once instead.
//   bwd_nchw  scatter: a thread owns whole (n, c) planes of dx, zeroes one (it stays in L1/L2) and
//             adds dy[p, q] at indices[p, q]. Scalar: the stores are random within the plane;
//             on AVX-512, taps of disjoint windows go by vector scatter (no two lanes collide).
//   bwd_nchw_disjoint2  float32 windows two columns wide and apart, not overlapping (VGG's 2x2/2),
//             rows of 48+ outputs: each dx row written once, V::kW outputs per vector.
//   bwd_nchw_3x3s2p1  float32 3x3/2 windows with padding 1 (the ResNet stem), rows of 48+ outputs:
//             the fixed overlap pattern summed in registers in PyTorch's order, rows stored once.
// Winners: every kernel records them as int64 plane indices or as uint8 tap numbers (the taps
// of MaxPool2dFwdArgs / MaxPool2dBwdArgs, Winner::kTap): the vectors carry an int32 per lane either
// way, and only the tap values, the final store and the backward's load differ.
// Anything else (other strides, planes of 2^31 or more elements) runs the reference loops
// (max_pool2d_reference.h, included by the ISA file in the same namespace): one kernel, one place.
//
// bfloat16: V loads T and widens it to float in registers (exact), compares there, and stores by
// rounding to nearest even, which gives back the input's bits for every maximum (a signalling NaN
// comes back quiet, as in the reference). The backward kernels sum into float (dx itself for
// float32; a float band or plane for bfloat16, rounded into dx once), as the reference does.
//
// Semantics are the reference's, bit for bit: taps are visited in row-major window order and a tap
// replaces the best when `v > best || isnan(v)` (first maximum wins a tie, last NaN wins), done per
// lane with an ordered greater-than compare OR an unordered self-compare, and masked blends of the
// value and the index. Without indices, V::max_or_nan does the same in one operation less: a max
// instruction alone would not propagate NaN that way. Both backward kernels add the gradients
// reaching one dx element in row-major output order starting from +0, the order PyTorch's CPU
// kernels use, so float32 sums match PyTorch exactly.
#pragma once
#ifndef CNNKERNELS_KERNEL_NS
#error "define CNNKERNELS_KERNEL_NS (and the vector type V) before including max_pool2d_simd.h"
#endif
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../../common/parallel.h"
#include "../../common/pool_params.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {
namespace pool_simd {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// What the forward records of each window's winner besides its value: nothing, the int64 plane
// index (MaxPool2dFwdArgs::indices), or the one-byte tap number (MaxPool2dFwdArgs::taps). The
// vectors track a per-lane int32 "tap value" either way: a plane index (or an offset from one)
// for kIndex, the tap number for kTap; V::store_index narrows it to the destination's type.
enum class Winner { kNone, kIndex, kTap };
template <Winner kOut>
using WinnerT = std::conditional_t<kOut == Winner::kTap, uint8_t, int64_t>;

// The winners array of a call, as WinT (uint8_t: taps, int64_t: indices).
template <typename WinT>
inline WinT* winners_of(const MaxPool2dFwdArgs& a) {
  if constexpr (std::is_same_v<WinT, uint8_t>) return a.taps; else return a.indices;
}
template <typename WinT>
inline const WinT* winners_of(const MaxPool2dBwdArgs& a) {
  if constexpr (std::is_same_v<WinT, uint8_t>) return a.taps; else return a.indices;
}

// A forward call's operands as the kernels read them: the problem, input x and output y of storage
// type T, the winners (kOut: none, int64 indices or uint8 taps) and the three stride sets.
template <Winner kOut, typename T>
struct FwdOperands {
  using WinT = WinnerT<kOut>;
  static constexpr bool kIdx = kOut != Winner::kNone;
  explicit FwdOperands(const MaxPool2dFwdArgs& a)
      : pb(a.p), x(static_cast<const T*>(a.x.data)), y(static_cast<T*>(a.y.data)), winners(winners_of<WinT>(a)),
        xs(a.x.stride), ys(a.y.stride), is(a.index_stride) {}
  const Pool2dProblem& pb;
  const T* x;
  T* y;
  WinT* winners;
  const int64_t *xs, *ys, *is;
};

// What names tap (i, j) of the window starting at input pixel (h0, w0): its tap number, or its
// plane index (for a window that misses the input, the reference's (lo, lo) tap, maybe off-plane).
template <bool kTap>
inline int64_t winner_value(const Pool2dProblem& pb, int64_t h0, int64_t w0, int64_t i, int64_t j) {
  return kTap ? i * pb.kernel_w + j : tap_plane_index(pb, h0, w0, i, j);
}

// Work per parallel chunk: enough that waking a second thread pays (a few microseconds).
constexpr int64_t kGrainWork = 1 << 16;
// fwd_nchw's software prefetch distance (bytes past the rows in use); 2-16 KB measured alike.
constexpr int64_t kPrefetchAhead = 4096;

// One tap of a window by the reference's rule: val replaces best when it is greater or NaN, and
// with indices the lane's index becomes tap's (without, V::max_or_nan gives the value alone).
// kNaNFree: val and best hold no NaN, so the rule is v > best alone (vmaxps(v, best) for values).
template <class V, bool kIdx, bool kNaNFree = false>
inline void visit_tap(typename V::F& best, typename V::I& index, typename V::F val, typename V::I tap) {
  if (kIdx) {
    const typename V::M take = kNaNFree ? V::greater(val, best) : V::take(val, best);
    best = V::select(take, best, val);
    index = V::select(take, index, tap);
  } else {
    best = kNaNFree ? V::max(val, best) : V::max_or_nan(val, best);
  }
}

// d[i] = T(s[i]) for i < n (bfloat16: rounded to nearest even), V::kW at a time.
template <class V, typename T>
inline void narrow(const float* s, T* d, int64_t n) {
  int64_t i = 0;
  for (; i + V::kW <= n; i += V::kW) V::store(d + i, V::load(s + i));
  if (i < n) V::store_n(d + i, V::load_n(s + i, static_cast<int>(n - i)), static_cast<int>(n - i));
}

// In-bounds taps of one window dimension, start + t * dil in [0, size) for t in [lo, hi), computed
// exactly as the reference does: for a window that misses the input, lo (with the other
// dimension's lo) still names the index the reference reports.
struct Taps {
  int64_t lo, hi;
  bool empty() const { return lo == hi; }
};
inline Taps in_bounds_taps(int64_t start, int64_t k, int64_t dil, int64_t size) {
  int64_t lo = 0, hi = k;
  while (lo < hi && start + lo * dil < 0) ++lo;
  while (hi > lo && start + (hi - 1) * dil >= size) --hi;
  return {lo, hi};
}

// Some output column whose window misses every input column (dilation wider than the input). Its
// index, by the reference's formula, can name an in-plane pixel outside the window, which
// bwd_nhwc (it only looks at a window's own taps) would not see.
inline bool has_empty_column_window(const Pool2dProblem& pb) {
  for (int64_t q = 0; q < pb.Q; ++q)
    if (in_bounds_taps(q * pb.stride_w - pb.pad_w, pb.kernel_w, pb.dil_w, pb.W).empty()) return true;
  return false;
}
// The same along the rows: some output row whose window misses every input row.
inline bool has_empty_row_window(const Pool2dProblem& pb) {
  for (int64_t p = 0; p < pb.P; ++p)
    if (in_bounds_taps(p * pb.stride_h - pb.pad_h, pb.kernel_h, pb.dil_h, pb.H).empty()) return true;
  return false;
}
// No input element under two windows: each dilated window fits in one stride.
inline bool windows_disjoint(const Pool2dProblem& pb) {
  return pb.stride_h >= (pb.kernel_h - 1) * pb.dil_h + 1 && pb.stride_w >= (pb.kernel_w - 1) * pb.dil_w + 1;
}

// One output by the reference's scalar rule, for border windows and windows that miss the input.
// index: nullptr, or where the winner's plane index (int64_t) or tap number (uint8_t) goes.
template <typename T, typename WinT>
inline void scalar_output(const T* plane, int64_t xs2, int64_t xs3, const Pool2dProblem& pb, int64_t h0,
                          Taps ti, int64_t w0, T* y, WinT* index) {
  const Taps tj = in_bounds_taps(w0, pb.kernel_w, pb.dil_w, pb.W);
  float best = kNegInf;
  int64_t best_i = ti.lo, best_j = tj.lo;  // a window that misses the input reports these
  for (int64_t i = ti.lo; i < ti.hi; ++i) {
    const int64_t h = h0 + i * pb.dil_h;
    for (int64_t j = tj.lo; j < tj.hi; ++j) {
      const int64_t w = w0 + j * pb.dil_w;
      const float v = load_acc(plane + h * xs2 + w * xs3);
      if (v > best || std::isnan(v)) {
        best = v;
        best_i = i, best_j = j;
      }
    }
  }
  store_from(y, best);
  if (index) *index = static_cast<WinT>(winner_value<std::is_same_v<WinT, uint8_t>>(pb, h0, w0, best_i, best_j));
}

// ---- forward, channels_last -----------------------------------------------------------------

// NV vectors of channels (or one vector of n < V::kW channels when kTail) of one output pixel.
// x points at the first channel of the block at input pixel (0, 0); tap t is at x + off[t] and has
// tap value tap_index[t] (plane index or tap number). The first tap initialises the best: that
// equals starting from -inf with the first in-bounds tap's index, as the reference does.
template <class V, bool kIdx, int NV, bool kTail, typename T, typename WinT>
inline void fwd_nhwc_block(const T* x, const int64_t* off, const int32_t* tap_index, int64_t taps, T* y,
                           WinT* index, int n) {
  typename V::F best[NV];
  typename V::I idx[NV];
  for (int v = 0; v < NV; ++v) {
    best[v] = kTail ? V::load_n(x + off[0], n) : V::load(x + off[0] + v * V::kW);
    if (kIdx) idx[v] = V::set1i(tap_index[0]);
  }
  for (int64_t t = 1; t < taps; ++t) {
    const T* xt = x + off[t];
    typename V::I ti;
    if (kIdx) ti = V::set1i(tap_index[t]);
    for (int v = 0; v < NV; ++v) {
      visit_tap<V, kIdx>(best[v], idx[v], kTail ? V::load_n(xt, n) : V::load(xt + v * V::kW), ti);
    }
  }
  for (int v = 0; v < NV; ++v) {
    if (kTail) {
      V::store_n(y, best[v], n);
      if (kIdx) V::store_index_n(index, idx[v], n);
    } else {
      V::store(y + v * V::kW, best[v]);
      if (kIdx) V::store_index(index + v * V::kW, idx[v]);
    }
  }
}

template <class V, Winner kOut, typename T>
void fwd_nhwc(const MaxPool2dFwdArgs& a) {
  using Ops = FwdOperands<kOut, T>;
  using WinT = typename Ops::WinT;
  constexpr bool kIdx = Ops::kIdx;
  const auto [pb, x, y, winners, xs, ys, is] = Ops(a);
  const int64_t C = pb.C, rows = pb.N * pb.P;
  // Few output rows (a global pool, tiny images): split the channels too, so both cores work.
  const int64_t chunk = rows >= 8 ? C : std::min<int64_t>(C, 4 * V::kW);
  const int64_t chunks = (C + chunk - 1) / chunk;
  const int64_t work = pb.Q * pb.kernel_h * pb.kernel_w * chunk;
  parallel_for(0, rows * chunks, std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work)),
               [&](int64_t b, int64_t e) {
    std::vector<int64_t> off(pb.kernel_h * pb.kernel_w);
    std::vector<int32_t> tap_index(pb.kernel_h * pb.kernel_w);
    for (int64_t item = b; item < e; ++item) {
      const int64_t row = item / chunks, c0 = (item % chunks) * chunk, c1 = std::min(C, c0 + chunk);
      const int64_t n = row / pb.P, p = row % pb.P;
      const int64_t h0 = p * pb.stride_h - pb.pad_h;
      const Taps ti = in_bounds_taps(h0, pb.kernel_h, pb.dil_h, pb.H);
      const T* xn = x + n * xs[0];
      for (int64_t q = 0; q < pb.Q; ++q) {
        const int64_t w0 = q * pb.stride_w - pb.pad_w;
        const Taps tj = in_bounds_taps(w0, pb.kernel_w, pb.dil_w, pb.W);
        T* yq = y + n * ys[0] + p * ys[2] + q * ys[3];
        WinT* iq = kIdx ? winners + n * is[0] + p * is[2] + q * is[3] : nullptr;
        if (ti.empty() || tj.empty()) {  // the window misses the input (dilation): -inf everywhere
          const int64_t e_index = winner_value<kOut == Winner::kTap>(pb, h0, w0, ti.lo, tj.lo);
          for (int64_t c = c0; c < c1; ++c) {
            store_from(yq + c, kNegInf);
            if (kIdx) iq[c] = static_cast<WinT>(e_index);
          }
          continue;
        }
        int64_t taps = 0;
        for (int64_t i = ti.lo; i < ti.hi; ++i) {
          const int64_t h = h0 + i * pb.dil_h;
          for (int64_t j = tj.lo; j < tj.hi; ++j, ++taps) {
            const int64_t w = w0 + j * pb.dil_w;
            off[taps] = h * xs[2] + w * xs[3];
            tap_index[taps] = static_cast<int32_t>(winner_value<kOut == Winner::kTap>(pb, h0, w0, i, j));
          }
        }
        int64_t c = c0;
        for (; c + 4 * V::kW <= c1; c += 4 * V::kW)
          fwd_nhwc_block<V, kIdx, 4, false>(xn + c, off.data(), tap_index.data(), taps, yq + c,
                                            kIdx ? iq + c : nullptr, V::kW);
        for (; c + V::kW <= c1; c += V::kW)
          fwd_nhwc_block<V, kIdx, 1, false>(xn + c, off.data(), tap_index.data(), taps, yq + c,
                                            kIdx ? iq + c : nullptr, V::kW);
        if (c < c1)
          fwd_nhwc_block<V, kIdx, 1, true>(xn + c, off.data(), tap_index.data(), taps, yq + c,
                                           kIdx ? iq + c : nullptr, static_cast<int>(c1 - c));
      }
    }
  });
}

// ---- forward, NCHW --------------------------------------------------------------------------

// V::kW (or n < V::kW when kTail) input columns p[l * kStride]: kStride 1 and 2 with plain loads,
// 0 = any stride s with a gather. Never reads past p[(n - 1) * s].
template <class V, int kStride, bool kTail, typename T>
inline typename V::F load_columns(const T* p, int64_t s, int n) {
  if (kStride == 1) return kTail ? V::load_n(p, n) : V::load(p);
  if (kStride == 2) return kTail ? V::load_even_n(p, n) : V::load_even(p);
  return V::gather_n(p, static_cast<int32_t>(s), kTail ? n : V::kW);
}

// NV vectors of consecutive interior outputs of one output row, starting at input column w0; the
// last vector holds n <= V::kW outputs when kTail. Every column tap w0 + j dw + l s is inside the
// row; the window rows are h_first + r dh for r < rows. The NV vectors are independent dependency
// chains (compare, blend, next compare): one alone leaves the core waiting on that latency.
// Lanes track the winner as an offset from their window's first tap, which is the same for every
// lane (one broadcast per tap); the plane index is added once at the end. For tap numbers
// (kOut == kTap; window row r is tap row i_first + r) the broadcast value is the tap number itself.
template <class V, Winner kOut, int kStride, int NV, bool kTail, typename T>
inline void fwd_nchw_block(const T* plane, int64_t xs2, const Pool2dProblem& pb, int64_t h_first, int64_t i_first,
                           int64_t rows, int64_t w0, T* y, WinnerT<kOut>* index, int n) {
  constexpr bool kIdx = kOut != Winner::kNone;
  const int64_t s = pb.stride_w;
  constexpr int64_t kStep = V::kW;  // outputs per vector
  typename V::F best[NV];
  typename V::I off[NV];
  auto load = [&](const T* p, int v) {
    const T* pv = p + v * kStep * s;
    return (kTail && v == NV - 1) ? load_columns<V, kStride, true>(pv, s, n)
                                  : load_columns<V, kStride, false>(pv, s, V::kW);
  };
  const T* x0 = plane + h_first * xs2 + w0;
  const int32_t first_tap = kOut == Winner::kTap ? static_cast<int32_t>(i_first * pb.kernel_w) : 0;
  for (int v = 0; v < NV; ++v) {
    best[v] = load(x0, v);
    off[v] = V::set1i(first_tap);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = plane + (h_first + r * pb.dil_h) * xs2 + w0;
    for (int64_t j = (r == 0 ? 1 : 0); j < pb.kernel_w; ++j) {
      const typename V::I tap = V::set1i(static_cast<int32_t>(
          kOut == Winner::kTap ? (i_first + r) * pb.kernel_w + j : r * pb.dil_h * pb.W + j * pb.dil_w));
      for (int v = 0; v < NV; ++v) {
        visit_tap<V, kIdx>(best[v], off[v], load(xr + j * pb.dil_w, v), tap);
      }
    }
  }
  // kIndex: lane l of vector v is h_first * W + w0 + (v kW + l) s + off
  const typename V::I base = V::iota_times(static_cast<int32_t>(s), static_cast<int32_t>(h_first * pb.W + w0));
  for (int v = 0; v < NV; ++v) {
    const typename V::I idx = kOut == Winner::kTap ? off[v] : V::add(off[v], V::add(base, V::set1i(static_cast<int32_t>(v * kStep * s))));
    if (kTail && v == NV - 1) {
      V::store_n(y + v * kStep, best[v], n);
      if (kIdx) V::store_index_n(index + v * kStep, idx, n);
    } else {
      V::store(y + v * kStep, best[v]);
      if (kIdx) V::store_index(index + v * kStep, idx);
    }
  }
}

// fwd_nchw_block for float32 at column stride 2 and dilation 1, NV full vectors: the two loads
// that hold tap j's columns (w0 + j + 2 l) hold tap j + 1's too (w0 + j + 1 + 2 l), so a pair of
// taps costs two loads and two in-lane shuffles (V::even_raw, V::odd_raw). The shuffles leave the
// lanes permuted the same way for every tap (AVX2: outputs 0 1 4 5 2 3 6 7); the compares and
// blends are per lane, so the order is restored once, at the store (V::unraw). Reads up to
// w0 + ((kw - 1) & ~1) + 2 NV kW - 1: the caller checks that this stays in the row. In-process A/B
// on Zen 3 (best of 21): 2x2/2 64 @ 224 N=1 1.07-1.2x, 3x3/2 64 @ 112 N=8 1.05-1.12x, N=1 and
// 512 @ 28 (one vector per row) within noise.
template <class V, Winner kOut, int NV>
inline void fwd_nchw_block_pairs(const float* plane, int64_t xs2, const Pool2dProblem& pb, int64_t h_first,
                                 int64_t i_first, int64_t rows, int64_t w0, float* y, WinnerT<kOut>* index) {
  constexpr bool kIdx = kOut != Winner::kNone;
  constexpr int64_t kStep = 2 * V::kW;  // input columns per vector
  typename V::F best[NV];
  typename V::I off[NV];
  const int32_t first_tap = kOut == Winner::kTap ? static_cast<int32_t>(i_first * pb.kernel_w) : 0;
  for (int v = 0; v < NV; ++v) best[v] = V::zero(), off[v] = V::set1i(first_tap);  // best: tap 0 below
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = plane + (h_first + r * pb.dil_h) * xs2 + w0;
    const int32_t row_tap = static_cast<int32_t>(kOut == Winner::kTap ? (i_first + r) * pb.kernel_w
                                                                      : r * pb.dil_h * pb.W);
    for (int64_t j = 0; j < pb.kernel_w; j += 2) {
      for (int v = 0; v < NV; ++v) {
        const typename V::F lo = V::load(xr + j + v * kStep), hi = V::load(xr + j + v * kStep + V::kW);
        const typename V::F even = V::even_raw(lo, hi);
        if (r == 0 && j == 0)
          best[v] = even;
        else
          visit_tap<V, kIdx>(best[v], off[v], even, V::set1i(row_tap + static_cast<int32_t>(j)));
        if (j + 1 < pb.kernel_w)
          visit_tap<V, kIdx>(best[v], off[v], V::odd_raw(lo, hi), V::set1i(row_tap + static_cast<int32_t>(j + 1)));
      }
    }
  }
  const typename V::I base = V::iota_times(2, static_cast<int32_t>(h_first * pb.W + w0));
  for (int v = 0; v < NV; ++v) {
    V::store(y + v * V::kW, V::unraw(best[v]));
    if (kOut == Winner::kTap) V::store_index(index + v * V::kW, V::unraw(off[v]));
    if (kOut == Winner::kIndex)
      V::store_index(index + v * V::kW, V::add(V::unraw(off[v]), V::add(base, V::set1i(static_cast<int32_t>(v * kStep)))));
  }
}

// Interior outputs [q, q_hi) of one row: blocks of 4 full vectors, then one block of up to 3, then
// the partial last vector, if any.
template <class V, Winner kOut, int kStride, typename T>
inline void fwd_nchw_interior(const T* plane, int64_t xs2, const Pool2dProblem& pb, int64_t h_first, int64_t i_first,
                              int64_t rows, int64_t q, int64_t q_hi, T* yr, WinnerT<kOut>* ir) {
  constexpr bool kIdx = kOut != Winner::kNone;
  const int64_t sw = pb.stride_w, pw = pb.pad_w;
  // fwd_nchw_block_pairs where it applies: its furthest read w0 + last_even + 2 NV kW - 1 in the row.
  const int64_t last_even = (pb.kernel_w - 1) & ~int64_t(1);
  const bool pairs = kStride == 2 && pb.dil_w == 1;  // and T = float, checked below
  auto block = [&](auto nv, auto tail, int64_t q0, int n) {
    constexpr int NV = decltype(nv)::value;
    const int64_t w0 = q0 * sw - pw;
    if constexpr (!decltype(tail)::value && std::is_same_v<T, float>) {
      if (pairs && w0 + last_even + 2 * NV * V::kW <= pb.W) {
        fwd_nchw_block_pairs<V, kOut, NV>(plane, xs2, pb, h_first, i_first, rows, w0, yr + q0, kIdx ? ir + q0 : nullptr);
        return;
      }
    }
    fwd_nchw_block<V, kOut, kStride, NV, decltype(tail)::value>(plane, xs2, pb, h_first, i_first, rows, w0,
                                                               yr + q0, kIdx ? ir + q0 : nullptr, n);
  };
  using I1 = std::integral_constant<int, 1>;
  using I2 = std::integral_constant<int, 2>;
  using I3 = std::integral_constant<int, 3>;
  using I4 = std::integral_constant<int, 4>;
  using Full = std::false_type;
  using Tail = std::true_type;
  const int64_t q_first = q;
  for (; q + 4 * V::kW <= q_hi; q += 4 * V::kW) block(I4{}, Full{}, q, V::kW);
  const int full = static_cast<int>((q_hi - q) / V::kW), part = static_cast<int>((q_hi - q) % V::kW);
  switch (full) {
    case 1: block(I1{}, Full{}, q, V::kW); break;
    case 2: block(I2{}, Full{}, q, V::kW); break;
    case 3: block(I3{}, Full{}, q, V::kW); break;
  }
  // A partial last vector where a whole one fits in the interior: the last V::kW outputs again with
  // whole loads (those outputs are written twice, the same values). AVX2's masked loads were slow
  // on Zen 1: 2x2/2 512 @ 28 (6 columns in the masked vector) N=1, 2 threads, 0.33 -> 0.21 ms.
  // An interior under one vector takes the masked one.
  if (part > 0) {
    if (q_hi - q_first >= V::kW) block(I1{}, Full{}, q_hi - V::kW, V::kW);
    else block(I1{}, Tail{}, q, part);
  }
}

// G output rows of n <= V::kW outputs each, all interior (the whole row: q_lo = 0, q_hi = Q) and
// with the same in-bounds window rows: one vector per row, the G rows as independent chains.
// Row by row, a row of one short vector waited on its chain's latency and paid the loop's
// bookkeeping alone (in-process A/B, arms in random order, Zen 5, 2 threads, 2x2/2: 512 @ 28 N=1
// 0.091-0.117 -> 0.060-0.077 ms, with indices 1.3-1.5x, N=8 1.3-1.7x; 512 @ 14 1.4-1.6x).
// Row g's window rows start at x0[g] (its first window row, column w0), its outputs go to y[g]
// and index[g]; h_first[g] is that first window row's index in the plane.
template <class V, Winner kOut, int kStride, int G, bool kTail, typename T>
inline void fwd_nchw_short_rows(const T* const* x0, const int64_t* h_first, const Pool2dProblem& pb, int64_t xs2,
                                int64_t i_first, int64_t rows, int64_t w0, T* const* y, WinnerT<kOut>* const* index,
                                int n) {
  constexpr bool kIdx = kOut != Winner::kNone;
  const int64_t s = pb.stride_w;
  typename V::F best[G];
  typename V::I off[G];
  const int32_t first_tap = kOut == Winner::kTap ? static_cast<int32_t>(i_first * pb.kernel_w) : 0;
  for (int g = 0; g < G; ++g) {
    best[g] = load_columns<V, kStride, kTail>(x0[g], s, n);
    off[g] = V::set1i(first_tap);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = (r == 0 ? 1 : 0); j < pb.kernel_w; ++j) {
      const int64_t at = r * pb.dil_h * xs2 + j * pb.dil_w;
      const typename V::I tap = V::set1i(static_cast<int32_t>(
          kOut == Winner::kTap ? (i_first + r) * pb.kernel_w + j : r * pb.dil_h * pb.W + j * pb.dil_w));
      for (int g = 0; g < G; ++g) visit_tap<V, kIdx>(best[g], off[g], load_columns<V, kStride, kTail>(x0[g] + at, s, n), tap);
    }
  for (int g = 0; g < G; ++g) {
    const typename V::I idx =
        kOut == Winner::kTap ? off[g]
                             : V::add(off[g], V::iota_times(static_cast<int32_t>(s), static_cast<int32_t>(h_first[g] * pb.W + w0)));
    if (kTail) {
      V::store_n(y[g], best[g], n);
      if (kIdx) V::store_index_n(index[g], idx, n);
    } else {
      V::store(y[g], best[g]);
      if (kIdx) V::store_index(index[g], idx);
    }
  }
}

template <class V, Winner kOut, int kStride, typename T>
void fwd_nchw(const MaxPool2dFwdArgs& a) {
  using Ops = FwdOperands<kOut, T>;
  using WinT = typename Ops::WinT;
  constexpr bool kIdx = Ops::kIdx;
  const auto [pb, x, y, winners, xs, ys, is] = Ops(a);
  const int64_t sw = pb.stride_w, pw = pb.pad_w;
  // Interior output columns [q_lo, q_hi): 0 <= q sw - pw and q sw - pw + (kw - 1) dw <= W - 1.
  const int64_t q_lo = std::min(pb.Q, (pw + sw - 1) / sw);
  const int64_t last = pb.W - 1 + pw - (pb.kernel_w - 1) * pb.dil_w;
  const int64_t q_hi = last < 0 ? q_lo : std::max(q_lo, std::min(pb.Q, last / sw + 1));
  const int64_t work = pb.Q * pb.kernel_h * pb.kernel_w;
  // Long rows read from DRAM: the hardware prefetchers did not keep up with the window's rows read
  // in turn (VGG's 64 @ 224 2x2/2, N=1, in-process: 1.4-1.5x faster with this prefetch). On rows
  // of 112 and 28 floats, or an input that stays in L3, it cost 5-15%: off there.
  const int64_t row_bytes = pb.W * int64_t(sizeof(T)), advance = pb.stride_h * xs[2] * int64_t(sizeof(T));
  const bool prefetch = xs[2] == pb.W && row_bytes >= 512 && pb.N * pb.C * pb.H * row_bytes >= (int64_t(8) << 20);
  // Rows of one vector or less, all interior: kShortRows at a time (fwd_nchw_short_rows).
  constexpr int kShortRows = 4;
  const bool short_rows = q_lo == 0 && q_hi == pb.Q && pb.Q <= V::kW;
  parallel_for(0, pb.N * pb.C * pb.P, std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work)),
               [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      if (short_rows && row + kShortRows <= e) {
        const T* x0[kShortRows];
        T* yg[kShortRows];
        WinT* ig[kShortRows];
        int64_t h_first[kShortRows];
        Taps first{0, 0};
        bool same = true;
        // (n, c, p) of the first row, then stepped: the divisions had cost as much as the pooling.
        int64_t p = row % pb.P, c = (row / pb.P) % pb.C, n = row / (pb.P * pb.C);
        for (int g = 0; g < kShortRows && same; ++g) {
          if (g > 0 && ++p == pb.P) {
            p = 0;
            if (++c == pb.C) c = 0, ++n;
          }
          const int64_t h0 = p * pb.stride_h - pb.pad_h;
          const Taps ti = in_bounds_taps(h0, pb.kernel_h, pb.dil_h, pb.H);
          if (g == 0) first = ti;
          same = !ti.empty() && ti.lo == first.lo && ti.hi == first.hi;
          h_first[g] = h0 + ti.lo * pb.dil_h;
          x0[g] = x + n * xs[0] + c * xs[1] + h_first[g] * xs[2];
          yg[g] = y + n * ys[0] + c * ys[1] + p * ys[2];
          ig[g] = kIdx ? winners + n * is[0] + c * is[1] + p * is[2] : nullptr;
        }
        if (same) {  // pw is 0 here (q_lo == 0): the rows start at column 0
          const int outputs = static_cast<int>(pb.Q);
          if (outputs == V::kW)
            fwd_nchw_short_rows<V, kOut, kStride, kShortRows, false>(x0, h_first, pb, xs[2], first.lo, first.hi - first.lo,
                                                                     0, yg, ig, outputs);
          else
            fwd_nchw_short_rows<V, kOut, kStride, kShortRows, true>(x0, h_first, pb, xs[2], first.lo, first.hi - first.lo,
                                                                    0, yg, ig, outputs);
          row += kShortRows - 1;
          continue;
        }
      }
      const int64_t p = row % pb.P, c = (row / pb.P) % pb.C, n = row / (pb.P * pb.C);
      const T* plane = x + n * xs[0] + c * xs[1];
      T* yr = y + n * ys[0] + c * ys[1] + p * ys[2];
      WinT* ir = kIdx ? winners + n * is[0] + c * is[1] + p * is[2] : nullptr;
      const int64_t h0 = p * pb.stride_h - pb.pad_h;
      const Taps ti = in_bounds_taps(h0, pb.kernel_h, pb.dil_h, pb.H);
      const bool vector = !ti.empty();  // else every window of the row misses the input
      if (prefetch) {  // the lines this row's successors will need, kPrefetchAhead further on
        const T* next = plane + std::min(pb.H, h0 + (pb.kernel_h - 1) * pb.dil_h + 1) * xs[2];
        const char* ahead = reinterpret_cast<const char*>(next) + kPrefetchAhead;
        for (int64_t off = 0; off < advance; off += 64) __builtin_prefetch(ahead + off);
      }
      for (int64_t q = 0; q < pb.Q; ++q) {
        if (vector && q == q_lo) q = q_hi;  // interior columns below
        if (q >= pb.Q) break;
        scalar_output(plane, xs[2], xs[3], pb, h0, ti, q * sw - pw, yr + q, kIdx ? ir + q : nullptr);
      }
      if (vector)
        fwd_nchw_interior<V, kOut, kStride>(plane, xs[2], pb, h0 + ti.lo * pb.dil_h, ti.lo, ti.hi - ti.lo, q_lo, q_hi,
                                            yr, ir);
    }
  });
}

// ---- forward, NCHW by rows (dilation 1, column stride 1 or 2) ----------------------------------

// The window max is separable: a row pass takes each input row's max over every output's kernel_w
// columns, a column pass the max of those over the window's rows. Rows first keeps the reference's
// order (row-major; a later candidate replaces the best when v > best || isnan(v)), so values,
// ties, signed zeros, NaN payloads and winners all come out as the reference's. Each input row's
// pass runs once and serves every output row whose window holds it (3x3/2: two row passes per
// output row where the window-by-window kernel visited three rows). The row pass reads a float
// copy of the row padded with -inf, so border windows and the last, partial vector need no
// masked loads or scalar code: a padded tap never replaces a best. With winners, a lane whose
// window starts in the padding and whose real taps are all -inf keeps its padded first tap; it
// gets its first in-bounds tap instead (`first_real`), as the reference reports.

// One row pass: out[q] = the row's max over columns [q s, q s + kw) of `row` (padded coordinates),
// and with winners out_col[q] = the winning column j within the window, for nv vectors of outputs.
// `first_real[q]` (q < q_pad) is output q's first in-bounds column. kNaNFree: the rule without its
// NaN half, and the return value says whether the row held a NaN after all (then the pass must be
// run again without kNaNFree). The check sums loads that together cover every column a window
// reads (stride 1: each vector's first and last tap; stride 2: every pair of loads): the sum is
// NaN if some element is, or if +inf meets -inf, which only costs the second pass.
template <class V, bool kIdx, bool kNaNFree, int kStride>
inline bool fwd_nchw_row_pass(const float* row, int64_t kw, int64_t nv, int64_t q_pad, const uint8_t* first_real,
                              float* out, uint8_t* out_col) {
  using F = typename V::F;
  constexpr int64_t kW = V::kW;
  F sum = V::zero();
  for (int64_t v = 0; v < nv; ++v) {
    const float* base = row + v * kW * kStride;
    typename V::I col = V::set1i(0);
    F best;  // assigned once here, before any loop: GCC then keeps it in a register
    if constexpr (kStride == 1) {
      best = V::load(base);
      if (kNaNFree) sum = V::add(sum, V::add(best, V::load(base + kw - 1)));
      for (int64_t j = 1; j < kw; ++j)
        visit_tap<V, kIdx, kNaNFree>(best, col, V::load(base + j), V::set1i(static_cast<int32_t>(j)));
    } else {
      // The two loads that hold column j of every lane's window (base + j + 2 l) hold column j + 1
      // too; the even/odd shuffles leave the lanes permuted alike for every column (AVX2: outputs
      // 0 1 4 5 2 3 6 7), which unraw undoes once per vector.
      const F lo0 = V::load(base), hi0 = V::load(base + kW);
      if (kNaNFree) sum = V::add(sum, V::add(lo0, hi0));
      best = V::even_raw(lo0, hi0);
      if (kw > 1) visit_tap<V, kIdx, kNaNFree>(best, col, V::odd_raw(lo0, hi0), V::set1i(1));
      for (int64_t j = 2; j < kw; j += 2) {
        const F lo = V::load(base + j), hi = V::load(base + j + kW);
        if (kNaNFree) sum = V::add(sum, V::add(lo, hi));
        visit_tap<V, kIdx, kNaNFree>(best, col, V::even_raw(lo, hi), V::set1i(static_cast<int32_t>(j)));
        if (j + 1 < kw)
          visit_tap<V, kIdx, kNaNFree>(best, col, V::odd_raw(lo, hi), V::set1i(static_cast<int32_t>(j + 1)));
      }
      best = V::unraw(best);
      if (kIdx) col = V::unraw(col);
    }
    V::store(out + v * kW, best);
    if constexpr (kIdx) {
      if (v * kW < q_pad) col = V::select(V::equal(col, V::set1i(0)), col, V::load_index32(first_real + v * kW));
      V::store_index(out_col + v * kW, col);
    }
  }
  if (!kNaNFree) return true;
  alignas(64) float lanes[kW];
  V::store(lanes, sum);
  bool nan = false;
  for (int l = 0; l < kW; ++l) nan |= std::isnan(lanes[l]);
  return nan;
}

// One output row's column pass: the window's rows in order (their row passes at row_val[r]),
// starting from the first in-bounds row's result, which is what the reference's start from -inf
// at that row's first in-bounds tap gives. Winners: tap number i kw + j, or plane index h W + j
// plus the window's first column (row_part[r] holds i kw or h W).
template <class V, Winner kOut, bool kNaNFree, int kStride, typename T>
inline void fwd_nchw_column_pass(const float* const* row_val, const uint8_t* const* row_win, const int32_t* row_part,
                                 int64_t rows, int64_t nv, int64_t Q, int64_t pw, T* yr, WinnerT<kOut>* ir) {
  constexpr bool kIdx = kOut != Winner::kNone;
  constexpr int64_t kW = V::kW;
  for (int64_t v = 0; v < nv; ++v) {
    const int64_t o = v * kW;
    typename V::F best = V::load(row_val[0] + o);
    typename V::I win = V::set1i(0);
    if constexpr (kIdx) win = V::add(V::load_index32(row_win[0] + o), V::set1i(row_part[0]));
    for (int64_t r = 1; r < rows; ++r) {
      typename V::I tap = V::set1i(0);
      if constexpr (kIdx) tap = V::add(V::load_index32(row_win[r] + o), V::set1i(row_part[r]));
      visit_tap<V, kIdx, kNaNFree>(best, win, V::load(row_val[r] + o), tap);
    }
    if (kOut == Winner::kIndex)
      win = V::add(win, V::iota_times(kStride, static_cast<int32_t>(o * kStride - pw)));
    const int n_out = static_cast<int>(std::min<int64_t>(kW, Q - o));
    if (n_out == kW) {
      V::store(yr + o, best);
      if (kIdx) V::store_index(ir + o, win);
    } else {
      V::store_n(yr + o, best, n_out);
      if (kIdx) V::store_index_n(ir + o, win, n_out);
    }
  }
}

template <class V, Winner kOut, int kStride, typename T>
void fwd_nchw_rows(const MaxPool2dFwdArgs& a) {
  constexpr int64_t kW = V::kW;
  using Ops = FwdOperands<kOut, T>;
  using WinT = typename Ops::WinT;
  constexpr bool kIdx = Ops::kIdx;
  const auto [pb, x, y, winners, xs, ys, is] = Ops(a);
  const int64_t kh = pb.kernel_h, kw = pb.kernel_w, pw = pb.pad_w, W = pb.W, Q = pb.Q, xs2 = xs[2];
  const int64_t nv = (Q + kW - 1) / kW, qv = nv * kW;
  // Padded row: column pw + w holds input column w. The last vector's loads reach
  // (qv - 1) s + kw - 1 + kW (stride 1) or 2 qv + kw - 2 (stride 2); pw + W is below both.
  const int64_t row_len = qv * kStride + kw + 2 * kW;
  // Outputs whose window starts in the padding, and each one's first in-bounds column.
  const int64_t q_pad = std::min(pb.Q, (pw + kStride - 1) / kStride);
  std::vector<uint8_t> first_real(kIdx ? (q_pad + kW - 1) / kW * kW : 0, 0);
  for (int64_t q = 0; q < q_pad && kIdx; ++q) first_real[q] = static_cast<uint8_t>(pw - q * kStride);
  // Work items: bands of output rows of one plane; whole planes unless there are too few to share.
  const int64_t planes = pb.N * pb.C;
  const int64_t bands_per_plane =
      std::min(pb.P, std::max<int64_t>(1, (4 * parallel_threads() + planes - 1) / planes));
  const int64_t band_rows = (pb.P + bands_per_plane - 1) / bands_per_plane;
  const int64_t bands = (pb.P + band_rows - 1) / band_rows;
  const int64_t work = band_rows * pb.Q * kh * kw;
  const int64_t grain = std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work));
  parallel_for(0, planes * bands, grain, [&](int64_t b, int64_t e) {
    std::vector<float> row(row_len, kNegInf);  // only [pw, pw + W) is ever written
    std::vector<float> row_max(kh * qv);         // slot h % kh: input row h's pass
    std::vector<uint8_t> row_col(kIdx ? kh * qv : 0);
    std::vector<int64_t> held(kh, -1);          // the input row each slot holds
    std::vector<char> has_nan(kh);              // and whether that row holds a NaN
    std::vector<const float*> row_val(kh);
    std::vector<const uint8_t*> row_win(kh);
    std::vector<int32_t> row_part(kh);
    int64_t held_plane = -1;
    for (int64_t item = b; item < e; ++item) {
      const int64_t plane = item / bands, n = plane / pb.C, c = plane % pb.C;
      if (plane != held_plane) std::fill(held.begin(), held.end(), -1), held_plane = plane;
      const T* xp = x + n * xs[0] + c * xs[1];
      const int64_t p_begin = item % bands * band_rows, p_end = std::min(pb.P, p_begin + band_rows);
      for (int64_t p = p_begin; p < p_end; ++p) {
        const int64_t h0 = p * pb.stride_h - pb.pad_h;
        const Taps ti = in_bounds_taps(h0, kh, 1, pb.H);
        T* yr = y + n * ys[0] + c * ys[1] + p * ys[2];
        WinT* ir = kIdx ? winners + n * is[0] + c * is[1] + p * is[2] : nullptr;
        if (ti.empty()) {  // every window of the row misses the input
          for (int64_t q = 0; q < pb.Q; ++q)
            scalar_output(xp, xs[2], xs[3], pb, h0, ti, q * kStride - pw, yr + q, kIdx ? ir + q : nullptr);
          continue;
        }
        // This output row's window rows: where their passes are, and what a winner in each adds.
        const int64_t rows = ti.hi - ti.lo;
        bool window_nan = false;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = ti.lo + r, h = h0 + i, slot = h % kh;
          row_val[r] = row_max.data() + slot * qv;
          if (kIdx) row_win[r] = row_col.data() + slot * qv;
          row_part[r] = static_cast<int32_t>(kOut == Winner::kTap ? i * kw : h * W);
          if (held[slot] == h) {
            window_nan |= has_nan[slot];
            continue;
          }
          const T* src = xp + h * xs2;
          float* dst = row.data() + pw;
          int64_t w = 0;
          for (; w + kW <= W; w += kW) V::store(dst + w, V::load(src + w));
          for (; w < W; ++w) dst[w] = load_acc(src + w);
          float* out = row_max.data() + slot * qv;
          uint8_t* out_col = kIdx ? row_col.data() + slot * qv : nullptr;
          const uint8_t* fr = first_real.data();
          const bool nan = fwd_nchw_row_pass<V, kIdx, true, kStride>(row.data(), kw, nv, q_pad, fr, out, out_col);
          if (nan) fwd_nchw_row_pass<V, kIdx, false, kStride>(row.data(), kw, nv, q_pad, fr, out, out_col);
          held[slot] = h, has_nan[slot] = nan, window_nan |= nan;
        }
        if (window_nan)
          fwd_nchw_column_pass<V, kOut, false, kStride>(row_val.data(), row_win.data(), row_part.data(), rows, nv, Q,
                                                        pw, yr, ir);
        else
          fwd_nchw_column_pass<V, kOut, true, kStride>(row_val.data(), row_win.data(), row_part.data(), rows, nv, Q,
                                                       pw, yr, ir);
      }
    }
  });
}

// ---- backward, channels_last ----------------------------------------------------------------

// One output pixel, NV channel vectors (or one vector of n < V::kW channels when kTail): the
// gradient goes to the tap whose plane index the lane's stored index names (or whose tap number
// the stored tap names: WinT uint8_t, tap_index then holds tap numbers). The index is read
// once and narrowed to int32 (saturating: an out-of-plane value cannot alias a pixel), then each
// in-bounds tap costs one compare and a masked add into dx (hot in L1: the same few rows). With
// kDisjoint (no other window has this tap) the tap is stored instead, g + 0 or 0, without reading
// dx: g + 0 is what PyTorch's 0 + g gives, -0 included.
template <class V, bool kDisjoint, int NV, bool kTail, typename T, typename WinT>
inline void bwd_nhwc_block(const T* dy, const WinT* index, const int64_t* off, const int32_t* tap_index,
                           int64_t taps, float* dx, int n) {
  typename V::I idx[NV];
  typename V::F g[NV];
  for (int v = 0; v < NV; ++v) {
    idx[v] = kTail ? V::load_index32_n(index, n) : V::load_index32(index + v * V::kW);
    g[v] = kTail ? V::load_n(dy, n) : V::load(dy + v * V::kW);
    if (kDisjoint) g[v] = V::add(g[v], V::zero());
  }
  for (int64_t t = 0; t < taps; ++t) {
    const typename V::I ti = V::set1i(tap_index[t]);
    float* d = dx + off[t];
    for (int v = 0; v < NV; ++v) {
      const typename V::M hit = V::equal(idx[v], ti);
      if (kDisjoint) {
        const typename V::F val = V::select(hit, V::zero(), g[v]);
        if (kTail) V::store_n(d, val, n); else V::store(d + v * V::kW, val);
      } else {
        if (kTail) V::store_n(d, V::add_where(hit, V::load_n(d, n), g[v]), n);
        else V::store(d + v * V::kW, V::add_where(hit, V::load(d + v * V::kW), g[v]));
      }
    }
  }
}

// A thread owns a band of dx rows of one image (all channels): no other thread writes them, so no
// atomics. It visits, in row-major order, every window with a tap in its band and adds only into
// its own rows (a window straddling two bands is visited by both), so each dx element sums its
// gradients in PyTorch's order, from +0. Overlapping windows: rows are zeroed just before the first
// window reaches them, while they are in cache, and rows no window reaches at the end. Disjoint
// windows (kDisjoint): every tap is stored once, and only the pixels no window covers are zeroed.
template <class V, bool kDisjoint, typename T, typename WinT>
void bwd_nhwc(const MaxPool2dBwdArgs& a) {
  constexpr bool kTaps = std::is_same_v<WinT, uint8_t>;
  const WinT* const winners = winners_of<WinT>(a);
  const Pool2dProblem& pb = a.p;
  const T* dy = static_cast<const T*>(a.dy.data);
  T* dx = static_cast<T*>(a.dx.data);
  const int64_t *dys = a.dy.stride, *dxs = a.dx.stride, *is = a.index_stride;
  const int64_t C = pb.C;
  // At least 8 bands over the batch, to balance the threads.
  const int64_t bands_wanted = std::min(pb.H, (8 + pb.N - 1) / pb.N);
  const int64_t band_rows = (pb.H + bands_wanted - 1) / bands_wanted;
  const int64_t bands = (pb.H + band_rows - 1) / band_rows;
  // Disjoint windows: which input rows and columns some window has a tap on.
  std::vector<char> row_covered, col_covered;
  if (kDisjoint) {
    row_covered.assign(pb.H, 0);
    col_covered.assign(pb.W, 0);
    for (int64_t p = 0; p < pb.P; ++p) {
      const int64_t h0 = p * pb.stride_h - pb.pad_h;
      const Taps ti = in_bounds_taps(h0, pb.kernel_h, pb.dil_h, pb.H);
      for (int64_t i = ti.lo; i < ti.hi; ++i) row_covered[h0 + i * pb.dil_h] = 1;
    }
    for (int64_t q = 0; q < pb.Q; ++q) {
      const int64_t w0 = q * pb.stride_w - pb.pad_w;
      const Taps tj = in_bounds_taps(w0, pb.kernel_w, pb.dil_w, pb.W);
      for (int64_t j = tj.lo; j < tj.hi; ++j) col_covered[w0 + j * pb.dil_w] = 1;
    }
  }
  parallel_for(0, pb.N * bands, 1, [&](int64_t b, int64_t e) {
    std::vector<int64_t> off(pb.kernel_h * pb.kernel_w);
    std::vector<int32_t> tap_index(pb.kernel_h * pb.kernel_w);
    std::vector<float> band;  // bfloat16: the band's float sums
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / bands, hb = (item % bands) * band_rows, he = std::min(pb.H, hb + band_rows);
      // Sums go to acc + (h - row0) rs + w ps: dx itself for float32, else a float band of rows [hb, he).
      float* acc;
      int64_t row0 = 0, rs = dxs[2], ps = dxs[3];
      if constexpr (std::is_same_v<T, float>) {
        acc = dx + n * dxs[0];
      } else {
        band.resize((he - hb) * pb.W * C);
        acc = band.data(), row0 = hb, rs = pb.W * C, ps = C;
      }
      const bool dense_rows = ps == C;  // a row is W C consecutive floats
      const T* dyn = dy + n * dys[0];
      const WinT* ixn = winners + n * is[0];
      auto zero_row = [&](int64_t h) {
        float* row = acc + (h - row0) * rs;
        if (dense_rows) {
          std::memset(row, 0, pb.W * C * sizeof(float));
        } else {
          for (int64_t w = 0; w < pb.W; ++w) std::memset(row + w * ps, 0, C * sizeof(float));
        }
      };
      int64_t zeroed = hb;  // overlapping windows: rows [hb, zeroed) are zero or hold gradients
      auto zero_rows_below = [&](int64_t end) {
        for (; zeroed < end; ++zeroed) zero_row(zeroed);
      };
      if (kDisjoint) {
        for (int64_t h = hb; h < he; ++h) {
          if (!row_covered[h]) {
            zero_row(h);
            continue;
          }
          for (int64_t w = 0; w < pb.W; ++w)
            if (!col_covered[w]) std::memset(acc + (h - row0) * rs + w * ps, 0, C * sizeof(float));
        }
      }
      // Windows p with a tap row h0 + i dh in [hb, he), h0 = p sh - ph: p sh >= hb + ph - (kh - 1) dh
      // and p sh <= he - 1 + ph.
      const int64_t lo = hb + pb.pad_h - (pb.kernel_h - 1) * pb.dil_h;
      const int64_t p_lo = lo <= 0 ? 0 : (lo + pb.stride_h - 1) / pb.stride_h;
      const int64_t p_hi = std::min(pb.P - 1, (he - 1 + pb.pad_h) / pb.stride_h);
      for (int64_t p = p_lo; p <= p_hi; ++p) {
        const int64_t h0 = p * pb.stride_h - pb.pad_h;
        // Taps in the band (inside the input, since the band is).
        const Taps ti = in_bounds_taps(h0 - hb, pb.kernel_h, pb.dil_h, he - hb);
        if (ti.empty()) continue;
        if (!kDisjoint) zero_rows_below(h0 + (ti.hi - 1) * pb.dil_h + 1);
        for (int64_t q = 0; q < pb.Q; ++q) {
          const int64_t w0 = q * pb.stride_w - pb.pad_w;
          const Taps tj = in_bounds_taps(w0, pb.kernel_w, pb.dil_w, pb.W);
          int64_t taps = 0;
          for (int64_t i = ti.lo; i < ti.hi; ++i) {
            const int64_t h = h0 + i * pb.dil_h;
            for (int64_t j = tj.lo; j < tj.hi; ++j, ++taps) {
              const int64_t w = w0 + j * pb.dil_w;
              off[taps] = (h - row0) * rs + w * ps;
              tap_index[taps] = static_cast<int32_t>(winner_value<kTaps>(pb, h0, w0, i, j));
            }
          }
          if (taps == 0) continue;
          const T* g = dyn + p * dys[2] + q * dys[3];
          const WinT* ix = ixn + p * is[2] + q * is[3];
          int64_t c = 0;
          for (; c + 4 * V::kW <= C; c += 4 * V::kW)
            bwd_nhwc_block<V, kDisjoint, 4, false>(g + c, ix + c, off.data(), tap_index.data(), taps, acc + c,
                                                   V::kW);
          for (; c + V::kW <= C; c += V::kW)
            bwd_nhwc_block<V, kDisjoint, 1, false>(g + c, ix + c, off.data(), tap_index.data(), taps, acc + c,
                                                   V::kW);
          if (c < C)
            bwd_nhwc_block<V, kDisjoint, 1, true>(g + c, ix + c, off.data(), tap_index.data(), taps, acc + c,
                                                  static_cast<int>(C - c));
        }
      }
      if (!kDisjoint) zero_rows_below(he);
      if constexpr (!std::is_same_v<T, float>) {  // round the band into dx
        for (int64_t h = hb; h < he; ++h)
          for (int64_t w = 0; w < pb.W; ++w) narrow<V>(acc + (h - row0) * rs + w * ps, dx + n * dxs[0] + h * dxs[2] + w * dxs[3], C);
      }
    }
  });
}

// ---- backward, NCHW -------------------------------------------------------------------------

// bwd_nchw's vector scatter takes rows of at least this many outputs (below, the scalar loop won).
constexpr int64_t kScatterMinQ = 10;

// Taps (kTaps): tap t of window (p, q) is plane index h0 W + w0 + tap_offset[t]; the offsets of
// tap numbers past the window's last are so negative that the bounds check drops them.
template <class V, typename T, bool kTaps>
void bwd_nchw(const MaxPool2dBwdArgs& a) {
  const Pool2dProblem& pb = a.p;
  const T* dy = static_cast<const T*>(a.dy.data);
  T* dx = static_cast<T*>(a.dx.data);
  const int64_t *dys = a.dy.stride, *dxs = a.dx.stride, *is = a.index_stride;
  const uint64_t plane_size = static_cast<uint64_t>(pb.H * pb.W);
  int64_t tap_offset[kMaxPoolMaxTaps];
  if (kTaps) {
    for (int64_t t = 0; t < kMaxPoolMaxTaps; ++t)
      tap_offset[t] = t < pb.kernel_h * pb.kernel_w ? tap_plane_index(pb, 0, 0, t / pb.kernel_w, t % pb.kernel_w)
                                                    : std::numeric_limits<int64_t>::min() / 2;
  }
  const int64_t work = pb.H * pb.W + pb.P * pb.Q;
  // Vector scatter (AVX-512): taps of disjoint windows, at most 16 taps a window, rows of dy and
  // taps dense, every window holding an input element. Each valid tap (tap number below kernel_h
  // kernel_w) then names an element of its own window, and disjoint windows share none, so a
  // vector's lanes never collide: dx = g + 0 is stored, which is PyTorch's 0 + g on the zeroed
  // plane. In-process A/B against the scalar loop, arms in random order, Zen 5, 2 threads, 2x2/2:
  // 512 @ 28 (14 outputs a row) N=1 1.23-1.33x, N=8 1.24x, bfloat16 1.23x; @ 20 1.03-1.1x; but
  // @ 16 0.92x and @ 14 0.85x: rows of fewer than kScatterMinQ outputs stay scalar.
  const int64_t window_taps = pb.kernel_h * pb.kernel_w;
  bool scatter = false;
  alignas(64) int32_t tap_offset32[16] = {};
  if constexpr (V::kScatter && kTaps) {
    scatter = windows_disjoint(pb) && pb.Q >= kScatterMinQ && window_taps <= 16 && dys[3] == 1 && is[3] == 1 &&
              plane_size <= uint64_t(std::numeric_limits<int32_t>::max()) && !has_empty_row_window(pb) &&
              !has_empty_column_window(pb);
    for (int64_t t = 0; t < window_taps && scatter; ++t) tap_offset32[t] = static_cast<int32_t>(tap_offset[t]);
  }
  parallel_for(0, pb.N * pb.C, std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work)),
               [&](int64_t b, int64_t e) {
    std::vector<float> sums;  // bfloat16: the plane's float sums
    if (!std::is_same_v<T, float>) sums.resize(plane_size);
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % pb.C, n = nc / pb.C;
      T* dx_plane = dx + n * dxs[0] + c * dxs[1];  // dense: W columns per row, rows back to back
      float* plane;
      if constexpr (std::is_same_v<T, float>) plane = dx_plane; else plane = sums.data();
      std::memset(plane, 0, plane_size * sizeof(float));
      for (int64_t p = 0; p < pb.P; ++p) {
        const int64_t at = n * is[0] + c * is[1] + p * is[2];
        const T* gr = dy + n * dys[0] + c * dys[1] + p * dys[2];
        const int64_t row_base = (p * pb.stride_h - pb.pad_h) * pb.W - pb.pad_w;  // window (p, 0)'s tap 0
        if constexpr (V::kScatter && kTaps) {
          if (scatter) {
            for (int64_t q = 0; q < pb.Q; q += V::kW) {
              const int nq = static_cast<int>(std::min<int64_t>(V::kW, pb.Q - q));
              const typename V::I tap =
                  nq == V::kW ? V::load_index32(a.taps + at + q) : V::load_index32_n(a.taps + at + q, nq);
              const typename V::M valid = V::below(V::first(nq), tap, static_cast<int32_t>(window_taps));
              // window q + l's tap 0, plus the tap's offset from it
              const typename V::I first_tap = V::iota_times(static_cast<int32_t>(pb.stride_w),
                                                            static_cast<int32_t>(row_base + q * pb.stride_w));
              const typename V::I k = V::add(first_tap, V::lookup16(tap_offset32, tap));
              const typename V::F g = nq == V::kW ? V::load(gr + q) : V::load_n(gr + q, nq);
              V::scatter(plane, V::below(valid, k, static_cast<int32_t>(plane_size)), k, V::add(g, V::zero()));
            }
            continue;
          }
        }
        for (int64_t q = 0; q < pb.Q; ++q) {
          const int64_t k = kTaps ? row_base + q * pb.stride_w + tap_offset[a.taps[at + q * is[3]]]
                                  : a.indices[at + q * is[3]];
          // An index outside the plane (a window that missed the input) routes nothing.
          if (static_cast<uint64_t>(k) < plane_size) plane[k] += load_acc(gr + q * dys[3]);
        }
      }
      if constexpr (!std::is_same_v<T, float>) narrow<V>(plane, dx_plane, static_cast<int64_t>(plane_size));
    }
  });
}

// n <= V::kW consecutive dy values, and winners as int32 (lanes n and up: 0 and -1), for the
// vector backward kernels below.
template <class V>
inline typename V::F load_upto(const float* p, int n) { return n == V::kW ? V::load(p) : V::load_n(p, n); }
template <class V, typename WinT>
inline typename V::I load_index32_upto(const WinT* p, int n) {
  return n == V::kW ? V::load_index32(p) : V::load_index32_n(p, n);
}

// d[0 .. 2n) = even0 odd0 even1 odd1 ... for n <= V::kW. A partial vector goes out by masked
// stores: through a stack copy, the memcpy of 2n floats compiled to `rep movsq`, where the stem's
// backward (56 windows a row: one vector in four partial) spent a quarter of its samples (in-process
// A/B, arms in random order, Zen 5, 2 threads, N=1, taps: 3x3/2 64 @ 112 0.175 -> 0.137 ms, 2x2/2
// 256 @ 56 0.120 -> 0.100, 128 @ 112 0.135 -> 0.116; N=8 within noise).
template <class V>
inline void store_interleaved_upto(float* d, typename V::F even, typename V::F odd, int n) {
  if (n == V::kW) return V::store_interleaved(d, even, odd);
  V::store_interleaved_n(d, even, odd, n);
}

// Disjoint 2-column windows (float32; kernel_w = stride_w = 2, dilation_w 1, pad_w 0, 2 Q <= W, and
// windows that do not overlap along H either): every dx element has at most one window, so dx is
// written once, without zeroing the plane first or a read-modify-write per output. A dx row h
// under tap row i of window row p takes, per V::kW outputs, one load of dy and of the winners, two
// compares (is the winner tap (i, 0)? (i, 1)?) and the two selections interleaved into 2 V::kW
// columns; g + 0 as PyTorch's 0 + g gives (+0 for -0). Rows and columns under no window are zeros.
template <class V, typename WinT>
void bwd_nchw_disjoint2(const MaxPool2dBwdArgs& a) {
  constexpr bool kTaps = std::is_same_v<WinT, uint8_t>;
  const WinT* const winners = winners_of<WinT>(a);
  const Pool2dProblem& pb = a.p;
  const float* dy = static_cast<const float*>(a.dy.data);
  float* dx = static_cast<float*>(a.dx.data);
  const int64_t *dys = a.dy.stride, *dxs = a.dx.stride, *is = a.index_stride;
  // Row h of dx lies under tap row row_tap[h] of window row row_window[h], or under none (-1).
  std::vector<int64_t> row_window(pb.H, -1), row_tap(pb.H, -1);
  for (int64_t p = 0; p < pb.P; ++p) {
    const int64_t h0 = p * pb.stride_h - pb.pad_h;
    const Taps ti = in_bounds_taps(h0, pb.kernel_h, pb.dil_h, pb.H);
    for (int64_t i = ti.lo; i < ti.hi; ++i) row_window[h0 + i * pb.dil_h] = p, row_tap[h0 + i * pb.dil_h] = i;
  }
  const int64_t Q = pb.Q, W = pb.W, qv = Q - Q % V::kW, rem = Q - qv;
  // V::kW outputs from q on: dx columns 2 q .. 2 q + 2 kW - 1 of row d. left: what names tap
  // (i, 0) of lane 0's window (tap number 2 i, or plane index h W + 2 q), step: its lane stride.
  auto outputs = [&](const float* g, const WinT* w, int32_t left, int32_t step, float* d, int n) {
    const typename V::F gv = V::add(load_upto<V>(g, n), V::zero());
    const typename V::I win = load_index32_upto<V>(w, n);
    const typename V::I l0 = V::iota_times(step, left);
    const typename V::F even = V::select(V::equal(win, l0), V::zero(), gv);
    const typename V::F odd = V::select(V::equal(win, V::add(l0, V::set1i(1))), V::zero(), gv);
    store_interleaved_upto<V>(d, even, odd, n);
  };
  parallel_for(0, pb.N * pb.C, std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, pb.H * W)),
               [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % pb.C, n = nc / pb.C;
      for (int64_t h = 0; h < pb.H; ++h) {
        float* d = dx + n * dxs[0] + c * dxs[1] + h * dxs[2];
        const int64_t p = row_window[h];
        if (p < 0) {
          std::memset(d, 0, W * sizeof(float));
          continue;
        }
        const float* g = dy + n * dys[0] + c * dys[1] + p * dys[2];
        const WinT* wr = winners + n * is[0] + c * is[1] + p * is[2];
        const int32_t step = kTaps ? 0 : 2;
        const int32_t left = kTaps ? static_cast<int32_t>(2 * row_tap[h]) : static_cast<int32_t>(h * W);
        for (int64_t q = 0; q < qv; q += V::kW)
          outputs(g + q, wr + q, left + step * static_cast<int32_t>(q), step, d + 2 * q, V::kW);
        if (rem) outputs(g + qv, wr + qv, left + step * static_cast<int32_t>(qv), step, d + 2 * qv, static_cast<int>(rem));
        if (2 * Q < W) std::memset(d + 2 * Q, 0, (W - 2 * Q) * sizeof(float));
      }
    }
  });
}

// The ResNet stem's 3x3/2 windows with padding 1 (float32, dilation 1, W = 2 Q, H = 2 P): windows
// overlap by one row and one column, so dx is summed, but in a fixed pattern. Window (p, q) covers
// dx rows 2p - 1 + i and columns 2q - 1 + j: dx column 2q is tap column 1 of window q alone, column
// 2q + 1 tap column 2 of window q and then tap column 0 of window q + 1; the same for rows. Per
// window row p and V::kW windows, dy and the winners are loaded once (and once more shifted by a
// window, for the column-0 taps of windows q + 1); each tap row i gives a pair of vectors (dx
// columns 2q, 2q + 1), stored interleaved into dx row 2p - 1 + i. Row 2p + 1 is also reached by
// window row p + 1: its sums wait in a carry row (L1) and p + 1 adds to them. Every dx element
// thus sums in PyTorch's row-major window order from +0: bit for bit the same.
template <class V, typename WinT>
void bwd_nchw_3x3s2p1(const MaxPool2dBwdArgs& a) {
  constexpr bool kTaps = std::is_same_v<WinT, uint8_t>;
  const WinT* const winners = winners_of<WinT>(a);
  const Pool2dProblem& pb = a.p;
  const float* dy = static_cast<const float*>(a.dy.data);
  float* dx = static_cast<float*>(a.dx.data);
  const int64_t *dys = a.dy.stride, *dxs = a.dx.stride, *is = a.index_stride;
  const int64_t P = pb.P, Q = pb.Q, W = pb.W;
  parallel_for(0, pb.N * pb.C, std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, pb.H * W)),
               [&](int64_t b, int64_t e) {
    std::vector<float> carry(W + 2 * V::kW);  // dx row 2p + 1 so far (interleaved, like dx)
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % pb.C, n = nc / pb.C;
      float* dx_plane = dx + n * dxs[0] + c * dxs[1];
      for (int64_t p = 0; p < P; ++p) {
        const float* g = dy + n * dys[0] + c * dys[1] + p * dys[2];
        const WinT* w = winners + n * is[0] + c * is[1] + p * is[2];
        float* row_up = p > 0 ? dx_plane + (2 * p - 1) * dxs[2] : nullptr;  // tap row 0 (+ carry)
        float* row_mid = dx_plane + 2 * p * dxs[2];                             // tap row 1
        for (int64_t q = 0; q < Q; q += V::kW) {
          const int nq = static_cast<int>(std::min<int64_t>(V::kW, Q - q));      // windows q + l
          const int nq1 = static_cast<int>(std::min<int64_t>(V::kW, Q - q - 1));  // windows q + 1 + l
          const typename V::F g0 = load_upto<V>(g + q, nq), g1 = load_upto<V>(g + q + 1, nq1);
          const typename V::I w0 = load_index32_upto<V>(w + q, nq), w1 = load_index32_upto<V>(w + q + 1, nq1);
          // Tap (i, j) of window q + u + l (u = 0, 1) as the winners name it: tap number 3 i + j, or
          // the plane index (2p - 1 + i) W + 2 (q + u + l) - 1 + j.
          const typename V::I base = V::iota_times(2, static_cast<int32_t>((2 * p - 1) * W + 2 * q - 1));
          auto take = [&](const typename V::I& win, const typename V::F& gv, int32_t i, int32_t j, int32_t u) {
            const typename V::I tap =
                kTaps ? V::set1i(3 * i + j) : V::add(base, V::set1i(i * static_cast<int32_t>(W) + j + 2 * u));
            return V::select(V::equal(win, tap), V::zero(), gv);
          };
          for (int32_t i = 0; i < 3; ++i) {
            typename V::F even, odd;  // dx columns 2 (q + l) and 2 (q + l) + 1 of row 2p - 1 + i
            if (i == 0) {  // continue the carry row: window row p - 1's sums come first
              if (p == 0) continue;  // row -1 is padding
              V::uninterleave(carry.data() + 2 * q, even, odd);  // lanes past Q: never stored
            } else {
              even = odd = V::zero();
            }
            even = V::add(even, take(w0, g0, i, 1, 0));
            odd = V::add(V::add(odd, take(w0, g0, i, 2, 0)), take(w1, g1, i, 0, 1));
            float* dst = i == 0 ? row_up + 2 * q : i == 1 ? row_mid + 2 * q : carry.data() + 2 * q;
            store_interleaved_upto<V>(dst, even, odd, nq);
          }
        }
      }
      std::memcpy(dx_plane + (2 * P - 1) * dxs[2], carry.data(), W * sizeof(float));  // the last row
    }
  });
}

// In-process A/B against the scatter, 2 threads, Zen 4, 64 @ 112: N=1 taps 1.2-1.34x (indices
// even), N=8 1.1-1.3x. Rows under 48 windows (64 @ 56, 256 @ 28) gained nothing: scatter there.
inline bool is_3x3s2p1(const MaxPool2dBwdArgs& a) {
  const Pool2dProblem& pb = a.p;
  return pb.kernel_h == 3 && pb.kernel_w == 3 && pb.stride_h == 2 && pb.stride_w == 2 && pb.pad_h == 1 &&
         pb.pad_w == 1 && pb.dil_h == 1 && pb.dil_w == 1 && pb.W == 2 * pb.Q && pb.H == 2 * pb.P && pb.Q >= 48 &&
         a.dy.stride[3] == 1 && a.index_stride[3] == 1 && a.dx.stride[3] == 1;
}

// In-process A/B, 2 threads, Zen 4, 2x2/2 (taps; indices): 64 @ 224 N=1 AVX-512 2.5x, 1.75x, AVX2
// 3.1x, 2.0x; N=8 1.16-1.29x; 128 @ 112 N=1 1.45-2.3x.
constexpr int64_t kDisjoint2MinQ = 48;
// With one-byte taps (the training path) on AVX-512, from rows of more than one vector (Zen 5,
// taps: 256 @ 56 N=1 1.47x, N=8 1.38x, @ 40 1.38x, @ 34 1.29x; but int64 indices 256 @ 56 0.93x,
// AVX2 taps @ 40 0.76x, and rows of one vector or less, 512 @ 28 0.90x, 512 @ 14 0.58x).
constexpr int64_t kDisjoint2MinQTapsAvx512 = 17;
inline bool is_disjoint2(const MaxPool2dBwdArgs& a) {
  const Pool2dProblem& pb = a.p;
  return pb.kernel_w == 2 && pb.stride_w == 2 && pb.dil_w == 1 && pb.pad_w == 0 && 2 * pb.Q <= pb.W &&
         windows_disjoint(pb) && a.dy.stride[3] == 1 && a.index_stride[3] == 1 && a.dx.stride[3] == 1;
}

// ---- entry points -----------------------------------------------------------------------------

template <class V, Winner kOut, typename T>
void fwd_nchw_by_stride(const MaxPool2dFwdArgs& a) {
  switch (a.p.stride_w) {
    case 1: return fwd_nchw<V, kOut, 1, T>(a);
    case 2: return fwd_nchw<V, kOut, 2, T>(a);
    default: return fwd_nchw<V, kOut, 0, T>(a);
  }
}

}  // namespace pool_simd

// True when the layout-specific kernels run; false when the call goes to the reference loops.
template <class V, typename T>
bool max_pool2d_fwd_simd(const MaxPool2dFwdArgs& a) {
  using namespace pool_simd;
  const Pool2dProblem& pb = a.p;
  const int64_t *xs = a.x.stride, *ys = a.y.stride, *is = a.index_stride;
  const bool idx = a.indices != nullptr || a.taps != nullptr;
  // Index vectors are int32.
  if (pb.H * pb.W > std::numeric_limits<int32_t>::max()) return false;
  // A tensor with C == 1 is both; the row kernel fills its vectors, the channel kernel would not.
  if (pb.C > 1 && xs[1] == 1 && ys[1] == 1 && (!idx || is[1] == 1)) {
    if (a.taps) fwd_nhwc<V, Winner::kTap, T>(a);
    else if (a.indices) fwd_nhwc<V, Winner::kIndex, T>(a);
    else fwd_nhwc<V, Winner::kNone, T>(a);
    return true;
  }
  if (xs[3] == 1 && ys[3] == 1 && (!idx || is[3] == 1)) {
    // Row passes shared by output rows (fwd_nchw_rows) where windows overlap along the rows, with
    // dilation 1, column stride 1 or 2 and window columns numbered within a byte. Without overlap
    // there is nothing to share, and the copy and the extra store and load of each row pass lost:
    // 2x2/2 64 @ 112 on Zen 1 AVX2, one thread, 88 -> 120 ns per output row.
    if (pb.stride_h < pb.kernel_h && pb.dil_h == 1 && pb.dil_w == 1 && (pb.stride_w == 1 || pb.stride_w == 2) &&
        pb.kernel_w <= 256 && !has_empty_column_window(pb)) {
      if (pb.stride_w == 1) {
        if (a.taps) fwd_nchw_rows<V, Winner::kTap, 1, T>(a);
        else if (a.indices) fwd_nchw_rows<V, Winner::kIndex, 1, T>(a);
        else fwd_nchw_rows<V, Winner::kNone, 1, T>(a);
      } else {
        if (a.taps) fwd_nchw_rows<V, Winner::kTap, 2, T>(a);
        else if (a.indices) fwd_nchw_rows<V, Winner::kIndex, 2, T>(a);
        else fwd_nchw_rows<V, Winner::kNone, 2, T>(a);
      }
      return true;
    }
    if (a.taps) fwd_nchw_by_stride<V, Winner::kTap, T>(a);
    else if (a.indices) fwd_nchw_by_stride<V, Winner::kIndex, T>(a);
    else fwd_nchw_by_stride<V, Winner::kNone, T>(a);
    return true;
  }
  return false;
}

template <class V, typename T>
bool max_pool2d_bwd_simd(const MaxPool2dBwdArgs& a) {
  using namespace pool_simd;
  const Pool2dProblem& pb = a.p;
  const int64_t *dys = a.dy.stride, *dxs = a.dx.stride, *is = a.index_stride;
  // bwd_nhwc compares int32 plane indices.
  if (pb.C > 1 && dxs[1] == 1 && dys[1] == 1 && is[1] == 1 && pb.H * pb.W <= std::numeric_limits<int32_t>::max() &&
      !has_empty_column_window(pb)) {
    const bool disjoint = windows_disjoint(pb);
    if (a.taps) disjoint ? bwd_nhwc<V, true, T, uint8_t>(a) : bwd_nhwc<V, false, T, uint8_t>(a);
    else disjoint ? bwd_nhwc<V, true, T, int64_t>(a) : bwd_nhwc<V, false, T, int64_t>(a);
    return true;
  }
  // Rows of fewer outputs gained nothing or lost (256 @ 56 AVX2: 0.82x): the scatter's plane is in L1.
  if (std::is_same_v<T, float> && is_3x3s2p1(a)) {
    a.taps ? bwd_nchw_3x3s2p1<V, uint8_t>(a) : bwd_nchw_3x3s2p1<V, int64_t>(a);
    return true;
  }
  const int64_t disjoint2_min_q = a.taps && V::kW == 16 ? kDisjoint2MinQTapsAvx512 : kDisjoint2MinQ;
  if (std::is_same_v<T, float> && is_disjoint2(a) && pb.Q >= disjoint2_min_q) {
    a.taps ? bwd_nchw_disjoint2<V, uint8_t>(a) : bwd_nchw_disjoint2<V, int64_t>(a);
    return true;
  }
  // The scatter needs dense dx planes; dy and the indices may have any strides.
  if (dxs[3] == 1 && (dxs[2] == pb.W || pb.H == 1)) {
    a.taps ? bwd_nchw<V, T, true>(a) : bwd_nchw<V, T, false>(a);
    return true;
  }
  return false;
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
