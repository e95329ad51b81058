// gpt-oss: the native forward against transformers on the tiny checkpoint (see test_forward_common.cpp).
#include <catch2/catch_test_macros.hpp>

#include "tests/calib/forward_test_util.h"

TEST_CASE("forward gpt-oss: logits, routing and activation ranges match transformers", "[forward]") {
  moeq::test::check_family("gpt_oss");
}

TEST_CASE("forward gpt-oss (sliding window shorter than the sequence and sharp attention and larger sinks): matches transformers", "[forward]") {
  moeq::test::check_family("gpt_oss_window");
}
