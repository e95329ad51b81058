#pragma once
// moeq's command lines, on CLI11 (docs/dependencies.md). Each subcommand declares its
// positionals, options and flags with a description; `--help` / `-h` print the usage, every
// option with its default and an example (exit 0). A bad command line is a UsageError: one
// line naming the option and the value, exit 2 (app/cli/exit_codes.h).
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/error.h"

namespace moeq::cli {

// A command line moeq cannot run: unknown option, missing or malformed value. main() exits 2.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& msg) : Error(msg) {}
};

class Command {
 public:
  // name: "quantize" or "bench formats"; usage: the synopsis after `moeq NAME`; example: one
  // complete command line (shown under --help).
  Command(const std::string& name, const std::string& summary, const std::string& usage, const std::string& example);

  // A required positional argument.
  CLI::Option* positional(const std::string& name, std::string& into, const std::string& help);
  // An option taking a value; its default is the variable's value now (shown in --help;
  // `shown_default` replaces it where the default is computed later, e.g. "128,1408,2816 on cuda").
  template <class T>
  CLI::Option* option(const std::string& names, T& into, const std::string& help, const std::string& shown_default = "") {
    CLI::Option* o = app_.add_option(names, into);
    std::string d = shown_default;
    if (d.empty()) d = o->capture_default_str()->get_default_str();
    o->default_str("");  // shown in the description instead, in words
    return o->description(help + " (default: " + (d.empty() || d == "[]" ? "none" : d) + ")");
  }
  // A flag (no value; default off).
  CLI::Option* flag(const std::string& names, bool& into, const std::string& help);
  // An option accepted under a second name, not listed (kept for older command lines).
  template <class T>
  void alias(const std::string& name, T& into) {
    app_.add_option(name, into)->group("");
  }

  // Parses argv (the arguments after the subcommand). Returns false when --help / -h was given:
  // the help is printed on stdout and the command returns 0.
  bool parse(const std::vector<std::string>& argv);
  // Throws the UsageError for `what`, with the usage line.
  [[noreturn]] void fail(const std::string& what) const;
  bool given(const std::string& name) const { return app_.count(name) > 0; }
  CLI::App& app() { return app_; }

 private:
  std::string name_, usage_;
  CLI::App app_;
};

// Validators with moeq's wording: "--samples must be a positive integer, got '0'".
CLI::Validator integer_at_least(long long min);
CLI::Validator finite_number();
// Non-negative finite number.
CLI::Validator non_negative_number();
// One of the listed values.
CLI::Validator one_of(const std::vector<std::string>& values);

}  // namespace moeq::cli
