#pragma once
// moeq's exit codes (README "Exit codes") and the one place exceptions become them.
#include <functional>
#include <string>

namespace moeq::cli {

enum ExitCode : int {
  kExitOk = 0,         // done
  kExitUserError = 1,  // bad input or a refused run (moeq::Error: names the file, tensor, site)
  kExitUsage = 2,      // bad command line (UsageError): unknown option, missing or malformed value
  kExitInternal = 3,   // a bug or an environment failure: any other exception (libtorch, std)
};

// Runs `moeq NAME`'s body: its return value, or for an exception the code above with one line
// on stderr, "moeq NAME: error: ..." (newlines of the message written as \n); internal errors
// "moeq NAME: internal error: ..." with the first line only (libtorch appends a backtrace).
int run_command(const std::string& name, const std::function<int()>& body);

}  // namespace moeq::cli
