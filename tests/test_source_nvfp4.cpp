// Quantized source -> NVFP4 without the bf16 stack (tensor/source_nvfp4.h) and the source
// decode kernels: on a CUDA device the fused kernels must give the bytes of the two passes
// (decode to bf16, then format nvfp4's quantize) on the device and on the CPU, for FP8-block
// (F32 and BF16 scale_inv, partial blocks as DeepSeek's 576-row kv_a_proj_with_mqa, odd
// shapes, unaligned codes) and MXFP4 sources; the decode kernels give the CPU's bytes; and
// quantize --device cuda's gathering of source bytes (app/run/batches.h) decodes to the CPU's
// gathered stack. The [cuda] cases skip without a GPU.
#include <ATen/ATen.h>

#include <optional>

#include "app/run/batches.h"
#include "formats/format.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "tensor/aten_view.h"
#include "tensor/source_dequant.h"
#include "tensor/source_nvfp4.h"
#include "tensor/source_view.h"
#include "test_util.h"

using namespace moeq;

namespace {

const QuantFormat& nv() { return format_by_name("nvfp4"); }

bool bytes_equal(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
         at::equal(a.cpu().contiguous().reshape({-1}).view(at::kByte), b.cpu().contiguous().reshape({-1}).view(at::kByte));
}

void require_same(const QuantizedTensor& a, const QuantizedTensor& b) {
  REQUIRE(a.format == b.format);
  REQUIRE(a.shape == b.shape);
  REQUIRE(a.orig_dtype == b.orig_dtype);
  REQUIRE(a.params.block_size == b.params.block_size);
  REQUIRE(a.parts.size() == b.parts.size());
  for (const auto& [name, t] : a.parts) {
    INFO("part " << name);
    REQUIRE(b.parts.count(name));
    CHECK(bytes_equal(t, b.parts.at(name)));
  }
}

// Random FP8 codes (every value but the two NaN codes 0x7F / 0xFF), as F8_E4M3.
at::Tensor random_fp8(const std::vector<int64_t>& shape) {
  at::Tensor c = at::randint(0, 256, shape, at::kByte);
  c = at::where(at::bitwise_and(c, 0x7F) == 0x7F, c - 1, c);
  return c.view(at::kFloat8_e4m3fn);
}

// Positive scale_inv of the blocks, with one zero and one negative block (the math takes them).
at::Tensor random_scales(const std::vector<int64_t>& shape, at::ScalarType dt) {
  at::Tensor s = at::rand(shape, at::kFloat) * 1e-3 + 1e-6;
  s.view({-1})[0] = 0.f;
  if (s.numel() > 1) s.view({-1})[1] = -2e-4f;
  return s.to(dt);
}

// The same bytes at an odd address: a view one byte into a larger buffer (the kernels' scalar paths).
at::Tensor unaligned(const at::Tensor& t) {
  at::Tensor buf = at::empty({t.numel() * t.element_size() + 1}, t.options().dtype(at::kByte));
  at::Tensor v = buf.narrow(0, 1, t.numel() * t.element_size());
  v.copy_(t.contiguous().view({-1}).view(at::kByte));
  return v.view(t.scalar_type()).view(t.sizes());
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

TEST_CASE("fused source -> nvfp4: the CPU takes the two passes, and refuses what nvfp4 refuses", "[source]") {
  at::manual_seed(1);
  const at::Tensor w = random_fp8({2, 130, 48});
  const at::Tensor s = random_scales({2, 2, 1}, at::kFloat);
  require_same(fp8_block_to_nvfp4(w, s, 128, 128, FormatParams{}, std::nullopt, "t"),
               nv().quantize(fp8_block_dequant(w, s, 128, 128, "t"), FormatParams{}, std::nullopt));
  const at::Tensor d = fp8_block_dequant(w, s, 128, 128, "t");
  CHECK(at::equal(fp8_block_decoded_amax(w, s, 128, 128, "t"), d.abs().amax({1, 2}).to(at::kFloat)));
  REQUIRE_ERROR_MENTIONS(fp8_block_to_nvfp4(random_fp8({4, 40}), at::ones({1, 1}), 128, 128, FormatParams{}, std::nullopt,
                                            "tensor 'x.weight'"),
                         "nvfp4", "40", "16");
  REQUIRE_ERROR_MENTIONS(fp8_block_to_nvfp4(w, at::ones({2, 1, 1}), 128, 128, FormatParams{}, std::nullopt,
                                            "tensor 'x.weight'"),
                         "x.weight", "[2, 1, 1]");
  const at::Tensor blocks = at::randint(0, 256, {3, 2, 16}, at::kByte), scales = at::full({3, 2}, 127, at::kByte);
  require_same(mxfp4_source_to_nvfp4(blocks, scales, FormatParams{}, std::nullopt, "m"),
               nv().quantize(mxfp4_dequant(blocks, scales, "m"), FormatParams{}, std::nullopt));
}

TEST_CASE("fused FP8-block -> nvfp4 on CUDA gives the two passes' bytes", "[source][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  at::manual_seed(2);
  struct Case {
    std::vector<int64_t> shape;
    int64_t bm, bn;
  };
  // DeepSeek-V3 kv_a_proj_with_mqa [576, 7168] (a partial row block), q_b_proj-like and expert
  // stacks, partial column blocks (176 = 128 + 48), row runs shorter than a CUDA block's, other
  // block sizes, and a block width not a multiple of 16 (the two passes themselves).
  const std::vector<Case> cases = {{{576, 7168}, 128, 128}, {{3, 200, 176}, 128, 128}, {{2, 130, 64}, 128, 128},
                                   {{4, 256, 7168}, 128, 128}, {{2, 7, 4096}, 128, 128}, {{5, 3, 16}, 128, 128},
                                   {{2, 100, 96}, 64, 32}, {{1, 40, 48}, 8, 8}, {{1, 1, 16}, 1, 16}};
  for (const Case& c : cases) {
    const int64_t R = c.shape[c.shape.size() - 2], C = c.shape.back();
    std::vector<int64_t> sshape = c.shape;
    sshape[sshape.size() - 2] = cdiv(R, c.bm);
    sshape.back() = cdiv(C, c.bn);
    for (at::ScalarType st : {at::kFloat, at::kBFloat16}) {
      for (bool odd : {false, true}) {
        INFO("shape " << at::IntArrayRef(c.shape) << " block " << c.bm << "x" << c.bn << " scale "
                      << c10::toString(st) << (odd ? " unaligned" : ""));
        const at::Tensor w = random_fp8(c.shape), s = random_scales(sshape, st);
        const at::Tensor wd = odd ? unaligned(w.cuda()) : w.cuda(), sd = s.cuda();
        const QuantizedTensor fused = fp8_block_to_nvfp4(wd, sd, c.bm, c.bn, FormatParams{}, std::nullopt, "t");
        const QuantizedTensor two = nv().quantize(fp8_block_dequant(wd, sd, c.bm, c.bn, "t"), FormatParams{}, std::nullopt);
        const QuantizedTensor cpu = nv().quantize(fp8_block_dequant(w, s, c.bm, c.bn, "t"), FormatParams{}, std::nullopt);
        require_same(fused, two);
        require_same(fused, cpu);
        // The decoded stack's amax without the stack, and a given (shared) amax.
        const at::Tensor dec = fp8_block_dequant(w, s, c.bm, c.bn, "t");
        const at::Tensor want = (c.shape.size() == 2 ? dec.abs().amax() : dec.abs().amax({1, 2})).to(at::kFloat);
        const at::Tensor got = fp8_block_decoded_amax(wd, sd, c.bm, c.bn, "t");
        CHECK(got.sizes() == want.sizes());
        CHECK(at::equal(got.cpu(), want));
        const at::Tensor shared = want * 1.75f;
        require_same(fp8_block_to_nvfp4(wd, sd, c.bm, c.bn, FormatParams{}, shared.cuda(), "t"),
                     nv().quantize(dec, FormatParams{}, shared));
      }
    }
  }
  // A NaN code: the two passes refuse the weight, so does the fused kernel.
  at::Tensor w = random_fp8({2, 64, 32}).view(at::kByte);
  w[1][5][7] = 0x7F;
  const at::Tensor wd = w.view(at::kFloat8_e4m3fn).cuda(), s = random_scales({2, 1, 1}, at::kFloat).cuda();
  REQUIRE_ERROR_MENTIONS(fp8_block_to_nvfp4(wd, s, 128, 128, FormatParams{}, std::nullopt, "t"), "NaN or Inf");
  REQUIRE_ERROR_MENTIONS(fp8_block_decoded_amax(wd, s, 128, 128, "t"), "NaN or Inf");
}

TEST_CASE("fused MXFP4 -> nvfp4 on CUDA gives the two passes' bytes", "[source][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  at::manual_seed(3);
  // gpt-oss-120b's gate_up width (2880 = 90 groups), small and 2D stacks.
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{2, 64, 90, 16}, std::vector<int64_t>{3, 9, 4, 16},
                                            std::vector<int64_t>{33, 3, 16}, std::vector<int64_t>{1, 1, 1, 16}}) {
    for (bool odd : {false, true}) {
      INFO("blocks " << at::IntArrayRef(shape) << (odd ? " unaligned" : ""));
      const at::Tensor b = at::randint(0, 256, shape, at::kByte);
      const at::Tensor s = at::randint(100, 150, std::vector<int64_t>(shape.begin(), shape.end() - 1), at::kByte);
      const at::Tensor bd = odd ? unaligned(b.cuda()) : b.cuda(), sd = s.cuda();
      const QuantizedTensor fused = mxfp4_source_to_nvfp4(bd, sd, FormatParams{}, std::nullopt, "m");
      require_same(fused, nv().quantize(mxfp4_dequant(bd, sd, "m"), FormatParams{}, std::nullopt));
      require_same(fused, nv().quantize(mxfp4_dequant(b, s, "m"), FormatParams{}, std::nullopt));
      const at::Tensor dec = mxfp4_dequant(b, s, "m");
      const at::Tensor want = (shape.size() == 3 ? dec.abs().amax() : dec.abs().amax({1, 2})).to(at::kFloat);
      CHECK(at::equal(mxfp4_decoded_amax(bd, sd, "m").cpu(), want));
    }
  }
  at::Tensor s = at::full({2, 3}, 120, at::kByte);
  s[1][2] = 0xFF;
  REQUIRE_ERROR_MENTIONS(mxfp4_source_to_nvfp4(at::zeros({2, 3, 16}, at::kByte).cuda(), s.cuda(), FormatParams{},
                                               std::nullopt, "tensor 'y_blocks'"),
                         "y_blocks", "0xFF");
}

