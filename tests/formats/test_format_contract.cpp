// One contract over every registered format (the registry, not a list of names): what its
// traits and declarations promise holds for what quantize() returns. A new format passes this
// test or says where its traits are wrong.
#include <ATen/ATen.h>

#include <cmath>
#include <cstring>

#include "core/registry.h"
#include "formats/format.h"
#include "formats/part_specs.h"
#include "test_util.h"

using namespace moeq;

namespace {

// A fixed seeded Gaussian stack [E, out, in] whose last dim every format's block divides.
at::Tensor seeded_stack(int64_t E = 2, int64_t out = 64, int64_t in = 256) {
  at::manual_seed(1234);
  return at::randn({E, out, in}, at::kFloat).to(at::kBFloat16);
}

double sqnr_db(const at::Tensor& w, const at::Tensor& deq) {
  const at::Tensor x = w.to(at::kDouble), d = deq.to(at::kDouble);
  const double signal = x.pow(2).sum().item<double>(), noise = (x - d).pow(2).sum().item<double>();
  return 10.0 * std::log10(signal / noise);
}

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const at::Tensor x = a.cpu().contiguous(), y = b.cpu().contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

const std::vector<Registry<FormatPtr>::Entry>& formats() { return Registry<FormatPtr>::instance().entries(); }

}  // namespace

TEST_CASE("every registered format: name, traits and lookup agree", "[formats][contract]") {
  REQUIRE(formats().size() >= 7);
  for (const auto& e : formats()) {
    INFO("format " << e.name);
    CHECK(e.item->name() == e.name);
    CHECK(&format_by_name(e.name) == e.item.get());
    CHECK(find_format(e.name) == e.item.get());
    const FormatTraits t = e.item->traits();
    CHECK((t.bits == 4 || t.bits == 8));
    if (t.kind == ElementKind::Float) CHECK(1 + t.exponent_bits + t.mantissa_bits == t.bits);
    if (t.block_fixed) CHECK(t.block > 0);
    CHECK((t.block == 0) == (t.block_scale == BlockScale::None));
    // Activation quantization comes with the divisor of its input scale and a label.
    CHECK((t.input_quant == InputQuant::None) == (t.input_amax_divisor == 0.f));
    CHECK((t.input_quant == InputQuant::None) == (std::string(t.activation_label).empty()));
    if (t.global_scale) CHECK(e.item->has_tensor_scale(FormatParams{}));
    CHECK(t.sqnr_floor_db > 0);
  }
  REQUIRE_ERROR_MENTIONS(format_by_name("no-such-format"), "unknown format 'no-such-format' (known: ");
  CHECK(find_format("no-such-format") == nullptr);
}

TEST_CASE("every registered format: parts, bits per weight and error floor hold", "[formats][contract]") {
  const at::Tensor w = seeded_stack();
  const std::vector<int64_t> shape = w.sizes().vec();
  for (const auto& e : formats()) {
    INFO("format " << e.name);
    const QuantFormat& f = *e.item;
    const FormatTraits t = f.traits();
    const FormatParams p;
    f.validate(shape, p);
    const QuantizedTensor q = f.quantize(w, p);
    CHECK(q.format == e.name);
    CHECK(q.shape == shape);
    REQUIRE(q.parts.count(q.parts.count("weight") ? "weight" : "weight_packed"));
    // A stack's parts all lead with the expert dimension.
    for (const auto& [name, part] : q.parts) {
      INFO("part " << name);
      REQUIRE(part.dim() >= 1);
      CHECK(part.size(0) == shape[0]);
    }
    // Declared parts (formats that lay out their export before quantizing) are exactly these.
    if (const auto specs = f.part_specs(shape, p)) {
      CHECK(specs->size() == q.parts.size());
      for (const auto& [name, spec] : *specs) {
        INFO("declared part " << name);
        REQUIRE(q.parts.count(name));
        CHECK(q.parts.at(name).scalar_type() == spec.dtype);
        CHECK(q.parts.at(name).sizes().vec() == spec.shape);
      }
      CHECK(part_specs(e.name, shape, p).has_value());
    }
    // bits_per_weight is the bytes written (within the per-matrix metadata a format keeps).
    double bytes = 0;
    for (const auto& [name, part] : q.parts) bytes += static_cast<double>(part.nbytes());
    const double numel = static_cast<double>(w.numel());
    CHECK(std::fabs(8.0 * bytes / numel - f.bits_per_weight(shape, p)) < 0.02 * f.bits_per_weight(shape, p));
    CHECK(f.bits_per_weight(shape, p) >= t.bits);
    // dequantize(quantize(w)) stays above the format's declared SQNR floor.
    const at::Tensor d = f.dequantize(q);
    CHECK(d.sizes().vec() == shape);
    CHECK(sqnr_db(w, d) >= t.sqnr_floor_db);
    // A per-tensor scale means a given amax replaces the weights' own.
    if (f.has_tensor_scale(p)) {
      const at::Tensor amax = w.abs().amax({1, 2}).to(at::kFloat);
      const QuantizedTensor g = f.quantize(w, p, amax);
      for (const auto& [name, part] : q.parts) CHECK(same_bytes(part, g.parts.at(name)));
    }
  }
}

TEST_CASE("every registered format: kernel == torch ops, and CPU == CUDA where built", "[formats][contract]") {
  const at::Tensor w = seeded_stack();
  for (const auto& e : formats()) {
    INFO("format " << e.name);
    const QuantFormat& f = *e.item;
    const QuantizedTensor k = f.quantize(w, FormatParams{});
    const QuantizedTensor r = f.quantize_torch_ops(w, FormatParams{});
    REQUIRE(k.parts.size() == r.parts.size());
    for (const auto& [name, part] : k.parts) {
      INFO("part " << name);
      CHECK(same_bytes(part, r.parts.at(name)));
    }
    if (!at::hasCUDA()) continue;
    const QuantizedTensor c = f.quantize(w.cuda(), FormatParams{});
    for (const auto& [name, part] : k.parts) {
      INFO("CUDA part " << name);
      CHECK(same_bytes(part, c.parts.at(name)));
    }
  }
}
