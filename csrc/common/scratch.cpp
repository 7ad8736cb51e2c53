#include "scratch.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdlib>
#include <new>
#include <vector>

namespace cnnkernels {
namespace {

struct Block {
  void* data;
  size_t capacity;
};

// The calling thread's freed blocks; returned to the system when the thread exits.
struct ThreadCache {
  std::vector<Block> blocks;
  size_t bytes = 0;
  ~ThreadCache() {
    for (const Block& b : blocks) std::free(b.data);
  }
};

std::atomic<bool> g_poison{false};

ThreadCache& thread_cache() {
  thread_local ThreadCache cache;
  return cache;
}

void* handed_out(void* data, size_t capacity) {
  if (g_poison.load()) std::memset(data, 0xFF, capacity);
  return data;
}

}  // namespace

void set_poison_scratch(bool on) { g_poison.store(on); }

void* scratch_alloc(size_t bytes, size_t* capacity) {
  const size_t size = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  ThreadCache& cache = thread_cache();
  // The smallest cached block that is large enough, but not over twice the size: a kernel's
  // empty placeholders (ScratchOf(0), 64 bytes) had taken its megabyte blocks, and the packs
  // after them then faulted in fresh pages (the NCHW weight gradient of ResNeXt 512 @14 g32 N=8
  // at 260-400 faults a call, 2.8-3.0 ms against 1.9-2.0 ms without: 11 blocks live at once
  // against a cache of 8, so which block went where changed from process to process).
  auto best = cache.blocks.end();
  for (auto it = cache.blocks.begin(); it != cache.blocks.end(); ++it)
    if (it->capacity >= size && it->capacity / 2 <= size &&
        (best == cache.blocks.end() || it->capacity < best->capacity))
      best = it;
  if (best != cache.blocks.end()) {
    const Block b = *best;
    cache.blocks.erase(best);
    cache.bytes -= b.capacity;
    *capacity = b.capacity;
    return handed_out(b.data, b.capacity);
  }
  void* data = std::aligned_alloc(64, size);
  if (data == nullptr) throw std::bad_alloc();
  *capacity = size;
  return handed_out(data, size);
}

void scratch_free(void* block, size_t capacity) {
  if (block == nullptr) return;
  if (capacity > kCachedBytes) {
    std::free(block);
    return;
  }
  ThreadCache& cache = thread_cache();
  cache.blocks.push_back({block, capacity});
  cache.bytes += capacity;
  // Over either limit: drop the smallest blocks first (the large ones save the most faults).
  while (cache.blocks.size() > kCachedBlocks || cache.bytes > kCachedBytes) {
    auto smallest = std::min_element(cache.blocks.begin(), cache.blocks.end(),
                                     [](const Block& a, const Block& b) { return a.capacity < b.capacity; });
    cache.bytes -= smallest->capacity;
    std::free(smallest->data);
    cache.blocks.erase(smallest);
  }
}

}  // namespace cnnkernels
