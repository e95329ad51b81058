#include "app/compare/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace moeq::svg {
namespace {

constexpr const char* kFont = "font-family=\"Helvetica,Arial,sans-serif\"";

struct Range {
  double lo = 0, hi = 1, step = 1;
};

// Nice axis bounds and step for the data range [lo, hi].
Range axis(double lo, double hi, int target, bool integer) {
  if (!(hi > lo)) {
    const double pad = std::max(1.0, std::fabs(lo) * 0.05);
    lo -= pad;
    hi += pad;
  }
  std::vector<double> t = ticks(lo, hi, target);
  Range r;
  r.step = t.size() > 1 ? t[1] - t[0] : (hi - lo);
  if (integer) r.step = std::max(1.0, std::round(r.step));
  r.lo = std::floor(lo / r.step + 1e-9) * r.step;
  r.hi = std::ceil(hi / r.step - 1e-9) * r.step;
  if (r.hi <= r.lo) r.hi = r.lo + r.step;
  return r;
}

int decimals_for(double step) {
  if (step >= 1) return 0;
  return std::min(6, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
}

struct Plot {
  double x0, y0, w, h;  // plot area in pixels
  Range xr, yr;
  double px(double x) const { return x0 + (x - xr.lo) / (xr.hi - xr.lo) * w; }
  double py(double y) const { return y0 + h - (y - yr.lo) / (yr.hi - yr.lo) * h; }
};

std::string open_svg(const Frame& f) {
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << f.width << "\" height=\"" << f.height
    << "\" viewBox=\"0 0 " << f.width << " " << f.height << "\" " << kFont << " font-size=\"11\">"
    << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>"
    << "<text x=\"" << f.width / 2 << "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">"
    << escape(f.title) << "</text>";
  return o.str();
}

// Grid, axes, tick labels and axis titles.
std::string frame_axes(const Frame& f, const Plot& p) {
  std::ostringstream o;
  const int xd = decimals_for(p.xr.step), yd = decimals_for(p.yr.step);
  for (double x = p.xr.lo; x <= p.xr.hi + p.xr.step * 1e-6; x += p.xr.step) {
    const double X = p.px(x);
    o << "<line x1=\"" << number(X, 1) << "\" y1=\"" << p.y0 << "\" x2=\"" << number(X, 1) << "\" y2=\"" << p.y0 + p.h
      << "\" stroke=\"#e4e4e4\"/>"
      << "<text x=\"" << number(X, 1) << "\" y=\"" << p.y0 + p.h + 15 << "\" text-anchor=\"middle\">" << number(x, xd)
      << "</text>";
  }
  for (double y = p.yr.lo; y <= p.yr.hi + p.yr.step * 1e-6; y += p.yr.step) {
    const double Y = p.py(y);
    o << "<line x1=\"" << p.x0 << "\" y1=\"" << number(Y, 1) << "\" x2=\"" << p.x0 + p.w << "\" y2=\"" << number(Y, 1)
      << "\" stroke=\"#e4e4e4\"/>"
      << "<text x=\"" << p.x0 - 6 << "\" y=\"" << number(Y + 4, 1) << "\" text-anchor=\"end\">" << number(y, yd)
      << "</text>";
  }
  o << "<rect x=\"" << p.x0 << "\" y=\"" << p.y0 << "\" width=\"" << p.w << "\" height=\"" << p.h
    << "\" fill=\"none\" stroke=\"#333\"/>";
  o << "<text x=\"" << number(p.x0 + p.w / 2, 1) << "\" y=\"" << f.height - 8 << "\" text-anchor=\"middle\">"
    << escape(f.xlabel) << "</text>";
  o << "<text transform=\"translate(14," << number(p.y0 + p.h / 2, 1) << ") rotate(-90)\" text-anchor=\"middle\">"
    << escape(f.ylabel) << "</text>";
  return o.str();
}

std::string no_data(const Frame& f) {
  std::ostringstream o;
  o << open_svg(f) << "<text x=\"" << f.width / 2 << "\" y=\"" << f.height / 2
    << "\" text-anchor=\"middle\" fill=\"#888\">no data</text></svg>";
  return o.str();
}

}  // namespace

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string palette(size_t i) {
  // Tableau 10: distinguishable, and readable on white.
  static const char* kColors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return kColors[i % 10];
}

std::string viridis(double t) {
  static const double k[][3] = {{68, 1, 84}, {72, 40, 120}, {62, 74, 137}, {49, 104, 142}, {38, 130, 142},
                                {31, 158, 137}, {53, 183, 121}, {109, 205, 89}, {180, 222, 44}, {253, 231, 37}};
  if (!std::isfinite(t)) t = 0;
  t = std::clamp(t, 0.0, 1.0) * 9.0;
  const int i = std::min(8, static_cast<int>(t));
  const double f = t - i;
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(std::lround(k[i][0] + f * (k[i + 1][0] - k[i][0]))),
                static_cast<int>(std::lround(k[i][1] + f * (k[i + 1][1] - k[i][1]))),
                static_cast<int>(std::lround(k[i][2] + f * (k[i + 1][2] - k[i][2]))));
  return buf;
}

