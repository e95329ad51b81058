#include "calib/forward/prefetch.h"

#include <chrono>
#include <cstdio>

#include "calib/forward/stage_timer.h"
#include "core/error.h"
#ifdef MOEQ_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace moeq::fwd {

#ifdef MOEQ_WITH_CUDA
struct LayerPrefetcher::Impl {
  struct Loaded {
    LayerWeights w;
    std::shared_ptr<at::cuda::CUDAEvent> uploaded;
  };
  c10::cuda::CUDAStream copy_stream;
  std::future<Loaded> pending;
  // MOEQ_TIMING: the loader thread's own seconds (it runs beside the compute stream).
  struct Times {
    int loads = 0;
    double stage = 0, wait = 0, upload = 0;
  } times;
  explicit Impl(at::Device d) : copy_stream(c10::cuda::getStreamFromPool(false, d.index() < 0 ? c10::cuda::current_device() : d.index())) {}
};

namespace {
void for_each_tensor(LayerWeights& w, const std::function<void(at::Tensor&)>& f) {
  for (auto& kv : w.linear) f(kv.second);
  for (auto& kv : w.aux) f(kv.second);
  if (w.experts.gate_up.defined()) {
    f(w.experts.gate_up);
    f(w.experts.down);
  }
}
}  // namespace
#else
struct LayerPrefetcher::Impl {};
#endif

LayerPrefetcher::LayerPrefetcher(const WeightLoader& loader, at::Device device) : loader_(loader), device_(device) {
#ifdef MOEQ_WITH_CUDA
  if (device_.is_cuda()) impl_ = std::make_unique<Impl>(device_);
#endif
}

LayerPrefetcher::~LayerPrefetcher() {
#ifdef MOEQ_WITH_CUDA
  if (!impl_) return;
  // A pending load (an exception unwound the forward) must finish before the loader goes.
  if (impl_->pending.valid()) try {
      impl_->pending.get();
    } catch (...) {
    }
  const Impl::Times& t = impl_->times;
  if (stage_timing_enabled() && t.loads > 0)
    std::fprintf(stderr,
                 "[timing] loader thread (beside the compute stream): %d loads; mmap -> pinned host %.3f s, "
                 "waiting for the compute stream to free the previous layer %.3f s, host -> device %.3f s\n",
                 t.loads, t.stage, t.wait, t.upload);
#endif
}

void LayerPrefetcher::request(std::function<LayerWeights()> stage) {
  if (!impl_) {
    pending_ = std::move(stage);
    return;
  }
#ifdef MOEQ_WITH_CUDA
  if (impl_->pending.valid()) throw Error("native forward: a layer was requested before the previous one was taken");
  // Marks the end of the work queued so far on the compute stream (the previous layer).
  auto queued = std::make_shared<at::cuda::CUDAEvent>();
  queued->record(c10::cuda::getCurrentCUDAStream(device_.index() < 0 ? c10::cuda::current_device() : device_.index()));
  const WeightLoader& loader = loader_;
  c10::cuda::CUDAStream copy = impl_->copy_stream;
  Impl::Times* times = &impl_->times;  // written by one task at a time, read after take()
  impl_->pending = std::async(std::launch::async, [stage = std::move(stage), queued, &loader, copy, times]() {
    using Clock = std::chrono::steady_clock;
    auto secs = [](Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); };
    auto t = Clock::now();
    LayerWeights host = stage();
    times->stage += secs(t);
    t = Clock::now();
    queued->synchronize();  // the weights freed before the request are no longer in use
    times->wait += secs(t);
    t = Clock::now();
    c10::cuda::CUDAStreamGuard guard(copy);
    Impl::Loaded out{loader.upload(host), std::make_shared<at::cuda::CUDAEvent>()};
    out.uploaded->record(copy);
    if (stage_timing_enabled()) copy.synchronize();  // the copies' own time (timing runs only)
    times->upload += secs(t);
    times->loads++;
    return out;
  });
#endif
}

LayerWeights LayerPrefetcher::take() {
  if (!impl_) {
    if (!pending_) throw Error("native forward: a layer was taken before it was requested");
    LayerWeights w = loader_.upload(pending_());
    pending_ = nullptr;
    loader_.transform(w);
    return w;
  }
#ifdef MOEQ_WITH_CUDA
  if (!impl_->pending.valid()) throw Error("native forward: a layer was taken before it was requested");
  Impl::Loaded l = impl_->pending.get();
  c10::cuda::CUDAStream compute = c10::cuda::getCurrentCUDAStream(impl_->copy_stream.device_index());
  l.uploaded->block(compute);
  // The blocks came from the copy stream's pool: freed, they wait for the compute stream too.
  for_each_tensor(l.w, [&](at::Tensor& t) { c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), compute); });
  loader_.transform(l.w);
  return std::move(l.w);
#else
  throw Error("native forward: moeq was built without CUDA");
#endif
}

}  // namespace moeq::fwd