TEST_CASE("source decode kernels give the CPU's bytes (every scale, unaligned codes, odd widths)", "[source][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  at::manual_seed(4);
  // MXFP4: every E8M0 scale 0..254 (subnormal and overflowing products included) and every byte.
  const at::Tensor b = at::randint(0, 256, {255, 7, 16}, at::kByte);
  const at::Tensor s = at::arange(255, at::kInt).to(at::kByte).view({255, 1}).expand({255, 7}).contiguous();
  const at::Tensor want = mxfp4_dequant(b, s, "m");
  CHECK(bytes_equal(mxfp4_dequant(b.cuda(), s.cuda(), "m"), want));
  CHECK(bytes_equal(mxfp4_dequant(unaligned(b.cuda()), s.cuda(), "m"), want));
  // FP8 block: aligned, unaligned, a width not a multiple of 4 (the scalar path), BF16 scales.
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{3, 200, 176}, std::vector<int64_t>{130, 130}}) {
    for (at::ScalarType st : {at::kFloat, at::kBFloat16}) {
      const at::Tensor w = random_fp8(shape);
      std::vector<int64_t> ss = shape;
      ss[ss.size() - 2] = cdiv(ss[ss.size() - 2], 128);
      ss.back() = cdiv(ss.back(), 128);
      const at::Tensor sc = random_scales(ss, st);
      const at::Tensor cpu = fp8_block_dequant(w, sc, 128, 128, "t");
      CHECK(bytes_equal(fp8_block_dequant(w.cuda(), sc.cuda(), 128, 128, "t"), cpu));
      CHECK(bytes_equal(fp8_block_dequant(unaligned(w.cuda()), sc.cuda(), 128, 128, "t"), cpu));
    }
  }
}

