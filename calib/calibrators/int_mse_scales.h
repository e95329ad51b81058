#pragma once
// Group scales of a symmetric integer format (INT4 / INT8) by a shrink search, for GPTQ's fixed
// grid (`calibrator: {method: gptq, observer: mse}`). The grid, norm and stopping rule are
// llm-compressor 0.14's `mse` observer's defaults (observers/mse.py, mse_quant.py
// _grid_search_mse): per group, candidates p = 1 - i / grid for i < maxshrink x grid (1.00,
// 0.99, ..., 0.81), each giving the scale max|w| x p / (qmax - qmin) x 2 in the weight's dtype
// (the max path's formula, formats/intq), and the error sum |Q(w) - w|^norm over the group
// (norm 2.4); a group keeps the first candidate of least error; the search stops early once
// `patience` consecutive candidates improved no group. Unlike llm-compressor (which searches
// in the weight's dtype and stores the scale rounded afterwards), the error is computed in
// float32 on the scales exactly as the export stores them, with the format's rounding (x / s
// rounded to the weight dtype, then to the nearest integer, clamped): the bytes moeq writes.
#include <ATen/ATen.h>

namespace moeq {

struct IntMseOptions {
  double maxshrink = 0.20;
  double grid = 100.0;
  double norm = 2.4;
  int64_t patience = 5;
};

// w [E, out, in] (the weight dtype: bf16, f16 or f32), group dividing in -> scales
// [E, out, in / group] in w's dtype (p = 1 gives the format's max-path scales).
at::Tensor int_mse_group_scales(const at::Tensor& w, int64_t group, double qmin, double qmax, const IntMseOptions& o = {});

}  // namespace moeq
