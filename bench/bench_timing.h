#pragma once
// Shared by the `moeq bench` subcommands: the median wall time of a callable (after one warm-up
// call; CUDA synchronized around each call), and the --shape E,out,in parser.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace moeq::cli {

double median_seconds(const std::function<void()>& fn, bool cuda, int iters);
// "E,out,in" -> three positive integers; anything else is a UsageError naming the value.
std::vector<int64_t> parse_shape(const std::string& s);

}  // namespace moeq::cli
