// make_forward: the architecture's DecoderSpec assembled (calib/forward/decoder.h), run by the
// layer-streaming driver every layout shares.
#include "calib/forward.h"
#include "calib/model_forward.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "calib/forward/decoder.h"
#include "calib/forward/prefetch.h"
#include "calib/forward/stage_timer.h"
#include "core/error.h"
#include "model/plugin.h"
#ifdef MOEQ_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace moeq {
namespace fwd {
namespace {
int64_t device_peak(at::Device d, bool reset) {
#ifdef MOEQ_WITH_CUDA
  if (d.is_cuda()) {
    auto* alloc = c10::cuda::CUDACachingAllocator::get();
    // The caching allocator knows a device only after its first allocation there
    // (resetPeakStats on a fresh process throws "Invalid device argument").
    if (reset) {
      at::zeros({1}, at::TensorOptions().device(d));
      alloc->resetPeakStats(d.index() < 0 ? 0 : d.index());
      return 0;
    }
    auto stats = alloc->getDeviceStats(d.index() < 0 ? 0 : d.index());
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
#endif
  (void)d;
  (void)reset;
  return 0;
}

class StreamingForward : public MoeForward {
 public:
  // sites: the checkpoint's site map when the caller has it (open_model), else mapped here.
  StreamingForward(std::shared_ptr<Checkpoint> ckpt, const ModelConfig& config, const ForwardOptions& options,
                   std::unique_ptr<DecoderFamily> family, const SiteMap* sites = nullptr)
      : ckpt_(std::move(ckpt)), config_(config), options_(options), family_(std::move(family)) {
    sites_ = sites ? *sites : map_sites(plugin_for(config_), config_, *ckpt_);
    if (options_.chunk_samples < 1) throw Error("native forward: chunk_samples must be >= 1");
  }
  const SiteMap& sites() const override { return sites_; }

  ForwardStats run(const at::Tensor& ids_in, ActivationObserver* observer,
                   const std::function<void(int64_t, const at::Tensor&)>& on_logits) override {
    if (ids_in.dim() != 2 || ids_in.scalar_type() != at::kLong)
      throw Error("native forward: ids must be [samples, seq] int64, got " + std::to_string(ids_in.dim()) + "D " +
                  c10::toString(ids_in.scalar_type()));
    const at::Device dev = options_.device;
    device_peak(dev, true);  // the first allocation creates the CUDA context: start-up, not forward time
    const auto t0 = std::chrono::steady_clock::now();
    int64_t held_peak = 0;
    const int64_t N = ids_in.size(0), S = ids_in.size(1), C = options_.chunk_samples;
    at::Tensor ids = ids_in.to(dev);
    // Declared before the prefetcher: its loader thread may read them until it is destroyed.
    std::vector<std::string> head_sites = family_->global_sites();
    if (std::none_of(sites_.sites.begin(), sites_.sites.end(), [](const Site& s) { return s.name == "lm_head"; }))
      head_sites.push_back("embed_tokens");
    const std::vector<std::string> head_aux = family_->global_aux();
    WeightLoader loader(ckpt_, sites_, options_);
    LayerPrefetcher prefetch(loader, dev);  // on a GPU: layer L+1 loads while layer L computes
    ExpertGemm gemm;
    family_->prepare(S, options_);
    stage_timing_reset(dev);
    auto take = [&] {
      StageScope t("load weights (wait)", dev);
      return prefetch.take();
    };
    // What follows layer L: layer L+1, or the head's globals after the last layer.
    auto request_after = [&](int64_t L) {
      if (L + 1 < config_.num_layers) prefetch.request([&loader, L] { return loader.stage_layer(L + 1); });
      else prefetch.request([&loader, &head_sites, &head_aux] { return loader.stage_globals(head_sites, head_aux); });
    };

    at::Tensor hidden;
    {
      request_after(-1);  // layer 0 loads on the loader thread while this one loads the embedding
      LayerWeights g;
      {
        StageScope t("load weights (embedding)", dev);
        g = loader.load_globals({"embed_tokens"}, {});
      }
      StageScope t("embed", dev);
      for (int64_t first = 0; first < N; first += C) {
        const int64_t n = std::min(C, N - first);
        at::Tensor h = family_->embed(g, ids.narrow(0, first, n));
        if (!hidden.defined())
          hidden = at::empty({N, S, h.size(2)}, h.options().device(options_.hidden_on_host ? at::Device(at::kCPU) : dev));
        hidden.narrow(0, first, n).copy_(h);
      }
      held_peak = std::max(held_peak, static_cast<int64_t>(hidden.nbytes()) + g.bytes());
    }
    for (int64_t L = 0; L < config_.num_layers; ++L) {
      LayerWeights w = take();
      request_after(L);
      held_peak = std::max(held_peak, static_cast<int64_t>(hidden.nbytes()) + w.bytes());
      LayerRun run{w, observer, options_, gemm};
      for (int64_t first = 0; first < N; first += C) {
        const int64_t n = std::min(C, N - first);
        at::Tensor h = family_->layer(run, hidden.narrow(0, first, n).to(dev));
        hidden.narrow(0, first, n).copy_(h);
      }
    }  // each layer's weights are freed here
    {
      LayerWeights g = take();
      held_peak = std::max(held_peak, static_cast<int64_t>(hidden.nbytes()) + g.bytes());
      LayerRun run{g, observer, options_, gemm, /*want_logits=*/static_cast<bool>(on_logits)};
      StageScope t("head", dev);
      for (int64_t first = 0; first < N; first += C) {
        const int64_t n = std::min(C, N - first);
        at::Tensor logits = family_->head(run, hidden.narrow(0, first, n).to(dev));
        if (on_logits) on_logits(first, logits);
      }
    }
    stage_timing_report("native forward", dev);
    ForwardStats st;
    st.peak_device_bytes = dev.is_cuda() ? device_peak(dev, false) : held_peak;
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    st.tokens = N * S;
    st.expert_gemm = gemm.description();
    return st;
  }

 private:
  std::shared_ptr<Checkpoint> ckpt_;
  ModelConfig config_;
  ForwardOptions options_;
  std::unique_ptr<DecoderFamily> family_;
  SiteMap sites_;
};
}  // namespace

}  // namespace fwd

namespace {
std::unique_ptr<MoeForward> make_forward_for(std::shared_ptr<Checkpoint> ckpt, const ModelConfig& config,
                                             const ForwardOptions& options, const SiteMap* sites) {
  const Architecture* arch = Architectures::instance().find_if([&](const Architecture& a) {
    for (const auto& t : a.model_types)
      if (t == config.text_model_type || t == config.model_type) return true;
    return false;
  });
  if (arch && arch->decoder) {
    std::unique_ptr<fwd::DecoderFamily> decoder = fwd::assemble_decoder(arch->decoder(config), config);
    return std::make_unique<fwd::StreamingForward>(std::move(ckpt), config, options, std::move(decoder), sites);
  }
  std::string known;
  for (const auto& e : Architectures::instance().entries())
    if (e.item.decoder) known += (known.empty() ? "" : ", ") + e.name;
  throw Error("no native forward for model_type '" + config.text_model_type + "' (" + config.path +
              "); moeq has one for: " + (known.empty() ? "(none)" : known));
}
}  // namespace

std::unique_ptr<MoeForward> make_forward(std::shared_ptr<Checkpoint> ckpt, const ModelConfig& config,
                                         const ForwardOptions& options) {
  return make_forward_for(std::move(ckpt), config, options, nullptr);
}

std::unique_ptr<MoeForward> make_forward(const Model& model, const ForwardOptions& options) {
  return make_forward_for(model.checkpoint, model.config, options, &model.sites);
}

}  // namespace moeq
