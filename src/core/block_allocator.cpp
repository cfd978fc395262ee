#include "core/block_allocator.h"

#include <iterator>

#include "core/error.h"

namespace msa {

BlockAllocator::BlockAllocator(size_t capacity, size_t alignment) : capacity_(capacity), alignment_(alignment) {
  MSA_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0, "BlockAllocator: alignment " << alignment);
}

void BlockAllocator::insert_free(size_t offset, size_t size) {
  free_by_offset_.emplace(offset, size);
  free_by_size_.emplace(size, offset);
}

void BlockAllocator::erase_free(std::map<size_t, size_t>::iterator it) {
  free_by_size_.erase({it->second, it->first});
  free_by_offset_.erase(it);
}

size_t BlockAllocator::allocate(size_t bytes) {
  const size_t size = bytes == 0 ? alignment_ : (bytes + alignment_ - 1) / alignment_ * alignment_;
  if (size < bytes) return SIZE_MAX;  // rounding overflowed
  size_t offset = SIZE_MAX;
  if (auto fit = free_by_size_.lower_bound({size, 0}); fit != free_by_size_.end()) {
    const auto [free_size, free_offset] = *fit;
    erase_free(free_by_offset_.find(free_offset));
    if (free_size > size) insert_free(free_offset + size, free_size - size);  // the tail stays free
    offset = free_offset;
  } else {
    // Extend the high-water mark, absorbing a free block that ends at it.
    size_t start = high_water_;
    if (!free_by_offset_.empty()) {
      auto last = std::prev(free_by_offset_.end());
      if (last->first + last->second == high_water_) start = last->first;
    }
    if (start > capacity_ || size > capacity_ - start) return SIZE_MAX;
    if (start != high_water_) erase_free(free_by_offset_.find(start));
    offset = start;
    high_water_ = start + size;
  }
  used_.emplace(offset, size);
  in_use_ += size;
  if (in_use_ > peak_in_use_) peak_in_use_ = in_use_;
  ++allocations_;
  return offset;
}

void BlockAllocator::free(size_t offset) {
  const auto it = used_.find(offset);
  MSA_CHECK(it != used_.end(), "BlockAllocator::free: no block at offset " << offset);
  size_t start = offset, size = it->second;
  in_use_ -= size;
  used_.erase(it);
  // Merge with the free neighbours on either side.
  if (auto next = free_by_offset_.find(start + size); next != free_by_offset_.end()) {
    size += next->second;
    erase_free(next);
  }
  if (auto after = free_by_offset_.lower_bound(start); after != free_by_offset_.begin()) {
    auto prev = std::prev(after);
    if (prev->first + prev->second == start) {
      start = prev->first;
      size += prev->second;
      erase_free(prev);
    }
  }
  insert_free(start, size);
}

}  // namespace msa