namespace {

// A checkpoint of quantized-source tensors and sites over them, written by hand: two FP8
// weights (read whole, transposed and sliced as a view can, and as row ranges), and an MXFP4
// stack of 2 experts whose gate rows are every other row (gpt-oss's interleaved gate_up).
struct SourceCheckpoint {
  test::TempDir dir;
  std::shared_ptr<Checkpoint> ck;
  std::vector<Site> sites;
  std::vector<SitePlan> plans;

  SourceCheckpoint() {
    at::manual_seed(5);
    std::map<std::string, at::Tensor> t;
    t["a.weight"] = random_fp8({200, 176}).view(at::kByte);
    t["a.weight_scale_inv"] = random_scales({2, 2}, at::kFloat);
    t["b.weight"] = random_fp8({200, 176}).view(at::kByte);
    t["b.weight_scale_inv"] = random_scales({2, 2}, at::kFloat);
    t["e.gate_up_proj_blocks"] = at::randint(0, 256, {2, 10, 3, 16}, at::kByte);
    t["e.gate_up_proj_scales"] = at::randint(110, 130, {2, 10, 3}, at::kByte);
    std::vector<TensorSpec> specs;
    for (const auto& [name, v] : t) {
      const DType dt = name.find("blocks") != std::string::npos || name.find("_scales") != std::string::npos ? DType::U8
                       : name.find("scale_inv") != std::string::npos                                           ? DType::F32
                                                                                                             : DType::F8_E4M3;
      specs.push_back(TensorSpec{name, dt, v.sizes().vec()});
    }
    {
      SafetensorsWriter w(dir.path, specs, ~0ull);
      for (const auto& [name, v] : t) w.write(name, v.data_ptr(), v.nbytes());
      w.finish();
    }
    ck = Checkpoint::open(dir.path);
    auto fp8 = [](const std::string& x, bool transpose, int64_t row_start = -1) {
      Site s;
      s.name = x;
      s.view.tensor = x + ".weight";
      s.view.source = SourceFormat::Fp8Block;
      s.view.scale = x + ".weight_scale_inv";
      s.view.block_rows = s.view.block_cols = 128;
      s.view.transpose = transpose;
      s.view.row_start = transpose ? 3 : 0;
      s.view.row_step = transpose ? 2 : 1;
      s.view.rows = transpose ? 80 : 200;
      s.view.cols = transpose ? 200 : 176;
      if (row_start >= 0) {  // rows [row_start, row_start + 100)
        s.view.row_start = row_start;
        s.view.rows = 100;
      }
      return s;
    };
    sites = {fp8("a", false), fp8("b", false), fp8("a", true), fp8("b", true)};
    for (int e = 0; e < 2; ++e) {
      Site s;
      s.name = "experts." + std::to_string(e) + ".gate";
      s.view.tensor = "e.gate_up_proj_blocks";
      s.view.source = SourceFormat::Mxfp4;
      s.view.scale = "e.gate_up_proj_scales";
      s.view.block_rows = 1;
      s.view.block_cols = 32;
      s.view.expert = e;
      s.view.row_start = 0;
      s.view.row_step = 2;
      s.view.rows = 5;
      s.view.cols = 96;
      sites.push_back(s);
    }
    sites.push_back(fp8("a", false, 0));  // 6, 7: the same shape, other rows
    sites.push_back(fp8("b", false, 100));
    plans.resize(sites.size());
    for (size_t i = 0; i < sites.size(); ++i) plans[i].site = &sites[i];
  }

