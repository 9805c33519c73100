#include "server/ops/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace isobox::server::ops {
namespace {

TEST(MetricsTest, CounterWithLabelsRendersHelpTypeAndSortedSeries) {
  MetricsRegistry registry;
  MetricFamily& requests =
      registry.AddCounter("isobox_http_requests_total", "HTTP requests.", {"route", "code"});
  requests.Add({"/sandboxes", "201"});
  requests.Add({"/sandboxes", "201"});
  requests.Add({"/sandboxes/{id}", "404"}, 3);
  EXPECT_EQ(registry.Render(),
            "# HELP isobox_http_requests_total HTTP requests.\n"
            "# TYPE isobox_http_requests_total counter\n"
            "isobox_http_requests_total{route=\"/sandboxes\",code=\"201\"} 2\n"
            "isobox_http_requests_total{route=\"/sandboxes/{id}\",code=\"404\"} 3\n");
}

TEST(MetricsTest, FamilyWithoutSeriesRendersOnlyItsHeader) {
  MetricsRegistry registry;
  registry.AddCounter("c_total", "none yet");
  EXPECT_EQ(registry.Render(), "# HELP c_total none yet\n# TYPE c_total counter\n");
}

TEST(MetricsTest, GaugeSetAddAndClear) {
  MetricsRegistry registry;
  MetricFamily& gauge = registry.AddGauge("isobox_sandboxes", "Sandboxes by state.", {"state"});
  gauge.Set({"running"}, 3);
  gauge.Add({"running"}, -1);
  gauge.Set({"paused"}, 0.5);
  EXPECT_EQ(gauge.Value({"running"}), 2);
  EXPECT_EQ(registry.Render(),
            "# HELP isobox_sandboxes Sandboxes by state.\n"
            "# TYPE isobox_sandboxes gauge\n"
            "isobox_sandboxes{state=\"paused\"} 0.5\n"
            "isobox_sandboxes{state=\"running\"} 2\n");
  gauge.Clear();
  EXPECT_EQ(gauge.Value({"running"}), 0);
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  MetricsRegistry registry;
  MetricFamily& histogram =
      registry.AddHistogram("create_seconds", "Create latency.", {}, {0.001, 0.01, 1});
  histogram.Observe({}, 0.0005);
  histogram.Observe({}, 0.001);  // on a bound: counted in that bucket (le)
  histogram.Observe({}, 0.5);
  histogram.Observe({}, 20);  // only in +Inf
  EXPECT_EQ(registry.Render(),
            "# HELP create_seconds Create latency.\n"
            "# TYPE create_seconds histogram\n"
            "create_seconds_bucket{le=\"0.001\"} 2\n"
            "create_seconds_bucket{le=\"0.01\"} 2\n"
            "create_seconds_bucket{le=\"1\"} 3\n"
            "create_seconds_bucket{le=\"+Inf\"} 4\n"
            "create_seconds_sum 20.5015\n"
            "create_seconds_count 4\n");
}

TEST(MetricsTest, HistogramLabelsComeBeforeLe) {
  MetricsRegistry registry;
  MetricFamily& histogram = registry.AddHistogram("h", "x", {"template"}, {1});
  histogram.Observe({"base"}, 2);
  EXPECT_NE(registry.Render().find("h_bucket{template=\"base\",le=\"1\"} 0\n"), std::string::npos);
  EXPECT_NE(registry.Render().find("h_sum{template=\"base\"} 2\n"), std::string::npos);
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  MetricsRegistry registry;
  MetricFamily& counter = registry.AddCounter("c_total", "a \\ b\nc", {"v"});
  counter.Add({"q\"uote\\back\nline"});
  EXPECT_EQ(registry.Render(),
            "# HELP c_total a \\\\ b\\nc\n"
            "# TYPE c_total counter\n"
            "c_total{v=\"q\\\"uote\\\\back\\nline\"} 1\n");
}

TEST(MetricsTest, SampleValuesUsePrometheusSpellings) {
  EXPECT_EQ(FormatSampleValue(1), "1");
  EXPECT_EQ(FormatSampleValue(0.0025), "0.0025");
  EXPECT_EQ(FormatSampleValue(1e21), "1e+21");
  EXPECT_EQ(FormatSampleValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatSampleValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatSampleValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry registry;
  MetricFamily& counter = registry.AddCounter("c_total", "x", {"k"});
  MetricFamily& histogram = registry.AddHistogram("h", "x", {}, {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        counter.Add({"a"});
        histogram.Observe({}, 0.5);
        if (i % 1000 == 0) (void)registry.Render();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter.Value({"a"}), 40000);
  EXPECT_NE(registry.Render().find("h_count 40000\n"), std::string::npos);
}

TEST(MetricsDeathTest, InvalidDefinitionsAbort) {
  EXPECT_DEATH(
      {
        MetricsRegistry registry;
        registry.AddCounter("bad-name", "x");
      },
      "");
  EXPECT_DEATH(
      {
        MetricsRegistry registry;
        registry.AddHistogram("h", "x", {"le"}, {1});
      },
      "");
  EXPECT_DEATH(
      {
        MetricsRegistry registry;
        registry.AddHistogram("h", "x", {}, {1, 1});
      },
      "");
  EXPECT_DEATH(
      {
        MetricsRegistry registry;
        registry.AddCounter("c", "x");
        registry.AddGauge("c", "x");
      },
      "");
}

}  // namespace
}  // namespace isobox::server::ops