std::vector<double> ticks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) { step = m * mag; break; }
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) t.push_back(v);
  return t;
}

std::string number(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  if (s.find_first_not_of("-0.") == std::string::npos && s[0] == '-') s = s.substr(1);
  return s;
}

std::string line_plot(const Frame& f, const std::vector<Series>& series, bool integer_x) {
  double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        xl = std::min(xl, s.x[i]), xh = std::max(xh, s.x[i]);
        yl = std::min(yl, s.y[i]), yh = std::max(yh, s.y[i]);
      }
  if (!std::isfinite(xl)) return no_data(f);
  const double legend_w = 170;
  Plot p{64, 34, f.width - 64 - legend_w - 10, static_cast<double>(f.height) - 34 - 48, {}, {}};
  p.xr = axis(xl, xh, 10, integer_x);
  p.yr = axis(yl, yh, 6, false);
  std::ostringstream o;
  o << open_svg(f) << frame_axes(f, p);
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const std::string c = palette(k);
    std::ostringstream d, marks;
    bool pen = false;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) { pen = false; continue; }
      const std::string X = number(p.px(s.x[i]), 1), Y = number(p.py(s.y[i]), 1);
      d << (pen ? " L" : " M") << X << " " << Y;
      pen = true;
      marks << "<circle cx=\"" << X << "\" cy=\"" << Y << "\" r=\"3\" fill=\"" << c << "\"><title>" << escape(s.name)
            << ": " << number(s.y[i], 2) << "</title></circle>";
    }
    o << "<path d=\"" << d.str() << "\" fill=\"none\" stroke=\"" << c << "\" stroke-width=\"2\"/>" << marks.str();
    const double ly = p.y0 + 8 + 18.0 * static_cast<double>(k), lx = p.x0 + p.w + 16;
    o << "<line x1=\"" << lx << "\" y1=\"" << ly << "\" x2=\"" << lx + 22 << "\" y2=\"" << ly << "\" stroke=\"" << c
      << "\" stroke-width=\"3\"/><text x=\"" << lx + 28 << "\" y=\"" << ly + 4 << "\">" << escape(s.name) << "</text>";
  }
  o << "</svg>";
  return o.str();
}

std::string scatter_plot(const Frame& f, const std::vector<Point>& points) {
  double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
  for (const auto& q : points)
    if (std::isfinite(q.x) && std::isfinite(q.y)) {
      xl = std::min(xl, q.x), xh = std::max(xh, q.x);
      yl = std::min(yl, q.y), yh = std::max(yh, q.y);
    }
  if (!std::isfinite(xl)) return no_data(f);
  // Room for the labels at the right and top edges.
  const double xpad = (xh - xl) * 0.08, ypad = (yh - yl) * 0.08;
  Plot p{64, 34, f.width - 64 - 24.0, static_cast<double>(f.height) - 34 - 48, {}, {}};
  p.xr = axis(xl - xpad, xh + xpad, 8, false);
  p.yr = axis(yl - ypad, yh + ypad, 6, false);
  std::ostringstream o;
  o << open_svg(f) << frame_axes(f, p);
  // Labels take the first of four spots around their point that overlaps no earlier label.
  struct Box { double x0, y0, x1, y1; };
  std::vector<Box> placed;
  for (size_t k = 0; k < points.size(); ++k) {
    const auto& q = points[k];
    if (!std::isfinite(q.x) || !std::isfinite(q.y)) continue;
    const double X = p.px(q.x), Y = p.py(q.y);
    const double tw = 7.0 * static_cast<double>(q.label.size()), th = 13;
    const bool prefer_left = X > p.x0 + p.w * 0.8;  // near the right edge, labels go left
    Box best{};
    bool anchor_end = prefer_left;
    for (int spot = 0; spot < 4; ++spot) {
      const bool left = (spot >= 2) != prefer_left, below = spot % 2 == 1;
      const double bx = left ? X - 9 - tw : X + 9, by = below ? Y + 7 : Y - 7 - th;
      const Box b{bx, by, bx + tw, by + th};
      bool clash = false;
      for (const Box& o2 : placed) clash = clash || (b.x0 < o2.x1 && o2.x0 < b.x1 && b.y0 < o2.y1 && o2.y0 < b.y1);
      if (spot == 0 || !clash) { best = b; anchor_end = left; }
      if (!clash) break;
    }
    placed.push_back(best);
    o << "<circle cx=\"" << number(X, 1) << "\" cy=\"" << number(Y, 1) << "\" r=\"6\" fill=\"" << palette(k)
      << "\" stroke=\"#333\"><title>" << escape(q.label) << "</title></circle>"
      << "<text x=\"" << number(anchor_end ? best.x1 : best.x0, 1) << "\" y=\"" << number(best.y1 - 2, 1)
      << "\" text-anchor=\"" << (anchor_end ? "end" : "start") << "\" font-size=\"12\">" << escape(q.label) << "</text>";
  }
  o << "</svg>";
  return o.str();
}

