#pragma once
// `moeq compare`: several recipes (or formats) on one model, side by side. For each one,
// the export size the plan implies and the weight error of every quantized site, measured
// by quantizing and dequantizing it exactly as `moeq quantize` would (same expert stacks,
// same shared gate/up amax). With eval ids (--eval, --eval-ids) also the output error of each
// variant's fake-quantized model against the unquantized one (app/compare/eval_outputs.h).
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "app/compare/output_error.h"
#include "model/site.h"

namespace moeq {

struct CompareOptions {
  std::string model;
  std::vector<std::string> recipes;  // recipe files, in report order
  std::vector<std::string> formats;  // shorthand: every linear but protected roles, default params; "all": every registered format
  std::string device = "cpu";        // cpu | cuda
  int worst_experts = 10;            // how many of the worst experts to list
  double within_db = 3.0;            // the pick rule's tolerance (see compare_report.h)
  double max_kl = 0.01;              // the output-error pick rule's tolerance, nats per token
  // Output error: eval_ids when defined (library use), else --eval-ids (a safetensors file
  // with an int64 tensor `ids` [N, S]), else --eval through load_calibration_tokens.
  at::Tensor eval_ids;
  std::string eval_ids_file, eval_file;
  int64_t eval_samples = 64, eval_seq_len = 512;
  std::string eval_dtype = "bfloat16";  // the forward's compute dtype: bfloat16 | float32
  int64_t eval_chunk_samples = 8;
  int64_t eval_ref_mib = 4096;          // host memory for the reference logits (eval_outputs.h); 0: one sample per group
  // calib.h5 of this model (moeq calibrate): with eval ids, every variant whose rules quantize
  // activations (input_quant; --formats nvfp4 / fp8 become W4A4 / W8A8) also fake-quantizes the
  // inputs of those linears with the export's input scales (app/compare/input_transform.h), and a
  // weights-only twin row shows what the activations cost.
  std::string calib;
  // --activations-only (with --calib and eval ids): each such recipe also gets an activations-only
  // twin: the source weights (no weight quantized) with the recipe's input fake quantization, the
  // share of the output error that the activations alone cost (no weight algorithm can remove it).
  bool activations_only = false;
  // compare --exports: existing exports (name, directory) evaluated against `model` by the same
  // forward (app/compare/export_eval.h): their decoded weights and, for W4A4 / W8A8 exports,
  // their own input scales; listed after the recipes and formats.
  std::vector<std::pair<std::string, std::string>> exports;
};

// The error of one quantized site. sqnr_db = 10 log10(||w||^2 / ||w - deq||^2), +inf when
// the round trip is exact; rel_err = ||w - deq|| / ||w|| (Frobenius).
struct SiteError {
  std::string site, format, proj;
  Role role = Role::Other;
  int64_t layer = -1, expert = -1, rows = 0, cols = 0, block_size = 0;
  double bits_per_weight = 0;
  double signal = 0, noise = 0;  // ||w||^2 and ||w - deq||^2, summed in double
  double sqnr_db = 0, rel_err = 0;
};

// Summary over a set of sites: means of per-site values, and the worst site.
struct ErrorStats {
  int64_t sites = 0, quantized = 0, exact = 0;  // exact: round trip without error (excluded from means)
  double mean_sqnr_db = 0, min_sqnr_db = 0, mean_rel_err = 0, max_rel_err = 0;
  std::string worst_site;
};

// One expert (all its quantized projections together): sqnr over the summed energies.
struct ExpertError {
  int64_t layer = -1, expert = -1;
  double sqnr_db = 0, rel_err = 0;
  std::string worst_proj;
  double worst_proj_sqnr_db = 0;
};

// compare --exports: the aux tensors (norms, biases, ...: the source's SiteMap::aux) the forward
// took from the export, and those whose values differ from the source's (AWQ's folded norms, say).
struct ExportAux {
  bool from_export = false;  // false: a recipe's row (the forward reads the source's, or the plan's fold)
  int64_t tensors = 0;       // taken from the export
  int64_t differing = 0;     // of those, values other than the source's (compared in float32)
  int64_t other_dtype = 0;   // of those, stored in another dtype than the source's
  std::vector<std::string> differing_tensors;  // their stored names, in the source's order
};

struct Variant {
  std::string name;    // recipe name, or the format for --formats
  std::string source;  // recipe path, or "--formats"
  std::string export_format;
  std::vector<std::string> formats;  // formats used by its quantized sites, sorted
  std::vector<std::string> warnings;
  std::map<std::string, int64_t> skipped;  // reason -> sites
  int64_t sites_total = 0, quantized_weights = 0;
  uint64_t source_bytes = 0;    // every stored tensor at its stored size
  uint64_t expected_bytes = 0;  // quantized sites at bits_per_weight, everything else as stored
  double bits_per_weight = 0;   // over quantized sites
  ErrorStats all;               // over the quantized sites
  std::map<std::string, ErrorStats> per_role;   // every role that has sites in the model
  std::map<int64_t, ErrorStats> per_layer;      // decoder layers with quantized sites
  std::vector<SiteError> sites;                 // quantized sites, in site order
  std::vector<ExpertError> experts;             // (layer, expert) order
  std::vector<ExpertError> worst_experts;       // lowest SQNR first
  OutputError output;                           // measured only with eval ids
  // Activations: how many quantized sites the recipe quantizes the input of (input_quant),
  // whether the output error fake-quantized them (--calib), and the label the reports show.
  int64_t input_quant_sites = 0;
  bool activations_quantized = false;
  bool weights_only_twin = false;  // the same weights without activation quantization: a reference row, never picked
  // --activations-only: the source weights with the recipe's activation quantization (no weight
  // quantized: no sites, source size); a reference row, never picked.
  bool activations_only_twin = false;
  bool reference_row() const { return weights_only_twin || activations_only_twin; }
  std::string activations = "none (weight-only recipe)";
  ExportAux aux;
};

// How the output error was measured (eval.measured false: no eval ids given).
struct EvalInfo {
  bool measured = false;
  std::string source;  // where the ids came from
  std::string dtype, expert_gemm;
  int64_t samples = 0, seq_len = 0, tokens = 0, groups = 0, samples_per_group = 0, ref_budget_mib = 0;
  double seconds = 0, ppl_ref = 0;
  std::string calib;  // the calibration file whose input scales quantized activations ("" without --calib)
  int64_t exports = 0;  // variants read from existing exports (--exports)
};

struct CompareResult {
  std::string model, plugin, device;
  int64_t layers = 0, experts_per_layer = 0;  // from the site map (heatmap extent)
  std::vector<Variant> variants;
  EvalInfo eval;
};

CompareResult run_compare(const CompareOptions& opt);

// Mean over sites with finite SQNR; shared by the engine and the tests.
ErrorStats summarize(const std::vector<const SiteError*>& sites, int64_t total_sites);

// v.all, per_role, per_layer, experts and worst_experts from v.sites over the model's site map.
void summarize_variant(Variant& v, const SiteMap& map, int worst_experts);

// ||w||^2 and ||w - deq||^2 per expert of a float32 CPU stack [E, out, in] (or one [out, in]),
// in double. Each expert is summed serially (parallel over experts), so the numbers do not
// depend on the thread count (nor on whether the expert came in a stack).
void site_energies(const at::Tensor& w, const at::Tensor& deq, std::vector<double>* signal, std::vector<double>* noise);

}  // namespace moeq
