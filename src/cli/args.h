#pragma once
// A small command-line parser: positional arguments, `--flag`, `--key value` and
// `--key=value`. Unknown options are errors naming the option. (CLI11 would do, but the
// GPU build machine has no network and no CLI11 package; this is all moeq needs.)
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace moeq::cli {

class Args {
 public:
  // `flags`: options without a value; `options`: options taking one value (repeatable).
  Args(const std::vector<std::string>& argv, const std::set<std::string>& flags, const std::set<std::string>& options);
  const std::vector<std::string>& positional() const { return positional_; }
  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> all(const std::string& name) const;
  // The option as an integer >= min (fallback when absent); a malformed or smaller value is an
  // error naming the option and the value.
  long long integer(const std::string& name, long long fallback, long long min = 1) const;
  // The option as a finite number (fallback when absent); malformed -> error naming it.
  double number(const std::string& name, double fallback) const;
  // Exactly n positionals, else an error with the usage line.
  void expect_positional(size_t n, const std::string& usage) const;

 private:
  std::vector<std::string> positional_;
  std::set<std::string> flags_;
  std::map<std::string, std::vector<std::string>> values_;
};

}  // namespace moeq::cli
