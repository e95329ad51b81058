#pragma once
// One function per `moeq` subcommand; each returns the process exit code and throws
// moeq::Error on failure (main turns it into one line on stderr and exit code 1).
#include <string>
#include <vector>

#include "core/error.h"

namespace moeq::cli {

int cmd_inspect(const std::vector<std::string>& args);
int cmd_make_demo(const std::vector<std::string>& args);
int cmd_quantize(const std::vector<std::string>& args);
int cmd_verify(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int bench_calibrate(const std::vector<std::string>& args);  // `moeq bench calibrate` (bench/bench_calibrate.cpp)
int bench_source(const std::vector<std::string>& args);     // `moeq bench source` (bench/bench_source.cpp)
int cmd_compare(const std::vector<std::string>& args);
int cmd_calibrate(const std::vector<std::string>& args);

}  // namespace moeq::cli
