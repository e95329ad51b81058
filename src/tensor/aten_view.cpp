#include "tensor/aten_view.h"

#include "core/error.h"
#include "tensor/source_dequant.h"
#include "tensor/source_view.h"

namespace moeq {

at::ScalarType to_scalar_type(DType t) {
  switch (t) {
    case DType::BOOL: return at::kBool;
    case DType::U8: return at::kByte;
    case DType::I8: return at::kChar;
    case DType::U16: return at::kUInt16;
    case DType::I16: return at::kShort;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::U32: return at::kUInt32;
    case DType::I32: return at::kInt;
    case DType::F32: return at::kFloat;
    case DType::U64: return at::kUInt64;
    case DType::I64: return at::kLong;
    case DType::F64: return at::kDouble;
    case DType::F8_E4M3: return at::kFloat8_e4m3fn;
    case DType::F8_E5M2: return at::kFloat8_e5m2;
  }
  throw Error("unsupported dtype");
}

at::Tensor tensor_view(const Checkpoint& ckpt, const std::string& name) {
  const TensorInfo& info = ckpt.info(name);
  std::shared_ptr<MappedFile> keep = ckpt.file_of(name).mapping();
  void* ptr = const_cast<uint8_t*>(ckpt.data(name));
  return at::from_blob(
      ptr, info.shape, [keep](void*) mutable { keep.reset(); },
      at::TensorOptions().dtype(to_scalar_type(info.dtype)).device(at::kCPU));
}

at::ScalarType site_dtype(const Checkpoint& ckpt, const Site& site) {
  return site.view.source == SourceFormat::Plain ? to_scalar_type(ckpt.info(site.view.tensor).dtype) : at::kBFloat16;
}

namespace {
int64_t row_end(const WeightView& v) { return v.row_start + (v.rows - 1) * v.row_step + 1; }
std::string site_what(const Site& site) { return "tensor '" + site.view.tensor + "' (site " + site.name + ")"; }
}  // namespace

SourceBytes site_source_bytes(const Checkpoint& ckpt, const Site& site) {
  const WeightView& v = site.view;
  if (v.source == SourceFormat::Plain) throw Error("site '" + site.name + "': '" + v.tensor + "' is not a quantized source");
  at::Tensor t = tensor_view(ckpt, v.tensor), s = tensor_view(ckpt, v.scale);
  if (v.expert >= 0) { t = t.select(0, v.expert); s = s.select(0, v.expert); }
  if (v.source == SourceFormat::Mxfp4) {  // decode only the site's rows of its expert
    t = t.slice(0, v.row_start, row_end(v), v.row_step);
    s = s.slice(0, v.row_start, row_end(v), v.row_step);
  }
  return SourceBytes{t, s};
}

at::Tensor decode_source_bytes(const at::Tensor& codes, const at::Tensor& scales, const Site& site, const std::string& what) {
  const WeightView& v = site.view;
  at::Tensor t;
  if (v.source == SourceFormat::Mxfp4) {
    t = mxfp4_dequant(codes, scales, what);
    if (v.transpose) t = t.transpose(-2, -1);
  } else if (v.source == SourceFormat::Fp8Block) {
    t = fp8_block_dequant(codes, scales, v.block_rows, v.block_cols, what);
    if (v.transpose) t = t.transpose(-2, -1);
    t = t.slice(-2, v.row_start, row_end(v), v.row_step);
  } else {
    throw Error("site '" + site.name + "': '" + v.tensor + "' is not a quantized source");
  }
  return t;
}

at::Tensor site_weight(const Checkpoint& ckpt, const Site& site) {
  const WeightView& v = site.view;
  at::Tensor t;
  if (v.source != SourceFormat::Plain) {
    const SourceBytes b = site_source_bytes(ckpt, site);
    t = decode_source_bytes(b.codes, b.scales, site, site_what(site));
  } else {
    t = tensor_view(ckpt, v.tensor);
    if (v.expert >= 0) t = t.select(0, v.expert);
    if (v.transpose) t = t.t();
    t = t.slice(0, v.row_start, row_end(v), v.row_step);
  }
  if (t.dim() != 2 || t.size(0) != v.rows || t.size(1) != v.cols)
    throw Error("site '" + site.name + "': view of '" + v.tensor + "' has an unexpected shape");
  return t;
}

}  // namespace moeq
