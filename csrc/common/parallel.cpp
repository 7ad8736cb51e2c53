#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace cnnkernels {

static std::atomic<ParallelBackend> g_backend{nullptr};
static std::atomic<ParallelThreads> g_threads{nullptr};

void set_parallel_backend(ParallelBackend backend, ParallelThreads threads) {
  g_threads.store(threads);
  g_backend.store(backend);
}
ParallelBackend parallel_backend() { return g_backend.load(); }

int64_t parallel_threads() {
  const ParallelThreads threads = g_threads.load();
  return g_backend.load() != nullptr && threads != nullptr ? std::max<int64_t>(1, threads()) : 1;
}

}  // namespace cnnkernels

namespace cnnkernels {
namespace {
// Per call site and chunk kind (first, others): calls, nanoseconds, items. Sites past kSites share
// the last slot.
struct ParallelProfile {
  static constexpr int kSites = 512;
  const bool enabled = [] {
    const char* v = std::getenv("CNNKERNELS_PARALLEL_PROFILE");
    return v != nullptr && v[0] == '1';
  }();
  std::atomic<int> sites{0};
  const char* name[kSites] = {};
  std::atomic<int64_t> calls[kSites][2]{}, ns[kSites][2]{}, items[kSites][2]{};
  ~ParallelProfile() {
    const int n = std::min(sites.load(), kSites);
    for (int s = 0; s < n; ++s) {
      if (calls[s][0] == 0 && calls[s][1] == 0) continue;
      std::string what = name[s] ? name[s] : "?";
      if (const auto at = what.find("[with F = "); at != std::string::npos) what = what.substr(at + 10);
      const auto avg = [&](int k, const std::atomic<int64_t>(&v)[2]) {
        return calls[s][k] ? double(v[k]) / double(calls[s][k]) : 0.0;
      };
      std::fprintf(stderr,
                   "cnnkernels parallel_for: first %lld calls %.1f us %.1f items | others %lld calls %.1f us %.1f "
                   "items | %s\n",
                   (long long)calls[s][0], avg(0, ns[s]) / 1e3, avg(0, items[s]), (long long)calls[s][1],
                   avg(1, ns[s]) / 1e3, avg(1, items[s]), what.c_str());
    }
  }
} g_profile;
}  // namespace

bool parallel_profile_enabled() { return g_profile.enabled; }
int parallel_profile_site(const char* name) {
  const int s = std::min(g_profile.sites.fetch_add(1), ParallelProfile::kSites - 1);
  g_profile.name[s] = name;
  return s;
}
void parallel_profile_add(int site, bool first_chunk, int64_t nanoseconds, int64_t items) {
  const int k = first_chunk ? 0 : 1;
  g_profile.calls[site][k] += 1, g_profile.ns[site][k] += nanoseconds, g_profile.items[site][k] += items;
}

}  // namespace cnnkernels
