#pragma once
// moeq reports every failure as a moeq::Error whose message a user can act on:
// it names the file, tensor or key involved. The CLI prints it on one line.
#include <stdexcept>
#include <string>

namespace moeq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace moeq
