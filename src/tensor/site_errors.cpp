#include "tensor/site_errors.h"

#include <c10/util/Exception.h>

namespace moeq {

std::string site_context(const Checkpoint& ck, const Site& s) {
  std::string t = s.name + " (tensor " + s.view.tensor;
  if (s.view.expert >= 0) t += ", expert " + std::to_string(s.view.expert);
  if (s.fused && s.view.expert < 0 && s.view.rows > 0)
    t += ", rows " + std::to_string(s.view.row_start) + ":" + std::to_string(s.view.row_start + s.view.rows * s.view.row_step);
  if (ck.has(s.view.tensor)) t += ", file " + ck.file_of(s.view.tensor).path();
  return t + ")";
}

void rethrow_with_site(const Checkpoint& ck, const Site& s) { rethrow_with_context(site_context(ck, s)); }

void rethrow_with_context(const std::string& context) {
  try {
    throw;
  } catch (const SiteContextError&) {
    throw;
  } catch (const SiteContextInternalError&) {
    throw;
  } catch (const Error& e) {
    throw SiteContextError(context + ": " + e.what());
  } catch (const c10::Error& e) {
    const std::string m = e.what_without_backtrace();
    throw SiteContextInternalError(context + ": " + m.substr(0, m.find('\n')));
  } catch (const std::exception& e) {
    const std::string m = e.what();
    throw SiteContextInternalError(context + ": " + m.substr(0, m.find('\n')));
  }
}

}  // namespace moeq
