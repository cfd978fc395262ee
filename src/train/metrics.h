// metrics.jsonl (one JSON object per line) and the rank-0 progress line.
#pragma once
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace msa {

// A flat JSON object built field by field, in insertion order.
class JsonLine {
 public:
  JsonLine& add(const std::string& key, double v);
  JsonLine& add(const std::string& key, int64_t v);
  JsonLine& add(const std::string& key, const std::string& v);
  JsonLine& add(const std::string& key, const std::vector<double>& v);  // a JSON list of numbers
  std::string str() const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

class MetricsWriter {
 public:
  MetricsWriter() = default;
  // Opens path for appending (truncating first when fresh); lines are flushed as they are written.
  void open(const std::string& path, bool fresh);
  void write(const JsonLine& line);
  bool is_open() const { return file_ != nullptr; }
  ~MetricsWriter();

 private:
  std::FILE* file_ = nullptr;
};

// "1:02:03" or "4:05".
std::string format_duration(double seconds);

}  // namespace msa
