#include "cli/args.h"

#include "core/error.h"

#include <cmath>

namespace moeq::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& flags,
           const std::set<std::string>& options) {
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string a = argv[i];
    if (a.size() == 2 && a[0] == '-' && a[1] != '-') a = "-" + a;  // -o is --o
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string key = a.substr(2), value;
    const auto eq = key.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    }
    if (flags.count(key)) {
      if (inline_value) throw Error("option --" + key + " takes no value");
      flags_.insert(key);
    } else if (options.count(key)) {
      if (!inline_value) {
        if (i + 1 >= argv.size()) throw Error("option --" + key + " needs a value");
        value = argv[++i];
      }
      values_[key].push_back(value);
    } else {
      std::string known;
      for (const auto& f : flags) known += " --" + f;
      for (const auto& o : options) known += " --" + o;
      throw Error("unknown option --" + key + (known.empty() ? "" : " (known:" + known + ")"));
    }
  }
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.back();
}

std::vector<std::string> Args::all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

void Args::expect_positional(size_t n, const std::string& usage) const {
  if (positional_.size() != n) throw Error("usage: " + usage);
}

}  // namespace moeq::cli

namespace moeq::cli {

long long Args::integer(const std::string& name, long long fallback, long long min) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (v.empty() || used != v.size() || n < min)
    throw Error("--" + name + " must be " +
                (min == 1 ? std::string("a positive integer") : "an integer >= " + std::to_string(min)) + ", got '" + v + "'");
  return n;
}

double Args::number(const std::string& name, double fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (v.empty() || used != v.size() || !std::isfinite(x)) throw Error("--" + name + " must be a number, got '" + v + "'");
  return x;
}

}  // namespace moeq::cli
