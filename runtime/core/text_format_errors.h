// The first protobuf text-format parse error as "file:line:column: message" (1-based,
// like compilers), for recipes, --set overrides and cluster configs alike.
#pragma once

#include <google/protobuf/io/tokenizer.h>

#include <string>
#include <utility>

namespace lockstep {

class FirstParseError final : public google::protobuf::io::ErrorCollector {
 public:
  explicit FirstParseError(std::string name) : name_(std::move(name)) {}
  void AddError(int line, int column, const std::string& message) override {
    if (!first_.empty()) return;
    first_ = name_ + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + message;
  }
  void AddWarning(int, int, const std::string&) override {}
  // Empty when no error was reported.
  const std::string& first() const { return first_; }

 private:
  std::string name_;
  std::string first_;
};

}  // namespace lockstep
