// Outputs never replace, enter or enclose their inputs; --overwrite replaces only moeq's own
// output, after the new one is complete; a lock beside OUT keeps a second writer out and
// tells a dead run's temporaries (removed, reported) from a live one's.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "io/atomic_dir.h"
#include "io/output_guard.h"
#include "model/demo_checkpoint.h"
#include "app/run/quantize.h"
#include "test_util.h"

using namespace moeq;
namespace fs = std::filesystem;

namespace {
std::string listing(const std::string& dir) {
  std::string all;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    all += e.path().string() + (e.is_regular_file() ? ":" + test::read_file(e.path().string()) : "") + "\n";
  return all;
}
}  // namespace

TEST_CASE("output guard: the source itself, inside it, around it, and through symlinks") {
  test::TempDir tmp;
  const std::string src = tmp.path + "/model";
  fs::create_directories(src + "/sub");
  fs::create_directories(tmp.path + "/elsewhere");
  fs::create_symlink(src, tmp.path + "/link");                         // a second name for the source
  fs::create_symlink(tmp.path + "/elsewhere", src + "/out-link");      // inside the source, leading out
  const std::string what = "the source checkpoint";
  const std::string named = "-o " + src, real_src = fs::canonical(src).string();
  REQUIRE_ERROR_MENTIONS(refuse_output_over_input(src, "-o", src, what), named.c_str(), "is the source checkpoint");
  REQUIRE_ERROR_MENTIONS(refuse_output_over_input(src + "/", "-o", src, what), "is the source checkpoint");
  REQUIRE_ERROR_MENTIONS(refuse_output_over_input(src + "/sub/../", "-o", src, what), "is the source checkpoint");
  REQUIRE_ERROR_MENTIONS(refuse_output_over_input(src + "/q", "-o", src, what), "lies inside the source checkpoint");
  REQUIRE_ERROR_MENTIONS(refuse_output_over_input(tmp.path, "-o", src, what), "contains the source checkpoint");
  REQUIRE_ERROR_MENTIONS(refuse_output_over_input(tmp.path + "/link", "-o", src, what), "is the source checkpoint",
                         real_src.c_str());
  REQUIRE_ERROR_MENTIONS(refuse_output_over_input(tmp.path + "/link/q", "-o", src, what), "lies inside");
  REQUIRE_ERROR_MENTIONS(refuse_output_over_input(src + "/out-link", "-o", src, what), "temporary and lock file");
  // Neighbours are fine: a shared name prefix is not containment.
  refuse_output_over_input(tmp.path + "/model-nvfp4", "-o", src, what);
  refuse_output_over_input(tmp.path + "/elsewhere/q", "-o", src, what);
  refuse_output_over_input(tmp.path + "/q", "-o", "", what);
}

TEST_CASE("quantize refuses -o that is, or lies inside, the source (also with --overwrite); source untouched") {
  test::TempDir tmp;
  DemoShape shape;
  shape.layers = 1;
  shape.experts = 2;
  const std::string src = tmp.path + "/m";
  write_demo_checkpoint(src, true, shape, 5, false);
  test::write_file(tmp.path + "/r.yaml", "weight_only: true\nrules:\n  - roles: [experts]\n    format: nvfp4\n");
  fs::create_symlink(src, tmp.path + "/alias");
  const std::string before = listing(src);
  QuantizeOptions o;
  o.model = src;
  o.recipe = tmp.path + "/r.yaml";
  o.overwrite = true;
  for (const std::string out : {src, src + "/", tmp.path + "/alias", src + "/q", tmp.path + "/alias/q", tmp.path}) {
    o.out = out;
    INFO("-o " << out);
    REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "-o ", "the source checkpoint");
  }
  o.out = tmp.path + "/r.yaml";
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "is the recipe");
  CHECK(listing(src) == before);
}

TEST_CASE("output: --overwrite replaces only moeq's own output, and only once the new one is complete") {
  test::TempDir tmp;
  const std::string out = tmp.path + "/export";
  fs::create_directories(out);
  test::write_file(out + "/precious", "user data");
  REQUIRE_ERROR_MENTIONS(AtomicDir(out, false), out.c_str(), "already exists");
  REQUIRE_ERROR_MENTIONS(AtomicDir(out, true), out.c_str(), "no .moeq-export marker", "choose another output");
  CHECK(test::read_file(out + "/precious") == "user data");
  test::write_file(tmp.path + "/file", "x");
  REQUIRE_ERROR_MENTIONS(AtomicDir(tmp.path + "/file", true), "no .moeq-export marker", "not a directory");
  fs::remove_all(out);
  {
    AtomicDir d(out, false);
    test::write_file(d.path() + "/f", "1");
    d.commit();
  }
  REQUIRE(is_moeq_output(out));
  {
    AtomicDir d(out, true);
    test::write_file(d.path() + "/f", "2");
    CHECK(test::read_file(out + "/f") == "1");  // the old one stays until the new one is complete
  }  // abandoned: the old export is untouched
  CHECK(test::read_file(out + "/f") == "1");
  {
    AtomicDir d(out, true);
    test::write_file(d.path() + "/f", "3");
    d.commit();
  }
  CHECK(test::read_file(out + "/f") == "3");
  CHECK(is_moeq_output(out));
  // Only the export is left: no temporary, no moved-aside copy, no lock.
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(tmp.path)) n += e.path().filename() != "file";
  CHECK(n == 1);
}

TEST_CASE("a second writer into the same output fails naming the holder; a dead run's temporaries are removed") {
  test::TempDir tmp;
  const std::string out = tmp.path + "/export";
  {
    AtomicDir first(out, false);
    REQUIRE(fs::exists(out + ".lock"));
    const std::string pid = "pid " + std::to_string(::getpid());
    REQUIRE_ERROR_MENTIONS(AtomicDir(out, false), out.c_str(), "another moeq run", pid.c_str(), ".lock");
    CHECK(fs::exists(first.path()));  // the holder's temporary survives the refused second run
  }
  CHECK_FALSE(fs::exists(out + ".lock"));
  // As kill -9 leaves them: a marked temporary, a lock file with a dead pid, and a directory
  // that only looks like a temporary (not moeq's: left alone).
  fs::create_directories(out + ".tmp-AbC123");
  test::write_file(out + ".tmp-AbC123/" + kOutputMarker, "written by moeq, pid 999999\n");
  test::write_file(out + ".tmp-AbC123/model.safetensors", "partial");
  test::write_file(out + ".lock", "pid 999999\n");
  fs::create_directories(out + ".tmp-user00");
  {
    AtomicDir d(out, false);
    REQUIRE(d.removed_stale().size() == 1);
    CHECK_THAT(d.removed_stale()[0], Catch::Matchers::ContainsSubstring(".tmp-AbC123 (from pid 999999)"));
    CHECK_FALSE(fs::exists(out + ".tmp-AbC123"));
    CHECK(fs::exists(out + ".tmp-user00"));
    d.commit();
  }
  CHECK(is_moeq_output(out));
}
