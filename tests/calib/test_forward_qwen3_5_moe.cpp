// Qwen3.5-MoE: the native forward against transformers on the tiny checkpoint (see test_forward_common.cpp).
// Float32 only for now: the bfloat16 run is 0.40 off the float32 logits (max |logit| 1.69)
// where transformers' bfloat16 is 0.017 off; not yet explained (float32 matches to 7e-7).
#include <catch2/catch_test_macros.hpp>

#include "tests/calib/forward_test_util.h"

TEST_CASE("forward Qwen3.5-MoE: float32 logits, routing and activation ranges match transformers", "[forward]") {
  moeq::test::check_family_against_oracle("qwen3_5_moe");
}
