// The runner's command lines: `edgeclip-runner MODE --flag value ...`. Each mode names the flags
// it takes; a multi-value flag (--image) takes every value up to the next `--flag` and may repeat.
// A usage problem is a UsageError (exit status 2); anything else that fails exits 3.
#ifndef EDGECLIP_ARGS_H_
#define EDGECLIP_ARGS_H_

#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace edgeclip {

struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

class Args {
 public:
  // argv[0] is the mode; `single` flags take one value (repeating them is an error unless listed
  // in `repeatable`), `multi` flags one or more.
  Args(int argc, char** argv, const std::set<std::string>& single, const std::set<std::string>& multi = {},
       const std::set<std::string>& repeatable = {}) {
    for (int i = 1; i < argc; ++i) {
      const std::string flag = argv[i];
      if (flag == "--help" || flag == "-h") {
        help_ = true;
        continue;
      }
      const bool many = multi.count(flag) > 0;
      if (!many && single.count(flag) == 0) throw UsageError("unknown option " + flag);
      if (!many && !repeatable.count(flag) && values_.count(flag)) throw UsageError(flag + " is given twice");
      std::vector<std::string>& values = values_[flag];
      const size_t before = values.size();
      if (!many && i + 1 < argc) values.push_back(argv[++i]);
      while (many && i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) values.push_back(argv[++i]);
      if (values.size() == before) throw UsageError(flag + " needs a value");
      for (size_t v = before; v < values.size(); ++v) order_.emplace_back(flag, values[v]);
    }
  }

  bool Help() const { return help_; }
  bool Has(const std::string& flag) const { return values_.count(flag) > 0; }

  std::vector<std::string> All(const std::string& flag) const {
    auto it = values_.find(flag);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
  }

  // The values of any of `flags`, in command-line order, each with its flag.
  std::vector<std::pair<std::string, std::string>> InOrder(const std::set<std::string>& flags) const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& item : order_) {
      if (flags.count(item.first)) out.push_back(item);
    }
    return out;
  }

  std::string One(const std::string& flag, const std::string& fallback = "") const {
    auto it = values_.find(flag);
    return it == values_.end() ? fallback : it->second.back();
  }

  int Int(const std::string& flag, int fallback, int minimum = 0) const {
    if (!Has(flag)) return fallback;
    const std::string text = One(flag);
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v < minimum || v > 1000000000) {
      throw UsageError(flag + " needs a whole number of at least " + std::to_string(minimum) + ", not '" + text + "'");
    }
    return static_cast<int>(v);
  }

 private:
  bool help_ = false;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::pair<std::string, std::string>> order_;
};

}  // namespace edgeclip

#endif  // EDGECLIP_ARGS_H_
