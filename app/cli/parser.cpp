#include "app/cli/parser.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

namespace moeq::cli {

Command::Command(const std::string& name, const std::string& summary, const std::string& usage, const std::string& example)
    : name_(name), usage_("moeq " + name + " " + usage), app_(summary, "moeq " + name) {
  app_.footer("Usage line: " + usage_ + "\n\nExample:\n  " + example);
  app_.set_help_flag("-h,--help", "Print this help (usage, every option with its default, an example) and exit");
  app_.get_formatter()->column_width(34);
}

CLI::Option* Command::positional(const std::string& name, std::string& into, const std::string& help) {
  return app_.add_option(name, into, help)->required();
}

CLI::Option* Command::flag(const std::string& names, bool& into, const std::string& help) {
  return app_.add_flag(names, into, help + " (default: off)");
}

namespace {

bool looks_numeric(const std::string& a) {
  return a.size() > 1 && a[0] == '-' && (std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.');
}

}  // namespace

bool Command::parse(const std::vector<std::string>& argv) {
  // An unknown option is named first (CLI11 would report a missing required option before it).
  for (const auto& a : argv) {
    if (a.size() < 2 || a[0] != '-' || a == "--" || looks_numeric(a)) continue;
    const std::string name = a.substr(0, a.find('='));
    bool known = false;
    for (const CLI::Option* o : app_.get_options()) {
      for (const auto& l : o->get_lnames()) known = known || name == "--" + l;
      for (const auto& s : o->get_snames()) known = known || name == "-" + s;
    }
    if (!known) fail("unknown option " + name);
  }
  std::vector<std::string> rev(argv.rbegin(), argv.rend());  // CLI11 takes them last first
  try {
    app_.parse(rev);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app_.help().c_str(), stdout);
    return false;
  } catch (const CLI::ParseError& e) {
    fail(e.what());
  }
  return true;
}

void Command::fail(const std::string& what) const {
  std::string msg = what;
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  throw UsageError(msg + " (usage: " + usage_ + "; moeq " + name_ + " --help lists every option)");
}

namespace {

bool parse_integer(const std::string& v, long long* n) {
  size_t used = 0;
  try {
    *n = std::stoll(v, &used);
  } catch (const std::exception&) {
    return false;
  }
  return !v.empty() && used == v.size();
}

bool parse_number(const std::string& v, double* x) {
  size_t used = 0;
  try {
    *x = std::stod(v, &used);
  } catch (const std::exception&) {
    return false;
  }
  return !v.empty() && used == v.size() && std::isfinite(*x);
}

}  // namespace

CLI::Validator integer_at_least(long long min) {
  const std::string want = min == 1 ? "a positive integer" : "an integer >= " + std::to_string(min);
  return CLI::Validator(
      [min, want](std::string& v) {
        long long n = 0;
        return parse_integer(v, &n) && n >= min ? std::string() : "must be " + want + ", got '" + v + "'";
      },
      min == 1 ? "INT>=1" : "INT>=" + std::to_string(min));
}

CLI::Validator finite_number() {
  return CLI::Validator(
      [](std::string& v) {
        double x = 0;
        return parse_number(v, &x) ? std::string() : "must be a number, got '" + v + "'";
      },
      "NUMBER");
}

CLI::Validator non_negative_number() {
  return CLI::Validator(
      [](std::string& v) {
        double x = 0;
        return parse_number(v, &x) && x >= 0 ? std::string() : "must be a number >= 0, got '" + v + "'";
      },
      "NUMBER>=0");
}

CLI::Validator one_of(const std::vector<std::string>& values) {
  std::string list;
  for (const auto& v : values) list += (list.empty() ? "" : "|") + v;
  return CLI::Validator(
      [values, list](std::string& v) {
        return std::find(values.begin(), values.end(), v) != values.end() ? std::string()
                                                                          : "must be " + list + ", got '" + v + "'";
      },
      list);
}

}  // namespace moeq::cli
