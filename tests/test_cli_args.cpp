#include "cli/args.h"
#include "test_util.h"

using moeq::cli::Args;

TEST_CASE("cli args: flags, options, positionals and clear errors") {
  Args a({"model", "--json", "--recipe", "r.yaml", "--device=cuda", "--recipe", "s.yaml"}, {"json"}, {"recipe", "device"});
  CHECK(a.positional() == std::vector<std::string>{"model"});
  CHECK(a.flag("json"));
  CHECK(a.get("device") == "cuda");
  CHECK(a.all("recipe") == std::vector<std::string>{"r.yaml", "s.yaml"});
  REQUIRE_ERROR_MENTIONS(Args({"--bogus"}, {"json"}, {}), "--bogus", "--json");
  REQUIRE_ERROR_MENTIONS(Args({"--recipe"}, {}, {"recipe"}), "--recipe", "needs a value");
  REQUIRE_ERROR_MENTIONS(Args({"--json=1"}, {"json"}, {}), "--json", "takes no value");
}
