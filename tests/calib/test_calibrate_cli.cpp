// `moeq calibrate` argument checking (the run itself is covered by test_calibrate_forward).
#include "app/cli/commands.h"
#include "test_util.h"

using namespace moeq;

TEST_CASE("moeq calibrate: usage and option errors name the option", "[calib]") {
  REQUIRE_ERROR_MENTIONS(cli::cmd_calibrate({"model"}), "usage: moeq calibrate", "-o CALIB.h5");
  REQUIRE_ERROR_MENTIONS(cli::cmd_calibrate({"model", "-o", "c.h5", "--samples", "0"}), "--samples", "positive integer", "'0'");
  REQUIRE_ERROR_MENTIONS(cli::cmd_calibrate({"model", "-o", "c.h5", "--seq-len", "12x"}), "--seq-len", "'12x'");
  REQUIRE_ERROR_MENTIONS(cli::cmd_calibrate({"model", "-o", "c.h5", "--chunk", "-3"}), "--chunk");
  REQUIRE_ERROR_MENTIONS(cli::cmd_calibrate({"model", "-o", "c.h5", "--bogus"}), "--bogus");
}
