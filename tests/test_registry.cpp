// Registry<T>: the one registry every extension axis uses.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include "core/registry.h"

namespace {
struct Widget {
  int size;
};
}  // namespace

MOEQ_REGISTER(Widget, "small", Widget{1})
MOEQ_REGISTER(Widget, "large", Widget{9})

TEST_CASE("registry: static registrations are found by name and listed sorted", "[registry]") {
  const auto& r = moeq::Registry<Widget>::instance();
  REQUIRE(r.entries().size() == 2);
  CHECK(r.get("large", "widget").size == 9);
  CHECK(r.find("medium") == nullptr);
  CHECK(r.names() == std::vector<std::string>{"large", "small"});
  CHECK(r.find_if([](const Widget& w) { return w.size == 1; })->size == 1);
  CHECK_THROWS_WITH(r.get("medium", "widget"), "unknown widget 'medium' (known: large, small)");
}

TEST_CASE("registry: a second entry with the same name is refused", "[registry]") {
  struct Gadget {};
  auto& r = moeq::Registry<Gadget>::instance();
  r.add("one", Gadget{});
  CHECK_THROWS_WITH(r.add("one", Gadget{}), "registry: 'one' registered twice");
}
