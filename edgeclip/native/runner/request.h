// The serve protocol's requests and replies (docs/device-runtime.md#serve): one JSON object a
// line in, one a line out. A request is checked whole against its op before anything runs, so a
// typo ("lables") is an error rather than a silently different answer.
#ifndef EDGECLIP_REQUEST_H_
#define EDGECLIP_REQUEST_H_

#include <cmath>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgeclip.h"
#include "json.h"
#include "report.h"

namespace edgeclip {

constexpr size_t kMaxRequestBytes = EDGECLIP_MAX_REQUEST_BYTES;

inline std::string TooLongMessage() {
  return "the request is over the limit of " + std::to_string(kMaxRequestBytes) + " bytes; send shorter lines";
}

struct Request {
  std::string op;
  std::optional<std::string> image, text, prompt, index;
  std::optional<std::vector<std::string>> labels;
  int top = 5, k = 10;
};

inline std::string ResultReply(const std::string& id, const std::string& result) {
  return "{\"id\": " + id + ", \"result\": " + result + "}";
}

inline std::string ErrorReply(const std::string& id, const std::string& message) {
  return "{\"id\": " + id + ", \"error\": " + Quoted(message) + "}";
}

// The request's "id" as JSON text, "null" when it has none (or is no object).
inline std::string RequestId(const Json& doc) {
  const Json* id = doc.kind == Json::kObject ? doc.Find("id") : nullptr;
  return id ? JsonText(*id) : "null";
}

namespace request_detail {

// A string field without NUL bytes: the C API takes C strings, which would end at one.
inline std::string Text(const Json& value, const std::string& key) {
  if (value.kind != Json::kString) throw std::invalid_argument("\"" + key + "\" must be a string");
  if (value.text.find('\0') != std::string::npos) throw std::invalid_argument("\"" + key + "\" holds a NUL character");
  return value.text;
}

}  // namespace request_detail

// The fields of `doc` checked against its op (classify: image [labels prompt top]; embed: image or
// text; tokenize: text; search: index and image or text [k]); one-line std::invalid_argument for the first problem found.
inline Request ReadRequest(const Json& doc) {
  using request_detail::Text;
  if (doc.kind != Json::kObject) throw std::invalid_argument("a request must be a JSON object");
  const Json* op = doc.Find("op");
  if (op == nullptr) throw std::invalid_argument("the request has no \"op\"; use classify, embed, tokenize or search");
  Request r;
  r.op = Text(*op, "op");
  std::set<std::string> allowed;
  if (r.op == "classify") allowed = {"image", "labels", "prompt", "top"};
  else if (r.op == "embed") allowed = {"image", "text"};
  else if (r.op == "tokenize") allowed = {"text"};
  else if (r.op == "search") allowed = {"index", "image", "text", "k"};
  else throw std::invalid_argument("unknown op '" + r.op + "'; use classify, embed, tokenize or search");
  std::set<std::string> seen;
  for (const auto& [key, value] : doc.fields) {
    if (!seen.insert(key).second) throw std::invalid_argument("\"" + key + "\" is given twice");
    if (key == "id" || key == "op") continue;
    if (!allowed.count(key)) throw std::invalid_argument("unknown field \"" + key + "\" for op " + r.op);
    if (key == "image") r.image = Text(value, key);
    if (key == "text") r.text = Text(value, key);
    if (key == "prompt") r.prompt = Text(value, key);
    if (key == "index") r.index = Text(value, key);
    if (key == "labels") {
      if (value.kind != Json::kArray) throw std::invalid_argument("\"labels\" must be an array of strings");
      r.labels.emplace();
      for (const Json& label : value.items) r.labels->push_back(Text(label, "labels"));
    }
    if (key == "top" || key == "k") {
      const double most = key == "k" ? 1000 : 1e9;
      if (value.kind != Json::kNumber || value.number != std::floor(value.number) || value.number < 1 ||
          value.number > most) {
        throw std::invalid_argument("\"" + key + "\" must be a whole number " + (key == "k" ? "from 1 to 1000" : "of at least 1"));
      }
      (key == "k" ? r.k : r.top) = static_cast<int>(value.number);
    }
  }
  if ((r.op == "embed" || r.op == "search") && r.image.has_value() == r.text.has_value()) {
    throw std::invalid_argument(r.op + " needs \"image\" or \"text\", not both");
  }
  if (r.op == "search" && !r.index) throw std::invalid_argument("search needs \"index\", an index file's path");
  if (r.op == "classify" && !r.image) throw std::invalid_argument("classify needs \"image\"");
  if (r.op == "tokenize" && !r.text) throw std::invalid_argument("tokenize needs \"text\"");
  if (r.prompt && !r.labels) {
    throw std::invalid_argument("\"prompt\" needs \"labels\" (baked labels keep the prompt they were built with)");
  }
  return r;
}

}  // namespace edgeclip

#endif  // EDGECLIP_REQUEST_H_
