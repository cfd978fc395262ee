// The GPU arena's bookkeeping (src/core/block_allocator.h), checked against a brute-force model of the range.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "core/block_allocator.h"
#include "core/error.h"

namespace msa {
namespace {

TEST(BlockAllocator, BumpsThenReusesFreedBlocksBestFit) {
  BlockAllocator a(1 << 20, 256);
  const size_t x = a.allocate(1000), y = a.allocate(256), z = a.allocate(4096);
  EXPECT_EQ(x, 0u);
  EXPECT_EQ(y, 1024u);  // 1000 rounded to 1024
  EXPECT_EQ(z, 1280u);
  EXPECT_EQ(a.high_water(), 1280u + 4096u);
  a.free(x);                      // hole of 1024 at 0
  EXPECT_EQ(a.allocate(300), 0u);  // fits the hole: no growth
  EXPECT_EQ(a.high_water(), 1280u + 4096u);
  EXPECT_EQ(a.allocate(512), 512u);  // the hole's tail
  EXPECT_EQ(a.allocate(0), 1280u + 4096u);  // a zero-byte block still gets one unit of its own
  EXPECT_EQ(a.allocations(), 6);
}

TEST(BlockAllocator, MergesNeighboursAndExtendsFromATrailingHole) {
  BlockAllocator a(1 << 20, 256);
  const size_t p = a.allocate(256), q = a.allocate(256), r = a.allocate(256);
  a.free(r);
  a.free(p);
  a.free(q);  // merges with both: one free block [0, 768)
  EXPECT_EQ(a.in_use(), 0u);
  EXPECT_EQ(a.allocate(768), 0u);
  EXPECT_EQ(a.high_water(), 768u);
  // A trailing hole smaller than the request is absorbed rather than left behind.
  BlockAllocator b(1 << 20, 256);
  const size_t s = b.allocate(256), t = b.allocate(512);
  b.free(t);
  EXPECT_EQ(b.allocate(1024), 256u);
  EXPECT_EQ(b.high_water(), 256u + 1024u);
  (void)s;
}

TEST(BlockAllocator, ReportsAFullRangeAndRejectsUnknownOffsets) {
  BlockAllocator a(4096, 256);
  EXPECT_EQ(a.allocate(4096), 0u);
  EXPECT_EQ(a.allocate(1), SIZE_MAX);
  EXPECT_EQ(a.allocate(SIZE_MAX - 10), SIZE_MAX);
  EXPECT_THROW(a.free(256), Error);
  a.free(0);
  EXPECT_THROW(a.free(0), Error);  // twice
}

// Random allocate / free against a byte map: blocks never overlap, stay aligned and inside the high-water mark,
// freed memory is reused (the high-water mark stays at the peak of live bytes plus fragmentation), and the
// counters match.
TEST(BlockAllocator, RandomWorkloadNeverOverlaps) {
  std::mt19937 rng(7);
  BlockAllocator a(size_t(1) << 30, 256);
  std::map<size_t, size_t> live;  // offset -> requested bytes
  size_t live_bytes = 0;
  for (int i = 0; i < 20000; ++i) {
    if (live.empty() || (live.size() < 300 && rng() % 2 == 0)) {
      const size_t bytes = rng() % 3 == 0 ? rng() % 300000 : rng() % 5000;
      const size_t off = a.allocate(bytes);
      ASSERT_NE(off, SIZE_MAX);
      ASSERT_EQ(off % 256, 0u);
      const size_t size = std::max<size_t>(256, (bytes + 255) / 256 * 256);
      ASSERT_LE(off + size, a.high_water());
      auto next = live.lower_bound(off);
      if (next != live.end()) ASSERT_LE(off + size, next->first) << "overlaps the next block";
      if (next != live.begin()) {
        auto prev = std::prev(next);
        ASSERT_LE(prev->first + std::max<size_t>(256, (prev->second + 255) / 256 * 256), off) << "overlaps";
      }
      live.emplace(off, bytes);
      live_bytes += size;
    } else {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      live_bytes -= std::max<size_t>(256, (it->second + 255) / 256 * 256);
      a.free(it->first);
      live.erase(it);
    }
    ASSERT_EQ(a.in_use(), live_bytes);
    ASSERT_EQ(a.live_blocks(), live.size());
  }
  EXPECT_LT(a.high_water(), 2 * a.peak_in_use());  // freed blocks were reused
}

}  // namespace
}  // namespace msa
