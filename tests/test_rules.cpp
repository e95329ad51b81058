// The plugin rule language: segment patterns and site templates.
#include "model/rules.h"
#include "test_util.h"

using namespace moeq;

namespace {
bool matches(const std::string& pattern, const std::string& name, Captures* c = nullptr) {
  Captures tmp;
  std::string n = name;
  return NamePattern(pattern).match(split_name(n), c ? c : &tmp);
}
}  // namespace

TEST_CASE("rules: segment patterns capture layer, expert and alternatives") {
  Captures c;
  REQUIRE(matches("model.layers.{L}.mlp.experts.{E}.{P:w1|w2|w3}.weight", "model.layers.12.mlp.experts.127.w3.weight", &c));
  CHECK(c.layer == 12);
  CHECK(c.expert == 127);
  CHECK(c.alt == "w3");
  CHECK_FALSE(matches("model.layers.{L}.mlp.gate.weight", "model.layers.x.mlp.gate.weight"));
  CHECK_FALSE(matches("model.layers.{L}.mlp.gate.weight", "model.layers.1.mlp.gate.weight.extra"));
  CHECK_FALSE(matches("model.layers.{L}.mlp.gate.weight", "model.layers.1.mlp.gate"));
  CHECK_FALSE(matches("a.{P:x|y}", "a.z"));
  CHECK(matches("model.vision_tower.**", "model.vision_tower.encoder.layers.3.mlp.fc1.weight"));
  CHECK_FALSE(matches("model.vision_tower.**", "model.vision_tower"));
  REQUIRE_THROWS_AS(NamePattern("a.**.b"), Error);
}

TEST_CASE("rules: templates expand captures and aliases") {
  Captures c;
  c.layer = 3;
  c.expert = 17;
  c.alt = "w1";
  CHECK(expand_template("layers.{L}.experts.{E}.{P}", c, {{"w1", "gate"}}) == "layers.3.experts.17.gate");
  CHECK(expand_template("layers.{L}.x.{P}", c, {}) == "layers.3.x.w1");
}
