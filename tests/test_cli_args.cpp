// The command-line layer (app/cli/parser.h on CLI11) and the exit codes (app/cli/exit_codes.h).
#include <stdexcept>

#include "app/cli/exit_codes.h"
#include "app/cli/parser.h"
#include "test_util.h"

using namespace moeq;
using namespace moeq::cli;

namespace {

struct Parsed {
  std::string model, device = "cpu";
  std::vector<std::string> recipes;
  int64_t samples = 512;
  double db = 3;
  bool json = false, ok = false;
};

Parsed parse(const std::vector<std::string>& argv) {
  Parsed p;
  Command c("x", "test command", "MODEL [--json] [--recipe R]... [--samples N]", "moeq x model --json");
  c.positional("MODEL", p.model, "model");
  c.flag("--json", p.json, "json");
  c.option("--recipe", p.recipes, "recipes");
  c.option("--device", p.device, "device")->check(one_of({"cpu", "cuda"}));
  c.option("--samples", p.samples, "samples")->check(integer_at_least(1));
  c.option("--db", p.db, "tolerance")->check(non_negative_number());
  p.ok = c.parse(argv);
  return p;
}

}  // namespace

TEST_CASE("cli args: flags, options, positionals and clear errors") {
  const Parsed a = parse({"model", "--json", "--recipe", "r.yaml", "--device=cuda", "--recipe", "s.yaml", "--samples", "8"});
  CHECK(a.ok);
  CHECK(a.model == "model");
  CHECK(a.json);
  CHECK(a.device == "cuda");
  CHECK(a.samples == 8);
  CHECK(a.recipes == std::vector<std::string>{"r.yaml", "s.yaml"});
  const Parsed d = parse({"model"});
  CHECK((d.device == "cpu" && d.samples == 512 && !d.json && d.recipes.empty()));
  REQUIRE_ERROR_MENTIONS(parse({"model", "--bogus"}), "--bogus", "usage: moeq x MODEL");
  REQUIRE_ERROR_MENTIONS(parse({"model", "--recipe"}), "--recipe");
  REQUIRE_ERROR_MENTIONS(parse({"model", "--samples", "0"}), "--samples", "positive integer", "'0'");
  REQUIRE_ERROR_MENTIONS(parse({"model", "--samples", "12x"}), "--samples", "'12x'");
  REQUIRE_ERROR_MENTIONS(parse({"model", "--db", "nan"}), "--db", "'nan'");
  REQUIRE_ERROR_MENTIONS(parse({"model", "--device", "tpu"}), "--device", "cpu|cuda", "'tpu'");
  REQUIRE_ERROR_MENTIONS(parse({}), "MODEL");
  REQUIRE_ERROR_MENTIONS(parse({"model", "extra"}), "extra");
  // Usage errors are UsageError (exit 2), on one line.
  try {
    parse({"model", "--samples", "-3"});
    FAIL("no error");
  } catch (const UsageError& e) {
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
  }
  // --help / -h: parse says so (the command returns 0) and sets nothing.
  CHECK_FALSE(parse({"--help"}).ok);
  CHECK_FALSE(parse({"model", "-h"}).ok);
}

TEST_CASE("cli exit codes: 0 ok, 1 user error, 2 usage, 3 internal") {
  CHECK(run_command("t", [] { return 0; }) == kExitOk);
  CHECK(run_command("t", [] { return 1; }) == 1);  // a command's own code (verify: problems found)
  CHECK(run_command("t", []() -> int { throw Error("model/x.safetensors: bad header"); }) == kExitUserError);
  CHECK(run_command("t", []() -> int { throw UsageError("--bogus: unknown option"); }) == kExitUsage);
  CHECK(run_command("t", [] { return parse({"model", "--bogus"}).ok ? 0 : 0; }) == kExitUsage);
  CHECK(run_command("t", []() -> int { throw std::logic_error("a bug\nwith a second line"); }) == kExitInternal);
  CHECK(run_command("t", []() -> int { throw std::bad_alloc(); }) == kExitInternal);
  CHECK(run_command("t", []() -> int { throw 42; }) == kExitInternal);
}
