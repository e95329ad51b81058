#pragma once
// One registry for every extension axis (architectures, formats, export layouts, forwards).
// Each entry has a unique name; a file registers its entry at static-initialization time with
// MOEQ_REGISTER, so adding an architecture, a format or a layout never edits a list elsewhere.
// Libraries holding registrations are CMake OBJECT libraries (a static archive would drop them).
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace moeq {

template <class T>
class Registry {
 public:
  struct Entry {
    std::string name;
    T item;
  };

  // The one instance per T. A function-local static, so registration order across
  // translation units does not matter.
  static Registry& instance() {
    static Registry r;
    return r;
  }

  // Adds `item` under `name`; a second entry with the same name is a programming error.
  bool add(std::string name, T item) {
    for (const auto& e : entries_)
      if (e.name == name) throw Error("registry: '" + name + "' registered twice");
    entries_.push_back(Entry{std::move(name), std::move(item)});
    return true;
  }

  const T* find(const std::string& name) const {
    for (const auto& e : entries_)
      if (e.name == name) return &e.item;
    return nullptr;
  }

  // The entry named `name`, or an Error "unknown <what> 'name' (known: a, b, c)".
  const T& get(const std::string& name, const std::string& what) const {
    if (const T* t = find(name)) return *t;
    throw Error("unknown " + what + " '" + name + "' (known: " + known_list() + ")");
  }

  // The first entry whose item satisfies `pred`, or nullptr.
  template <class Pred>
  const T* find_if(Pred pred) const {
    for (const auto& e : entries_)
      if (pred(e.item)) return &e.item;
    return nullptr;
  }

  // Entries in registration order (tests iterate these instead of typing name lists).
  const std::vector<Entry>& entries() const { return entries_; }

  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto& e : entries_) n.push_back(e.name);
    std::sort(n.begin(), n.end());
    return n;
  }

  std::string known_list() const {
    std::string s;
    for (const auto& n : names()) s += (s.empty() ? "" : ", ") + n;
    return s.empty() ? "(none)" : s;
  }

 private:
  Registry() = default;
  std::vector<Entry> entries_;
};

}  // namespace moeq

#define MOEQ_REGISTRY_CAT2(a, b) a##b
#define MOEQ_REGISTRY_CAT(a, b) MOEQ_REGISTRY_CAT2(a, b)
// MOEQ_REGISTER(Type, "name", item): registers item in Registry<Type> from any .cpp file.
#define MOEQ_REGISTER(T, name, ...)                                        \
  namespace {                                                              \
  [[maybe_unused]] const bool MOEQ_REGISTRY_CAT(moeq_registered_, __LINE__) = \
      ::moeq::Registry<T>::instance().add(name, __VA_ARGS__);              \
  }
