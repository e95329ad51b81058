// Every registered export layout (export/<layout>/, export/layout.h), without naming any: its
// record agrees with itself, verify finds it by the quant_method it writes, and a weight-only
// expert export in a format it accepts quantizes and verifies clean. A new layout folder is
// covered here without editing this file.
#include <set>
#include <string>

#include "core/registry.h"
#include "export/export_test_util.h"
#include "export/layout.h"
#include "export/verify.h"
#include "formats/format.h"
#include "test_util.h"

using namespace moeq;

namespace {

// The first format (by name) whose weight-only routed experts the layout's writer accepts.
std::string format_written_by(const ExportLayout& layout) {
  Site site;
  site.name = "layers.0.experts.0.gate";
  site.role = Role::Expert;
  SitePlan p;
  p.site = &site;
  p.quantize = true;
  for (const auto& f : format_names()) {
    p.format = f;
    try {
      layout.writer->check(p);
      return f;
    } catch (const Error&) {
    }
  }
  return "";
}

}  // namespace

TEST_CASE("export layouts: each registration names one layout, with a writer, a reader and its own quant_method") {
  const auto& entries = Registry<ExportLayout>::instance().entries();
  REQUIRE(entries.size() >= 3);
  std::set<std::string> methods;
  for (const auto& e : entries) {
    INFO("layout " << e.name);
    CHECK(e.item.name == e.name);
    REQUIRE(e.item.writer);
    CHECK(e.item.writer->name() == e.name);
    CHECK(static_cast<bool>(e.item.open_reader));
    CHECK(methods.insert(e.item.quant_method).second);
    CHECK(export_layout_reading(e.item.quant_method) == &e.item);
    CHECK(&export_layout(e.name) == &e.item);
  }
  const std::string known = Registry<ExportLayout>::instance().known_list();
  REQUIRE_ERROR_MENTIONS(export_layout("gguf"), "unknown export 'gguf'", known.c_str());
  CHECK(export_layout_reading("gguf") == nullptr);
}

TEST_CASE("export layouts: each writes weight-only experts that its reader verifies clean against the source") {
  test::TempDir tmp;
  for (const auto& e : Registry<ExportLayout>::instance().entries()) {
    const std::string format = format_written_by(e.item);
    INFO("layout " << e.name << ", format " << format);
    REQUIRE_FALSE(format.empty());
    const std::string out = test::quantize_demo_export(
        tmp, false, e.name,
        "  - roles: [experts]\n    format: " + format + "\n  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n",
        e.name);
    const VerifyResult r = verify_export(out, tmp.path + "/flat");
    CHECK(r.layout == e.name);
    CHECK(r.problems.empty());
    CHECK(r.experts_expected > 0);
    CHECK(r.experts_quantized == r.experts_expected);
  }
}
