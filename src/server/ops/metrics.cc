#include "server/ops/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>

#include "base/log.h"

namespace isobox::server::ops {
namespace {

bool ValidName(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

[[noreturn]] void BadDefinition(std::string_view name, std::string_view why) {
  LOG_ERROR("metric {}: {}", name, why);
  std::abort();
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// HELP text escapes only backslash and newline.
std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatSampleValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", value);
}

MetricFamily::MetricFamily(MetricType type, std::string name, std::string help,
                           std::vector<std::string> label_names, std::vector<double> bounds)
    : type_(type),
      name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      bounds_(std::move(bounds)) {}

MetricFamily::Series& MetricFamily::SeriesFor(const LabelValues& labels) {
  // A wrong number of label values is a programming error.
  assert(labels.size() == label_names_.size());
  auto [it, inserted] = series_.try_emplace(labels);
  if (inserted && type_ == MetricType::kHistogram) it->second.bucket.assign(bounds_.size(), 0);
  return it->second;
}

void MetricFamily::Add(const LabelValues& labels, double by) {
  assert(type_ != MetricType::kHistogram);
  assert(type_ != MetricType::kCounter || by >= 0);
  std::lock_guard lock(mutex_);
  SeriesFor(labels).value += by;
}

void MetricFamily::Set(const LabelValues& labels, double value) {
  assert(type_ != MetricType::kHistogram);
  std::lock_guard lock(mutex_);
  SeriesFor(labels).value = value;
}

void MetricFamily::Clear() {
  assert(type_ == MetricType::kGauge);
  std::lock_guard lock(mutex_);
  series_.clear();
}

void MetricFamily::Observe(const LabelValues& labels, double value) {
  assert(type_ == MetricType::kHistogram);
  std::lock_guard lock(mutex_);
  Series& series = SeriesFor(labels);
  series.value += value;
  ++series.count;
  // The first bucket whose upper bound holds the value (le: less than or equal).
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  if (it != bounds_.end()) ++series.bucket[it - bounds_.begin()];
}

double MetricFamily::Value(const LabelValues& labels) const {
  std::lock_guard lock(mutex_);
  auto it = series_.find(labels);
  return it == series_.end() ? 0 : it->second.value;
}

void MetricFamily::RenderLabels(std::string& out, const LabelValues& values,
                                std::string_view extra_name, std::string_view extra_value) const {
  if (values.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!first) out += ',';
    first = false;
    fmt::format_to(std::back_inserter(out), "{}=\"{}\"", label_names_[i],
                   EscapeLabelValue(values[i]));
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    fmt::format_to(std::back_inserter(out), "{}=\"{}\"", extra_name, extra_value);
  }
  out += '}';
}

void MetricFamily::Render(std::string& out) const {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name_, EscapeHelp(help_),
                 name_, TypeName(type_));
  std::lock_guard lock(mutex_);
  for (const auto& [labels, series] : series_) {
    if (type_ != MetricType::kHistogram) {
      out += name_;
      RenderLabels(out, labels, "", "");
      fmt::format_to(std::back_inserter(out), " {}\n", FormatSampleValue(series.value));
      continue;
    }
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += series.bucket[i];
      out += name_ + "_bucket";
      RenderLabels(out, labels, "le", FormatSampleValue(bounds_[i]));
      fmt::format_to(std::back_inserter(out), " {}\n", cumulative);
    }
    out += name_ + "_bucket";
    RenderLabels(out, labels, "le", "+Inf");
    fmt::format_to(std::back_inserter(out), " {}\n", series.count);
    out += name_ + "_sum";
    RenderLabels(out, labels, "", "");
    fmt::format_to(std::back_inserter(out), " {}\n", FormatSampleValue(series.value));
    out += name_ + "_count";
    RenderLabels(out, labels, "", "");
    fmt::format_to(std::back_inserter(out), " {}\n", series.count);
  }
}

MetricFamily& MetricsRegistry::Add(MetricType type, std::string name, std::string help,
                                   std::vector<std::string> label_names,
                                   std::vector<double> bounds) {
  if (!ValidName(name, /*allow_colon=*/true)) BadDefinition(name, "invalid metric name");
  for (const auto& family : families_) {
    if (family->name() == name) BadDefinition(name, "defined twice");
  }
  for (const std::string& label : label_names) {
    if (!ValidName(label, false) || label.starts_with("__") ||
        (type == MetricType::kHistogram && label == "le")) {
      BadDefinition(name, "invalid label name " + label);
    }
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      BadDefinition(name, "bucket bounds must be finite and strictly ascending");
    }
  }
  families_.push_back(std::make_unique<MetricFamily>(type, std::move(name), std::move(help),
                                                     std::move(label_names), std::move(bounds)));
  return *families_.back();
}

MetricFamily& MetricsRegistry::AddCounter(std::string name, std::string help,
                                          std::vector<std::string> label_names) {
  return Add(MetricType::kCounter, std::move(name), std::move(help), std::move(label_names), {});
}

MetricFamily& MetricsRegistry::AddGauge(std::string name, std::string help,
                                        std::vector<std::string> label_names) {
  return Add(MetricType::kGauge, std::move(name), std::move(help), std::move(label_names), {});
}

MetricFamily& MetricsRegistry::AddHistogram(std::string name, std::string help,
                                            std::vector<std::string> label_names,
                                            std::vector<double> bounds) {
  return Add(MetricType::kHistogram, std::move(name), std::move(help), std::move(label_names),
             std::move(bounds));
}

std::string MetricsRegistry::Render() const {
  std::string out;
  for (const auto& family : families_) family->Render(out);
  return out;
}

}  // namespace isobox::server::ops
