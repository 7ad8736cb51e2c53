// Runs csrc/cuda's kernels on the CPU, so that their index math, layouts, tap rules and fixed-order
// reductions are tested on machines without a GPU (tests/test_cuda_emulated.py). A kernel file is
// compiled as C++ after this header: CNNK_LAUNCH (cuda_launch.cuh) then runs the grid one block at
// a time, each block's threads as fibers that switch at __syncthreads(), so shared memory (a static
// per kernel, one block at a time) and barriers behave as on the GPU. Warp-wide instructions
// (mma.sync, ldmatrix) are exchanges between the lanes, computed from the PTX ISA's fragment
// layouts; cp.async copies land when their thread waits for them. Misaligned cp.async / ldmatrix
// addresses fail the launch (require_aligned); typed vector accesses are checked by building with
// -fsanitize=alignment. Build with -U_FORTIFY_SOURCE (see Block).
//
// What this cannot show: anything else the hardware adds (the memory model across blocks, launch
// limits, the tensor cores' own rounding, speed), and a missing __syncthreads right before a
// warp-wide instruction (those synchronise the whole block here). Those need scripts/gpu_check.sh
// on a GPU.
#pragma once

#define CNNKERNELS_CUDA_HOST_EMULATION 1
#define __shared__ static  // one block runs at a time: a static is that block's shared memory
#define __launch_bounds__(...)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>  // dim3, uint3, cudaError_t, cudaStream_t (no runtime calls)
#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

using std::isnan;
using std::max;
using std::min;

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

