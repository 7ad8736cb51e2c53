// Shared helpers of the op layer: tensor -> kernel-struct conversion and argument checks.
#pragma once
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

#include "../common/conv_params.h"
#include "../common/dtype.h"
#include "../common/pool_params.h"

namespace cnnkernels {

// The kernel dtype of a tensor, or a clear error naming the op, the argument and the device.
DType kernel_dtype(const at::Tensor& t, const char* op, const char* arg);

ConstView4 const_view(const at::Tensor& t);
View4 mut_view(at::Tensor& t);

// Whether the op layer should produce channels_last tensors for t (PyTorch's suggestion rule).
inline bool is_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && t.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

inline at::MemoryFormat memory_format(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// The registered op `name` ("cnnkernels::conv2d"), to call through the dispatcher.
template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// "[2, 3, 4, 4]" for messages.
std::string shape_str(at::IntArrayRef sizes);

// A pair argument (stride, padding, ...) of exactly two values.
void check_pair(at::IntArrayRef v, const char* op, const char* arg);

// Allocates an op's output. When poisoning is on (tests), it is filled with NaN (int64: INT64_MIN,
// uint8: 255) first, so an element a kernel forgets to write shows up instead of passing as stale
// memory; set_poison_outputs also poisons the CPU kernels' scratch (common/scratch.h).
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options);
void set_poison_outputs(bool on);
bool poison_outputs();

bool cuda_kernels_built();
// Throws the message users see when a CUDA tensor reaches a CPU-only build.
[[noreturn]] void fail_no_cuda(const char* op);

}  // namespace cnnkernels