std::string heatmap(const Frame& f, const std::vector<std::vector<double>>& values, const std::string& row_name,
                    const std::string& col_name, const std::string& unit, double lo, double hi) {
  size_t cols = 0;
  double dl = INFINITY, dh = -INFINITY;
  for (const auto& r : values) {
    cols = std::max(cols, r.size());
    for (double v : r)
      if (std::isfinite(v)) dl = std::min(dl, v), dh = std::max(dh, v);
  }
  if (values.empty() || cols == 0 || !std::isfinite(dl)) return no_data(f);
  if (!std::isfinite(lo)) lo = dl;
  if (!std::isfinite(hi)) hi = dh;
  if (!(hi > lo)) hi = lo + 1;
  const double x0 = 64, y0 = 34, w = f.width - 64 - 96.0, h = static_cast<double>(f.height) - 34 - 48;
  const double cw = w / static_cast<double>(cols), ch = h / static_cast<double>(values.size());
  const bool titles = values.size() * cols <= 20000;  // hover text, unless the file would balloon
  std::ostringstream o;
  o << open_svg(f);
  for (size_t r = 0; r < values.size(); ++r)
    for (size_t c = 0; c < values[r].size(); ++c) {
      const double v = values[r][c];
      if (!std::isfinite(v)) continue;
      o << "<rect x=\"" << number(x0 + c * cw, 2) << "\" y=\"" << number(y0 + r * ch, 2) << "\" width=\""
        << number(cw + 0.3, 2) << "\" height=\"" << number(ch + 0.3, 2) << "\" fill=\"" << viridis((v - lo) / (hi - lo))
        << "\">";
      if (titles) o << "<title>" << escape(row_name) << " " << r << ", " << escape(col_name) << " " << c << ": " << number(v, 2) << " " << escape(unit) << "</title>";
      o << "</rect>";
    }
  o << "<rect x=\"" << x0 << "\" y=\"" << y0 << "\" width=\"" << w << "\" height=\"" << h
    << "\" fill=\"none\" stroke=\"#333\"/>";
  // Row and column labels, at most one per ~14 px.
  const size_t rstep = std::max<size_t>(1, static_cast<size_t>(std::ceil(14.0 / ch)));
  const size_t cstep = std::max<size_t>(1, static_cast<size_t>(std::ceil(24.0 / cw)));
  for (size_t r = 0; r < values.size(); r += rstep)
    o << "<text x=\"" << x0 - 6 << "\" y=\"" << number(y0 + (r + 0.5) * ch + 4, 1) << "\" text-anchor=\"end\">" << r
      << "</text>";
  for (size_t c = 0; c < cols; c += cstep)
    o << "<text x=\"" << number(x0 + (c + 0.5) * cw, 1) << "\" y=\"" << number(y0 + h + 15, 1)
      << "\" text-anchor=\"middle\">" << c << "</text>";
  o << "<text x=\"" << number(x0 + w / 2, 1) << "\" y=\"" << f.height - 8 << "\" text-anchor=\"middle\">"
    << escape(f.xlabel) << "</text>"
    << "<text transform=\"translate(14," << number(y0 + h / 2, 1) << ") rotate(-90)\" text-anchor=\"middle\">"
    << escape(f.ylabel) << "</text>";
  // Colour bar: stacked rects (no gradient ids, which would clash between charts of one page).
  const double bx = x0 + w + 18, bw = 16;
  const int steps = 64;
  for (int i = 0; i < steps; ++i) {
    const double t0 = static_cast<double>(i) / steps;
    o << "<rect x=\"" << bx << "\" y=\"" << number(y0 + h * (1 - t0 - 1.0 / steps), 2) << "\" width=\"" << bw
      << "\" height=\"" << number(h / steps + 0.3, 2) << "\" fill=\"" << viridis(t0 + 0.5 / steps) << "\"/>";
  }
  o << "<rect x=\"" << bx << "\" y=\"" << y0 << "\" width=\"" << bw << "\" height=\"" << h
    << "\" fill=\"none\" stroke=\"#333\"/>";
  const std::vector<double> t = ticks(lo, hi, 5);
  const int d = t.size() > 1 ? decimals_for(t[1] - t[0]) : 1;
  for (double v : t)
    o << "<text x=\"" << bx + bw + 4 << "\" y=\"" << number(y0 + h * (1 - (v - lo) / (hi - lo)) + 4, 1) << "\">"
      << number(v, d) << "</text>";
  o << "<text x=\"" << bx + bw / 2 << "\" y=\"" << y0 - 6 << "\" text-anchor=\"middle\">" << escape(unit) << "</text>";
  o << "</svg>";
  return o.str();
}

}  // namespace moeq::svg