namespace cnnk_emu {

constexpr size_t kFiberStack = 256 * 1024;

// Threads switch with _setjmp / _longjmp (no signal-mask system call, unlike swapcontext); a
// fiber's first entry onto its own stack is a setcontext. Built without _FORTIFY_SOURCE, whose
// longjmp check refuses jumps between stacks.
struct Resume {
  jmp_buf at;
};
struct Block {
  std::vector<ucontext_t> entry;  // each fiber's start, on its own stack
  std::vector<std::vector<char>> stacks;
  std::vector<Resume> resume;    // where each started fiber continues
  std::vector<char> started, done;
  jmp_buf scheduler;
  unsigned current = 0;
  std::function<void()> body;     // one thread's run of the kernel
};
inline Block& block() {
  static Block b;
  return b;
}

[[noreturn]] inline void fiber_main() {
  Block& b = block();
  b.body();
  b.done[b.current] = 1;
  _longjmp(b.scheduler, 1);
}

// __syncthreads(): back to the scheduler, which runs every other thread of the block up to its
// own barrier (or its end) before resuming this one.
inline void sync_threads() {
  Block& b = block();
  if (!_setjmp(b.resume[b.current].at)) _longjmp(b.scheduler, 1);
}

inline void run_block(unsigned threads) {
  Block& b = block();
  if (b.entry.size() < threads) {
    b.entry.resize(threads);
    b.resume.resize(threads);
    b.stacks.resize(threads);
    for (auto& s : b.stacks) s.resize(kFiberStack);
    for (auto& e : b.entry) getcontext(&e);
  }
  b.started.assign(threads, 0);
  b.done.assign(threads, 0);
  for (bool running = true; running;) {  // one pass per barrier phase
    running = false;
    for (unsigned t = 0; t < threads; ++t) {
      if (b.done[t]) continue;
      running = true;
      b.current = t;
      threadIdx = {t, 0, 0};
      if (_setjmp(b.scheduler)) continue;  // the fiber reached a barrier or its end
      if (b.started[t]) _longjmp(b.resume[t].at, 1);
      b.started[t] = 1;
      b.entry[t].uc_stack.ss_sp = b.stacks[t].data();
      b.entry[t].uc_stack.ss_size = kFiberStack;
      b.entry[t].uc_link = nullptr;
      makecontext(&b.entry[t], fiber_main, 0);
      setcontext(&b.entry[t]);
    }
  }
}

template <class... Params>
struct Launch {
  dim3 grid, threads;
  void (*kernel)(Params...);
  template <class... Args>
  void operator()(Args&&... args) const {
    gridDim = grid;
    blockDim = threads;
    const auto params = std::make_tuple(Params(args)...);
    block().body = [&] { std::apply(kernel, params); };
    for (unsigned z = 0; z < grid.z; ++z)
      for (unsigned y = 0; y < grid.y; ++y)
        for (unsigned x = 0; x < grid.x; ++x) {
          blockIdx = {x, y, z};
          run_block(threads.x * threads.y * threads.z);
        }
  }
};

template <class... Params>
Launch<Params...> launch(dim3 grid, dim3 threads, void (*kernel)(Params...)) {
  return {grid, threads, kernel};
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: d += a b for the warp, from each lane's
// fragments (the PTX ISA's layout, as conv2d_gemm.cu describes it). A warp-wide exchange: every
// thread of the block must call it together, as the GEMM kernel does.
struct WarpFragments {
  uint32_t a[32][4], b[32][2];
};
inline float half_bits_to_float(bool bf16, uint16_t bits) {
  if (bf16) {
    __nv_bfloat16_raw r;
    r.x = bits;
    return __bfloat162float(__nv_bfloat16(r));
  }
  __half_raw r;
  r.x = bits;
  return __half2float(__half(r));
}
// Deposits this lane's fragments and waits until every lane of the block has: the warp's view.
inline const WarpFragments& exchange_fragments(const uint32_t a[4], const uint32_t b[2]) {
  static std::vector<WarpFragments> warps;
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (warps.size() <= warp) warps.resize(warp + 1);
  for (int i = 0; i < 4; ++i) warps[warp].a[lane][i] = a[i];
  for (int i = 0; i < 2; ++i) warps[warp].b[lane][i] = b[i];
  sync_threads();
  return warps[warp];
}
inline void mma_m16n8k16(bool bf16, float d[4], const uint32_t a[4], const uint32_t b[2]) {
  const WarpFragments& f = exchange_fragments(a, b);
  const unsigned lane = threadIdx.x % 32;
  const auto element = [&](uint32_t word, int k) { return half_bits_to_float(bf16, uint16_t(word >> (16 * (k % 2)))); };
  const unsigned group = lane / 4, pair = lane % 4;
  for (int v = 0; v < 4; ++v) {
    const unsigned row = group + (v / 2) * 8, col = 2 * pair + v % 2;
    float dot = 0;
    for (int k = 0; k < 16; ++k) {
      const float x = element(f.a[(row % 8) * 4 + (k % 8) / 2][(k >= 8 ? 2 : 0) + (row >= 8 ? 1 : 0)], k);
      const float y = element(f.b[col * 4 + (k % 8) / 2][k >= 8 ? 1 : 0], k);
      dot += x * y;
    }
    d[v] += dot;
  }
  sync_threads();  // every lane has read the fragments before any writes its next ones
}

// cvt.rna.tf32.f32: 10 mantissa bits, round to nearest with ties away from zero; the pattern
// keeps 32 bits with the low 13 zero. Infinities and NaN pass through.
inline uint32_t round_to_tf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return u;
  return (u + 0x1000u) & 0xffffe000u;
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, as mma_m16n8k16 (one element per register).
inline void mma_m16n8k8_tf32(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  const WarpFragments& f = exchange_fragments(a, b);
  const unsigned lane = threadIdx.x % 32;
  const auto element = [](uint32_t word) {
    float x;
    std::memcpy(&x, &word, 4);
    return x;
  };
  const unsigned group = lane / 4, pair = lane % 4;
  for (int v = 0; v < 4; ++v) {
    const unsigned row = group + (v / 2) * 8, col = 2 * pair + v % 2;
    float dot = 0;
    for (int k = 0; k < 8; ++k) {
      const float x = element(f.a[(row % 8) * 4 + k % 4][(k >= 4 ? 2 : 0) + (row >= 8 ? 1 : 0)]);
      const float y = element(f.b[col * 4 + k % 4][k >= 4 ? 1 : 0]);
      dot += x * y;
    }
    d[v] += dot;
  }
  sync_threads();
}

// cp.async: a thread's copies land only when it waits for their group (cp.async.wait_group), as
// on the GPU nothing guarantees them earlier; a kernel that reads shared memory before waiting
// reads stale bytes here too. src_bytes < bytes: the rest is zero-filled.
struct AsyncCopy {
  void* dst;
  const void* src;
  int bytes, src_bytes;
};
struct AsyncCopies {
  uint3 block = {~0u, ~0u, ~0u};  // the block these groups belong to (a new block starts empty)
  std::vector<AsyncCopy> open;
  std::vector<std::vector<AsyncCopy>> committed;  // oldest first
};
inline AsyncCopies& async_copies() {
  static std::vector<AsyncCopies> per_thread;
  if (per_thread.size() <= threadIdx.x) per_thread.resize(threadIdx.x + 1);
  AsyncCopies& c = per_thread[threadIdx.x];
  if (c.block.x != blockIdx.x || c.block.y != blockIdx.y || c.block.z != blockIdx.z) c = AsyncCopies{blockIdx};
  return c;
}
// The GPU faults on a misaligned access: here the first one is recorded and the launch reports
// cudaErrorMisalignedAddress through last_launch_error(), as the GPU's next call would (the CPU
// goes on; no exception can unwind out of a fiber). Typed vector accesses (VecOf) are checked by
// the build's -fsanitize=alignment instead.
struct Fault {
  cudaError_t err = cudaSuccess;
  std::string what;
};
inline Fault& fault() {
  static Fault f;
  return f;
}
inline void require_aligned(const void* p, int bytes, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % bytes && fault().err == cudaSuccess) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "%s: address %p is not %d-byte aligned", what, p, bytes);
    fault() = {cudaErrorMisalignedAddress, msg};
  }
}
// The recorded fault, cleared (cuda_launch.cuh's last_launch_error); its text in fault_text().
inline cudaError_t take_fault() {
  const cudaError_t err = fault().err;
  fault().err = cudaSuccess;
  return err;
}
inline std::string fault_text() { return fault().what; }
inline void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
  require_aligned(dst, bytes, "cp.async destination");
  require_aligned(src, bytes, "cp.async source");
  async_copies().open.push_back({dst, src, bytes, src_bytes});
}
inline void cp_async_commit() {
  AsyncCopies& c = async_copies();
  c.committed.push_back(std::move(c.open));
  c.open.clear();
}
inline void cp_async_wait(int pending) {
  AsyncCopies& c = async_copies();
  while (int(c.committed.size()) > pending) {
    for (const AsyncCopy& k : c.committed.front()) {
      std::memcpy(k.dst, k.src, k.src_bytes);
      std::memset(static_cast<char*>(k.dst) + k.src_bytes, 0, k.bytes - k.src_bytes);
    }
    c.committed.erase(c.committed.begin());
  }
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane l names row l % 8 of matrix l / 8; register i
// gets two 16-bit elements of matrix i, element(rows, i, lane, 0..1) (the lower in the lower half).
// A warp-wide exchange, like the mma.
template <bool kTrans>
inline void ldmatrix_exchange(uint32_t r[4], const uint16_t* row) {
  static std::vector<std::array<const uint16_t*, 32>> warps;
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (warps.size() <= warp) warps.resize(warp + 1);
  require_aligned(row, 16, "ldmatrix row");
  warps[warp][lane] = row;
  sync_threads();
  const auto& rows = warps[warp];
  for (int i = 0; i < 4; ++i) {
    uint16_t e[2];
    for (int j = 0; j < 2; ++j)  // plain: (l / 4, 2 (l % 4) + j); .trans: (2 (l % 4) + j, l / 4)
      e[j] = kTrans ? rows[i * 8 + 2 * (lane % 4) + j][lane / 4] : rows[i * 8 + lane / 4][2 * (lane % 4) + j];
    r[i] = uint32_t(e[0]) | uint32_t(e[1]) << 16;
  }
  sync_threads();
}

}  // namespace cnnk_emu

#define __syncthreads() ::cnnk_emu::sync_threads()
