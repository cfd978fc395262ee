#include "model/param.h"

#include "ops/ops.h"

namespace msa {

void Param::sync_value() {
  if (value.raw() != master.raw()) ops::convert(value, master);
}

}  // namespace msa
