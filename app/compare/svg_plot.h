#pragma once
// Minimal SVG charts for offline HTML reports: no scripts, no fonts to fetch, one
// self-contained <svg> string per chart. Non-finite values are left out (a gap in a
// line, an empty heatmap cell).
#include <string>
#include <vector>

namespace moeq::svg {

struct Frame {
  std::string title, xlabel, ylabel;
  int width = 760, height = 380;
};

struct Series {
  std::string name;
  std::vector<double> x, y;
};

struct Point {
  std::string label;
  double x = 0, y = 0;
};

// Lines with markers, one colour per series, legend on the right. integer_x: ticks only
// at whole numbers (layer indices).
std::string line_plot(const Frame& f, const std::vector<Series>& series, bool integer_x = false);
// Labelled points, one colour each.
std::string scatter_plot(const Frame& f, const std::vector<Point>& points);
// values[row][col] as coloured cells (viridis: dark = low, yellow = high) with a colour
// bar; lo/hi fix the colour range (pass NaN for the data's range). Rows go top to bottom.
std::string heatmap(const Frame& f, const std::vector<std::vector<double>>& values, const std::string& row_name,
                    const std::string& col_name, const std::string& unit, double lo, double hi);

// Helpers, public for tests.
std::string escape(const std::string& s);                       // XML text and attributes
std::string palette(size_t i);                                  // distinct colours, cycling
std::string viridis(double t);                                  // t in [0, 1] -> #rrggbb
std::vector<double> ticks(double lo, double hi, int target);    // round numbers spanning [lo, hi]
std::string number(double v, int decimals);                     // fixed notation, "-0" -> "0"

}  // namespace moeq::svg
