// DeepSeek-V3: the native forward against transformers on the tiny checkpoint (see test_forward_common.cpp).
#include <catch2/catch_test_macros.hpp>

#include "tests/calib/forward_test_util.h"

TEST_CASE("forward DeepSeek-V3: logits, routing and activation ranges match transformers", "[forward]") {
  moeq::test::check_family("deepseek_v3");
}

TEST_CASE("forward DeepSeek-V3 (interleaved RoPE with sharp attention): matches transformers", "[forward]") {
  moeq::test::check_family("deepseek_v3_sharp");
}

TEST_CASE("forward DeepSeek-V3 (YaRN with mscale_all_dim and rotate-half RoPE and sharp attention): matches transformers", "[forward]") {
  moeq::test::check_family("deepseek_v3_yarn");
}
