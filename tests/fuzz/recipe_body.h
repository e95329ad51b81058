#pragma once
// The fuzzed operation: arbitrary bytes as a recipe (YAML) through parse_recipe.
#include "fuzz/scratch.h"
#include "recipe/recipe.h"

namespace moeq::fuzz {

inline int recipe_one(const uint8_t* data, size_t size) {
  try {
    const Recipe r = parse_recipe(std::string(reinterpret_cast<const char*>(data), size), "<fuzz>.yaml");
    return static_cast<int>(r.rules.size() & 1);
  } catch (const Error& e) {
    return rejected(e);
  }
}

}  // namespace moeq::fuzz
