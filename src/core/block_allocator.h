// Offsets in one contiguous range: the bookkeeping of the GPU memory arena (kernels/cuda/memory.cu), kept apart
// from the device so that the CPU tests can check it.
//
// allocate() takes the smallest free block that fits (best fit; among equal sizes the lowest offset), else
// extends the high-water mark; free() returns the block and merges it with free neighbours. Everything is
// `alignment`-aligned. The arena maps physical memory up to high_water(), so what a run allocates once and
// reuses (every buffer the model builds) costs no more than its peak.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <utility>

namespace msa {

class BlockAllocator {
 public:
  // capacity: the size of the range; alignment: a power of two.
  explicit BlockAllocator(size_t capacity, size_t alignment = 256);

  // The offset of a new block of `bytes` (0 is rounded up to one alignment unit); SIZE_MAX when the range
  // has no room (the caller reports it).
  size_t allocate(size_t bytes);
  // Returns the block that allocate() gave at `offset`; unknown offsets throw msa::Error.
  void free(size_t offset);

  size_t capacity() const { return capacity_; }
  size_t high_water() const { return high_water_; }  // one past the highest byte ever handed out
  size_t in_use() const { return in_use_; }          // bytes in live blocks
  size_t peak_in_use() const { return peak_in_use_; }
  int64_t allocations() const { return allocations_; }  // successful allocate() calls since construction
  size_t live_blocks() const { return used_.size(); }

 private:
  size_t capacity_, alignment_, high_water_ = 0, in_use_ = 0, peak_in_use_ = 0;
  int64_t allocations_ = 0;
  std::map<size_t, size_t> used_;                     // offset -> size
  std::map<size_t, size_t> free_by_offset_;           // offset -> size (below the high-water mark)
  std::set<std::pair<size_t, size_t>> free_by_size_;  // (size, offset)
  void insert_free(size_t offset, size_t size);
  void erase_free(std::map<size_t, size_t>::iterator it);
};

}  // namespace msa
