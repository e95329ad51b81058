#include "app/cli/exit_codes.h"

#include <cstdio>
#include <exception>
#include <new>

#include "app/cli/parser.h"
#include "core/error.h"

namespace moeq::cli {
namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// moeq's messages may quote the input (a recipe key, a line of data): newlines become "\n" so
// the message stays one line and loses nothing.
std::string one_line(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '\n')
      out += "\\n";
    else if (ch == '\r')
      out += "\\r";
    else
      out += ch;
  }
  return out;
}

}  // namespace

int run_command(const std::string& name, const std::function<int()>& body) {
  const char* n = name.c_str();
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "moeq %s: error: %s\n", n, one_line(e.what()).c_str());
    return kExitUsage;
  } catch (const Error& e) {
    std::fprintf(stderr, "moeq %s: error: %s\n", n, one_line(e.what()).c_str());
    return kExitUserError;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "moeq %s: internal error: out of memory\n", n);
    return kExitInternal;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moeq %s: internal error: %s\n", n, first_line(e.what()).c_str());
    return kExitInternal;
  } catch (...) {
    std::fprintf(stderr, "moeq %s: internal error: unknown exception\n", n);
    return kExitInternal;
  }
}

}  // namespace moeq::cli
