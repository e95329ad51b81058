#include "io/output_guard.h"

#include <filesystem>

#include "core/error.h"

namespace fs = std::filesystem;

namespace moeq {
namespace {

std::string strip_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// The real path: symlinks of the existing part resolved, the rest normalized.
fs::path real_path(const std::string& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(fs::absolute(strip_slashes(p)), ec);
  if (ec) throw Error(p + ": cannot resolve the path: " + ec.message());
  return r.lexically_normal();
}

// a is b or lies below it (component-wise: /a/bc is not inside /a/b).
bool within(const fs::path& a, const fs::path& b) {
  auto ai = a.begin();
  for (auto bi = b.begin(); bi != b.end(); ++bi, ++ai) {
    if (bi->empty()) continue;  // a trailing separator
    if (ai == a.end() || *ai != *bi) return false;
  }
  return true;
}

}  // namespace

void refuse_output_over_input(const std::string& out, const std::string& option, const std::string& input,
                              const std::string& input_what) {
  if (input.empty() || out.empty()) return;
  const fs::path o = real_path(out), i = real_path(input);
  const std::string head = option + " " + out + ": ";
  const std::string tail = " (real paths " + o.string() + " and " + i.string() + "); choose an output outside it";
  if (o == i) throw Error(head + "is " + input_what + " " + input + tail);
  if (within(o, i)) throw Error(head + "lies inside " + input_what + " " + input + tail);
  if (within(i, o)) throw Error(head + "contains " + input_what + " " + input + tail);
  // OUT may be a symlink leading out of the input while its temporary and lock, written
  // beside the link, would land inside it.
  const fs::path parent = real_path(fs::path(strip_slashes(out)).parent_path().empty()
                                        ? std::string(".")
                                        : fs::path(strip_slashes(out)).parent_path().string());
  if (within(parent, i))
    throw Error(head + "its temporary and lock file (written beside it, in " + parent.string() + ") would lie inside " +
                input_what + " " + input + " (real path " + i.string() + "); choose an output outside it");
}

}  // namespace moeq
