#include "app/run/quantize_stages.h"

#include <chrono>
#include <exception>
#include <mutex>
#include <thread>

#include "app/run/export_layout.h"
#include "core/bounded_queue.h"
#include "formats/cuda_stream.h"
#include "tensor/site_errors.h"
#include "model/site_bytes.h"

namespace moeq {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

struct Loaded {
  size_t job;
  std::vector<GatheredStack> stacks;
};
struct Done {
  size_t job;
  std::vector<QuantizedTensor> qs;
  std::vector<at::Tensor> deqs;
};

class Stages {
 public:
  explicit Stages(const StageInputs& in) : in_(in), pinned_(in.device.is_cuda()) {}

  StageResults run() {
    const auto start = Clock::now();
    std::thread loader([this] { guarded([this] { load(); }); });
    std::thread copier([this] {
      if (in_.shards.streaming()) guarded([this] { copy_through(); });
    });
    std::thread writer([this] { guarded([this] { write(); }); });
    guarded([this] { quantize(); });
    loader.join();
    writer.join();
    copier.join();
    if (err_) std::rethrow_exception(err_);
    res_.times.total = since(start);
    return std::move(res_);
  }

 private:
  // Runs a stage; its first error (of any stage) is kept and closes both queues.
  template <class F>
  void guarded(F&& stage) {
    try {
      stage();
    } catch (...) {
      {
        std::lock_guard<std::mutex> lk(err_mu_);
        if (!err_) err_ = std::current_exception();
      }
      loaded_.close();
      done_.close();
    }
  }

  void load() {
    for (size_t j = 0; j < in_.jobs.size(); ++j) {
      Loaded l{j, {}};
      const auto a = Clock::now();
      for (const SiteBatch& b : in_.jobs[j]) {
        if (in_.device.is_cuda()) {
          l.stacks.push_back(gather_for_device(in_.ck, b, pinned_));
        } else {
          GatheredStack g;
          g.decoded = gather_stack(in_.ck, b, pinned_);
          g.batch = &b;
          l.stacks.push_back(std::move(g));
        }
      }
      res_.times.load += since(a);
      if (!loaded_.push(std::move(l))) return;
    }
    loaded_.close();
  }

  void copy_through() {
    const auto a = Clock::now();
    in_.write_copy_through();
    res_.times.copy = since(a);
  }

  void quantize() {
    while (auto l = loaded_.pop()) {
      const auto a = Clock::now();
      const auto& job = in_.jobs[l->job];
      std::vector<at::Tensor> stacks;
      for (auto& h : l->stacks) {
        if (!in_.device.is_cuda()) {
          stacks.push_back(h.decoded);
          continue;
        }
        ++res_.times.stacks;
        res_.times.source_stacks += h.codes.defined() ? 1 : 0;
        res_.times.uploaded_bytes += h.codes.defined() ? h.source_bytes() : static_cast<int64_t>(h.decoded.nbytes());
        stacks.push_back(decode_on(h, in_.device));
      }
      l->stacks.clear();
      Done d{l->job, quantize_job(in_.ck, job, stacks, &res_.conversions), {}};
      for (size_t j = 0; j < job.size(); ++j) {
        const QuantFormat& fmt = format_by_name(job[j].sites[0]->format);
        d.deqs.push_back(in_.dump ? fmt.dequantize(d.qs[j], at::kFloat).to(at::kCPU) : at::Tensor());
      }
      if (in_.device.is_cuda()) {
        for (const auto& q : d.qs)
          for (const auto& [name, t] : q.parts) res_.times.downloaded_bytes += static_cast<int64_t>(t.nbytes());
        to_pinned_host(d);
      }
      res_.times.device += since(a);
      if (!done_.push(std::move(d))) break;
    }
    done_.close();
  }

  // The results to pinned host memory, then one sync for the job.
  static void to_pinned_host(Done& d) {
    for (auto& q : d.qs)
      for (auto& [name, t] : q.parts) {
        at::Tensor h = at::empty(t.sizes(), t.options().device(at::kCPU).pinned_memory(true));
        h.copy_(t, /*non_blocking=*/true);
        t = h;
      }
    cuda_synchronize();
  }

  void write() {
    while (auto d = done_.pop()) {
      const auto a = Clock::now();
      const auto& job = in_.jobs[d->job];
      for (size_t j = 0; j < job.size(); ++j) write_batch(job[j], d->qs[j], d->deqs[j]);
      res_.times.write += since(a);
    }
  }

  void write_batch(const SiteBatch& b, QuantizedTensor& q, const at::Tensor& deq) {
    // Buffered: pinned staging goes back to its cache, the shard keeps a pageable copy
    // until flushed. Streaming writes from the pinned memory at once.
    if (pinned_ && !in_.shards.streaming())
      for (auto& [name, t] : q.parts) t = t.clone();
    for (size_t i = 0; i < b.sites.size(); ++i) {
      const Site& site = *b.sites[i]->site;
      with_site_context(in_.ck, site, [&] {
        const QuantizedSite qs = quantized_site(b, i, q, in_.in_scales);
        res_.bytes_after[site.name] = in_.writer.write(qs, in_.shards);
        if (in_.dump) in_.dump->add(site.module + ".weight", qs.index >= 0 ? deq.select(0, qs.index) : deq);
      });
      in_.progress.advance(stored_bytes(in_.ck, site));
    }
  }

  const StageInputs& in_;
  const bool pinned_;
  BoundedQueue<Loaded> loaded_{2};
  BoundedQueue<Done> done_{2};
  std::mutex err_mu_;
  std::exception_ptr err_;
  StageResults res_;
};

}  // namespace

StageResults run_quantize_stages(const StageInputs& in) { return Stages(in).run(); }

}  // namespace moeq