  SiteBatch batch(std::initializer_list<size_t> idx) const {
    SiteBatch b;
    for (size_t i : idx) b.sites.push_back(&plans[i]);
    b.key = "test";
    return b;
  }
};

}  // namespace

TEST_CASE("quantize --device cuda: source bytes gathered and decoded on the device = the CPU's gathered stack",
          "[source][cuda]") {
  const SourceCheckpoint sc;
  const std::vector<SiteBatch> batches = {sc.batch({0, 1}), sc.batch({2, 3}), sc.batch({0}), sc.batch({4, 5}),
                                          sc.batch({5}), sc.batch({6, 7})};
  for (const SiteBatch& b : batches) {
    INFO("batch of " << b.sites.size() << ", first " << b.sites[0]->site->name << " rows " << b.sites[0]->site->view.rows);
    const at::Tensor want = gather_stack(*sc.ck, b, false);
    const GatheredStack g = gather_for_device(*sc.ck, b, false);
    // {6, 7}: other rows of their tensors: the views differ, the host decodes them.
    CHECK(g.codes.defined() == (b.sites.size() == 1 || b.sites[1]->site->view.row_start == b.sites[0]->site->view.row_start));
    CHECK(bytes_equal(decode_on(g, at::kCPU), want));
    if (at::hasCUDA()) CHECK(bytes_equal(decode_on(gather_for_device(*sc.ck, b, true), at::kCUDA), want));
  }
}
