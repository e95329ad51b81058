#pragma once
// Overlaps loading the next decoder layer's weights with the current layer's compute on a GPU:
// a loader thread stages the layer from the checkpoint's mmap into pinned host memory
// (WeightLoader::stage_*), then uploads it on a copy stream; the compute stream waits for the
// upload (a CUDA event), not the host. The upload starts only once the compute stream has
// finished the work queued before the request, i.e. the layer before the current one, whose
// weights were freed: at most two layers' weights are on the device. On a CPU forward, fetch
// loads synchronously.
#include <functional>
#include <future>
#include <memory>

#include "calib/forward/weights.h"

namespace moeq::fwd {

class LayerPrefetcher {
 public:
  LayerPrefetcher(const WeightLoader& loader, at::Device device);
  ~LayerPrefetcher();
  // Starts loading what `stage` returns (host tensors: loader.stage_layer / stage_globals);
  // one request at a time: the previous one must have been taken.
  void request(std::function<LayerWeights()> stage);
  // The requested weights, on the device, weight_transform applied; the current stream waits
  // for their upload. Rethrows what the loader thread threw.
  LayerWeights take();

 private:
  struct Impl;
  const WeightLoader& loader_;
  at::Device device_;
  std::unique_ptr<Impl> impl_;             // GPU only
  std::function<LayerWeights()> pending_;  // CPU: loaded by take()
};

}  // namespace moeq::fwd
