// Qwen3-MoE: the native forward against transformers on the tiny checkpoint (see test_forward_common.cpp).
#include "tests/calib/forward_test_util.h"  // ATen, then Catch2

TEST_CASE("forward Qwen3-MoE: logits, routing and activation ranges match transformers", "[forward]") {
  moeq::test::check_family("qwen3_moe");
}
