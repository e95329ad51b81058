#pragma once
// Where an export writer puts its tensors: a ShardWriter (the files), or a LayoutRecorder
// that only notes names, dtypes and shapes (a dry run on meta tensors plans the files
// before anything is quantized).
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "io/safetensors_writer.h"

namespace moeq {

class TensorSink {
 public:
  virtual ~TensorSink() = default;
  // t is written as stored (dtype, shape); names must be unique.
  virtual void add(const std::string& name, const at::Tensor& t) = 0;
};

// Records what was added, in order, without touching data (meta tensors are fine).
class LayoutRecorder : public TensorSink {
 public:
  void add(const std::string& name, const at::Tensor& t) override;
  std::vector<TensorSpec>& specs() { return specs_; }

 private:
  std::vector<TensorSpec> specs_;
};

}  // namespace moeq
