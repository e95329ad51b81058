// Quantized sources (FP8 block, MXFP4): every site of the published layouts
// (tests/python/make_published_quantized.py) decodes, through site_weight, to the bytes of
// transformers 5.17's own dequantization (tests/python/oracle_source_dequant.py), and the
// CUDA kernels give the same bytes where a GPU is present.
#include <ATen/ATen.h>

#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "tensor/source_dequant.h"
#include "model/plugin.h"
#include "test_util.h"

using namespace moeq;

namespace {

struct SourceLayout {
  const char* name;
  SourceFormat format;
  size_t sites;  // quantized-source sites expected
};

bool bits_equal(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
         at::equal(a.contiguous().view(at::kShort), b.contiguous().view(at::kShort));
}

}  // namespace

TEST_CASE("quantized sources decode to transformers' dequantization bit for bit", "[oracle]") {
  const std::string root = test::oracle_dir();
  for (const SourceLayout& l : {SourceLayout{"deepseek_v3_fp8", SourceFormat::Fp8Block, 2 * 5 + 3 + 4 * 3 + 3},
                          SourceLayout{"qwen3_moe_fp8", SourceFormat::Fp8Block, 2 * (4 + 4 * 3)},
                          SourceLayout{"gpt_oss_mxfp4", SourceFormat::Mxfp4, 2 * 4 * 3}}) {
    INFO("layout " << l.name);
    const std::string dir = root + "/published_quantized/" + l.name;
    const ModelConfig cfg = load_config(dir);
    const auto ck = Checkpoint::open(dir);
    const SiteMap map = map_sites(plugin_for(cfg), cfg, *ck);
    CHECK(map.unclaimed.empty());
    const auto oracle = Checkpoint::open_file(root + "/source_dequant/" + std::string(l.name) + ".safetensors");
    size_t n = 0;
    for (const Site& s : map.sites) {
      if (s.view.source == SourceFormat::Plain) continue;
      INFO("site " << s.name);
      REQUIRE(s.view.source == l.format);
      ++n;
      const at::Tensor got = site_weight(*ck, s);
      at::Tensor want;
      if (l.format == SourceFormat::Fp8Block) {
        want = tensor_view(*oracle, s.view.tensor);
      } else {  // transformers returns [E, in, out] (the bf16 module's layout)
        const std::string base = s.view.tensor.substr(0, s.view.tensor.size() - 7);
        want = tensor_view(*oracle, base).select(0, s.view.expert).t();
        want = want.slice(0, s.view.row_start, s.view.row_start + (s.view.rows - 1) * s.view.row_step + 1, s.view.row_step);
      }
      CHECK(bits_equal(got, want));
      if (at::hasCUDA()) {  // the CUDA kernel: the same bytes
        const at::Tensor codes = tensor_view(*ck, s.view.tensor), scales = tensor_view(*ck, s.view.scale);
        const at::Tensor cpu = l.format == SourceFormat::Fp8Block
                                   ? fp8_block_dequant(codes, scales, s.view.block_rows, s.view.block_cols, s.name)
                                   : mxfp4_dequant(codes, scales, s.name);
        const at::Tensor gpu = l.format == SourceFormat::Fp8Block
                                   ? fp8_block_dequant(codes.cuda(), scales.cuda(), s.view.block_rows, s.view.block_cols, s.name)
                                   : mxfp4_dequant(codes.cuda(), scales.cuda(), s.name);
        CHECK(bits_equal(cpu, gpu.cpu()));
      }
    }
    CHECK(n == l.sites);
    CHECK(map.source_scales.size() == (l.format == SourceFormat::Mxfp4 ? 4u : n));
  }
}

TEST_CASE("quantized source decoding rejects what it cannot decode", "[source]") {
  const at::Tensor q = at::zeros({130, 64}, at::kByte).view(at::kFloat8_e4m3fn);
  REQUIRE_ERROR_MENTIONS(fp8_block_dequant(q, at::ones({1, 1}), 128, 128, "tensor 'x.weight'"), "x.weight", "2, 1])",
                         "[130, 64]");
  REQUIRE_ERROR_MENTIONS(fp8_block_dequant(q, at::ones({2, 1}, at::kDouble), 128, 128, "tensor 'x.weight'"),
                         "F32 or BF16");
  at::Tensor scales = at::full({2, 1}, 127, at::kByte);
  scales[1][0] = 255;
  REQUIRE_ERROR_MENTIONS(mxfp4_dequant(at::zeros({2, 1, 16}, at::kByte), scales, "tensor 'y_blocks'"), "y_blocks",
                         "0xFF");
  // Partial edge blocks: each element takes its own block's scale.
  at::Tensor s = at::tensor({2.f, 4.f}).view({2, 1});
  const at::Tensor one = at::full({130, 64}, 0x38, at::kByte).view(at::kFloat8_e4m3fn);  // e4m3 0x38 = 1.0
  const at::Tensor d = fp8_block_dequant(one, s, 128, 128, "t").to(at::kFloat);
  CHECK(d[127][0].item<float>() == 2.f);
  CHECK(d[128][63].item<float>() == 4.f);
}

TEST_CASE("every FP8 code and E8M0 scale decodes as transformers does", "[oracle]") {
  const auto ck = Checkpoint::open_file(test::oracle_dir() + "/source_dequant/edges.safetensors");
  const at::Tensor q = tensor_view(*ck, "fp8_codes").view(at::kFloat8_e4m3fn);
  for (const char* sfx : {"f32", "bf16"}) {
    INFO("scale " << sfx);
    const at::Tensor got = fp8_block_dequant(q, tensor_view(*ck, std::string("fp8_scale_") + sfx), 128, 128, "fp8_codes");
    CHECK(bits_equal(got, tensor_view(*ck, std::string("fp8_deq_") + sfx)));
  }
  const at::Tensor got = mxfp4_dequant(tensor_view(*ck, "mxfp4_blocks"), tensor_view(*ck, "mxfp4_scales"), "mxfp4");
  CHECK(bits_equal(got, tensor_view(*ck, "mxfp4_deq")));
}
