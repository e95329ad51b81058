// GLM-4-MoE: the native forward against transformers on the tiny checkpoint (see test_forward_common.cpp).
#include <catch2/catch_test_macros.hpp>

#include "tests/calib/forward_test_util.h"

TEST_CASE("forward GLM-4-MoE: logits, routing and activation ranges match transformers", "[forward]") {
  moeq::test::check_family("glm4_moe");
}

TEST_CASE("forward GLM-4-MoE (QK norm and expert groups and routed scaling and partial rotary 0.25): matches transformers", "[forward]") {
  moeq::test::check_family("glm4_moe_qknorm");
}
