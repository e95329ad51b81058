// Qwen3.5-MoE: the native forward against transformers on the tiny checkpoint (see test_forward_common.cpp).
#include <catch2/catch_test_macros.hpp>

#include "tests/calib/forward_test_util.h"

TEST_CASE("forward Qwen3.5-MoE: matches transformers (gated delta-net and full attention layers)", "[forward]") {
  moeq::test::check_family("qwen3_5_moe");
}
