#pragma once
// Errors raised while a pipeline (quantize, compare, calibrate) processes a site carry the
// place: the canonical site, the checkpoint tensor (with the expert index of a fused stack)
// and the shard file. The context is added once, where the pipeline hands a site or a stack
// of sites to the code below it (as c10::Error::add_context does), not at each throw:
//
//   with_site_context(ck, site, [&] { ... });
//
// A moeq::Error stays a moeq::Error (a user error); any other exception (libtorch's, ...)
// becomes a SiteContextInternalError with the first line of its message, so the CLI still tells
// the two apart. An error that already names its site passes through unchanged.
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/checkpoint.h"
#include "model/site.h"

namespace moeq {

class SiteContextError : public Error {
 public:
  using Error::Error;
};
class SiteContextInternalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "layers.0.experts.3.gate (tensor model.layers.0.mlp.experts.gate_up_proj, expert 3, file DIR/model.safetensors)"
std::string site_context(const Checkpoint& ck, const Site& s);

// Inside a catch block: rethrows the exception being handled with the site's context
// (or a given context text).
[[noreturn]] void rethrow_with_site(const Checkpoint& ck, const Site& s);
[[noreturn]] void rethrow_with_context(const std::string& context);

template <class F>
auto with_site_context(const Checkpoint& ck, const Site& s, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (...) {
    rethrow_with_site(ck, s);
  }
}

}  // namespace moeq
