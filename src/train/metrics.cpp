#include "train/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>
#include <utility>

#include "core/error.h"

namespace msa {
namespace {

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

}  // namespace

JsonLine& JsonLine::add(const std::string& key, double v) {
  if (!std::isfinite(v)) {  // JSON has no NaN/Inf: write null
    fields_.emplace_back(key, "null");
    return *this;
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  fields_.emplace_back(key, buf);
  return *this;
}

JsonLine& JsonLine::add(const std::string& key, int64_t v) {
  fields_.emplace_back(key, std::to_string(v));
  return *this;
}

JsonLine& JsonLine::add(const std::string& key, const std::string& v) {
  std::string quoted = "\"";  // built by appending: GCC 12 warns (-Wrestrict, falsely) on "\"" + std::string
  quoted += json_escape(v);
  quoted += '"';
  fields_.emplace_back(key, std::move(quoted));
  return *this;
}

JsonLine& JsonLine::add(const std::string& key, const std::vector<double>& v) {
  std::string list = "[";
  for (size_t i = 0; i < v.size(); ++i) list += (i ? ", " : "") + JsonLine().add("x", v[i]).fields_[0].second;
  fields_.emplace_back(key, list + "]");
  return *this;
}

std::string JsonLine::str() const {
  std::string s = "{";
  for (size_t i = 0; i < fields_.size(); ++i) s += (i ? ", \"" : "\"") + fields_[i].first + "\": " + fields_[i].second;
  return s + "}";
}

void MetricsWriter::open(const std::string& path, bool fresh) {
  file_ = std::fopen(path.c_str(), fresh ? "w" : "a");
  MSA_USER_CHECK(file_ != nullptr, "cannot open " << path << " for writing: " << std::strerror(errno));
}

void MetricsWriter::write(const JsonLine& line) {
  if (!file_) return;
  std::string s = line.str() + "\n";
  MSA_USER_CHECK(std::fwrite(s.data(), 1, s.size(), file_) == s.size() && std::fflush(file_) == 0,
                 "writing metrics failed: " << std::strerror(errno));
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buf;
}

}  // namespace msa
