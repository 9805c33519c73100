// A small Prometheus metrics registry: counters, gauges and histograms with labels,
// rendered in the text exposition format 0.0.4.
//
// Families are added once, at start-up, before other threads use the registry; a family
// lives as long as its registry. Updating a series and rendering are thread-safe (one
// mutex per family). Label values are given in the order of the family's label names.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace isobox::server::ops {

using LabelValues = std::vector<std::string>;

enum class MetricType { kCounter, kGauge, kHistogram };

class MetricFamily {
 public:
  MetricFamily(MetricType type, std::string name, std::string help,
               std::vector<std::string> label_names, std::vector<double> bounds);

  // Counter: adds `by` (>= 0). Gauge: adds `by` (any sign).
  void Add(const LabelValues& labels, double by = 1);
  // Gauge; or a counter whose total is kept elsewhere (it only ever grows there), copied
  // in before rendering.
  void Set(const LabelValues& labels, double value);
  // Gauge only: forgets every series (before setting a fresh snapshot of them).
  void Clear();
  // Histogram only.
  void Observe(const LabelValues& labels, double value);

  // The value of a counter or gauge series; 0 if it has none yet. For tests.
  double Value(const LabelValues& labels) const;

  void Render(std::string& out) const;
  const std::string& name() const { return name_; }

 private:
  struct Series {
    double value = 0;              // counter, gauge; histogram: sum
    uint64_t count = 0;            // histogram
    std::vector<uint64_t> bucket;  // histogram: non-cumulative counts per bound
  };

  Series& SeriesFor(const LabelValues& labels);  // mutex_ held
  void RenderLabels(std::string& out, const LabelValues& values, std::string_view extra_name,
                    std::string_view extra_value) const;

  const MetricType type_;
  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;  // histogram upper bounds, ascending, without +Inf

  mutable std::mutex mutex_;
  std::map<LabelValues, Series> series_;
};

class MetricsRegistry {
 public:
  // Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* (not
  // "le" for histograms); a bad name is a programming error and aborts.
  MetricFamily& AddCounter(std::string name, std::string help,
                           std::vector<std::string> label_names = {});
  MetricFamily& AddGauge(std::string name, std::string help,
                         std::vector<std::string> label_names = {});
  // `bounds`: the buckets' upper bounds, strictly ascending; +Inf is implied.
  MetricFamily& AddHistogram(std::string name, std::string help,
                             std::vector<std::string> label_names, std::vector<double> bounds);

  // Every family in the order added: "# HELP", "# TYPE" and one line per sample.
  std::string Render() const;

 private:
  MetricFamily& Add(MetricType type, std::string name, std::string help,
                    std::vector<std::string> label_names, std::vector<double> bounds);

  std::vector<std::unique_ptr<MetricFamily>> families_;
};

// Text format helpers, exposed for tests.
std::string EscapeLabelValue(std::string_view value);  // \\, \" and \n
std::string FormatSampleValue(double value);           // shortest round-trip; +Inf, -Inf, NaN

}  // namespace isobox::server::ops
