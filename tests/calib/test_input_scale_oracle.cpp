// Input scales against the reference libraries' own export functions
// (tests/python/oracle_input_scale.py): ModelOpt's NVFP4 and FP8 activation scaling
// factors and compressed-tensors' NVFP4 input global scale and FP8 input scale, bit for bit.
#include <ATen/ATen.h>

#include <cstring>

#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "calib/calibrators/input_scales.h"
#include "test_util.h"

using namespace moeq;

namespace {
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
}  // namespace

TEST_CASE("input scales: NVFP4 / FP8 from amax equal ModelOpt's and compressed-tensors' bit for bit", "[oracle]") {
  auto ck = Checkpoint::open_file(test::oracle_dir() + "/input_scale.safetensors");
  const at::Tensor amax = tensor_view(*ck, "amax").contiguous();
  const at::Tensor mo_nvfp4 = tensor_view(*ck, "modelopt_nvfp4").contiguous();
  const at::Tensor mo_fp8 = tensor_view(*ck, "modelopt_fp8").contiguous();
  const at::Tensor ct_global = tensor_view(*ck, "ct_nvfp4_global").contiguous();
  const at::Tensor ct_fp8 = tensor_view(*ck, "ct_fp8").contiguous();
  REQUIRE(amax.numel() >= 500);
  int64_t reciprocal_differs = 0;
  for (int64_t i = 0; i < amax.numel(); ++i) {
    const float a = amax.data_ptr<float>()[i];
    INFO("amax " << a);
    CHECK(bits(input_scale_from_amax("nvfp4", a)) == bits(mo_nvfp4.data_ptr<float>()[i]));
    CHECK(bits(input_scale_from_amax("fp8", a)) == bits(mo_fp8.data_ptr<float>()[i]));
    CHECK(bits(input_scale_from_amax("fp8", a)) == bits(ct_fp8.data_ptr<float>()[i]));
    CHECK(bits(input_global_scale_from_amax(a)) == bits(ct_global.data_ptr<float>()[i]));
    reciprocal_differs += bits(1.0f / input_scale_from_amax("nvfp4", a)) != bits(ct_global.data_ptr<float>()[i]);
  }
  // Why the compressed-tensors writer does not store 1 / input_scale.
  CHECK(reciprocal_differs > 0);
  REQUIRE_ERROR_MENTIONS(input_scale_from_amax("nvfp4", 0.0f), "finite and > 0");
  REQUIRE_ERROR_MENTIONS(input_scale_from_amax("int4", 1.0f), "int4", "nvfp4, fp8");
}
