// `edgeclip-runner embed (--image FILE|DIR... | --text T | --text-file F) [--out FILE.npy]`:
// L2-normalised embeddings in input order, a DIR standing for its JPEG/PNG files sorted by name.
// Without --out one JSON line per input; with it a float32 [N, D] .npy written atomically and one
// JSON line {"out": PATH, "count": N, "dim": D}. `--batch N` runs up to N images or texts a tower
// call (edgeclip_embed_image_files / edgeclip_embed_texts: the bundle's compiled sizes up to N).
#ifndef EDGECLIP_EMBED_COMMAND_H_
#define EDGECLIP_EMBED_COMMAND_H_

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "args.h"
#include "model_handle.h"
#include "npy.h"
#include "plan.h"
#include "report.h"
#include "results.h"
#include "tokenize_command.h"

namespace edgeclip {

constexpr const char* kEmbedUsage =
    "embed [--bundle DIR] [--variant NAME] [--threads N] (--image FILE|DIR... | --text T | --text-file F) "
    "[--batch N] [--out FILE.npy]";

inline bool IsImageName(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* ext : {".jpg", ".jpeg", ".png"}) {
    const std::string e = ext;
    if (lower.size() > e.size() && lower.compare(lower.size() - e.size(), e.size(), e) == 0) return true;
  }
  return false;
}

// Files as given; each folder replaced by the *.jpg/*.jpeg/*.png directly in it, in byte order.
inline std::vector<std::string> ExpandImages(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const std::string& path : paths) {
    struct stat info{};
    if (stat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
      out.push_back(path);  // a missing file is reported when it is read
      continue;
    }
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) throw std::runtime_error("cannot list the folder " + path);
    std::vector<std::string> names;
    for (dirent* entry; (entry = readdir(dir)) != nullptr;) {
      const std::string name = entry->d_name;
      struct stat file{};
      const std::string full = path + (path.back() == '/' ? "" : "/") + name;
      if (IsImageName(name) && stat(full.c_str(), &file) == 0 && S_ISREG(file.st_mode)) names.push_back(full);
    }
    closedir(dir);
    if (names.empty()) throw std::runtime_error("the folder " + path + " has no .jpg, .jpeg or .png files");
    std::sort(names.begin(), names.end());
    out.insert(out.end(), names.begin(), names.end());
  }
  return out;
}

// `arr` as `path`: written beside it, flushed to disk, then renamed over it.
inline void WriteNpyAtomic(const std::string& path, const HostArray& arr) {
  const std::string partial = path + "." + std::to_string(getpid()) + ".part";
  try {
    WriteNpy(partial, arr);
    const int fd = open(partial.c_str(), O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) throw std::runtime_error("cannot flush " + partial);
    close(fd);
    if (std::rename(partial.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + partial + " to " + path);
  } catch (...) {
    std::remove(partial.c_str());
    throw;
  }
}

inline void EmbedMain(const Args& args, const std::string& bundle) {
  const bool images = args.Has("--image"), texts = args.Has("--text") || args.Has("--text-file");
  if (images == texts) throw UsageError("embed needs --image FILE|DIR... or --text/--text-file, not both");
  const int batch = args.Int("--batch", 1, 1);
  if (batch > kMaxBatch) throw UsageError("--batch needs a whole number from 1 to " + std::to_string(kMaxBatch) +
                                          ", not '" + args.One("--batch") + "'");
  const std::vector<std::string> inputs = images ? ExpandImages(args.All("--image")) : Texts(args);
  ModelHandle model(bundle, args, images ? EDGECLIP_IMAGE : EDGECLIP_TEXT, "embed");
  const size_t dim = static_cast<size_t>(model.Dim());
  const std::string out = args.One("--out");
  const size_t step = static_cast<size_t>(batch);
  std::vector<float> all(out.empty() ? dim * step : dim * inputs.size());
  for (size_t i = 0; i < inputs.size(); i += step) {  // one library call per `batch` items
    const size_t count = std::min(step, inputs.size() - i);
    float* rows = out.empty() ? all.data() : &all[i * dim];
    std::vector<const char*> items;
    for (size_t j = i; j < i + count; ++j) items.push_back(inputs[j].c_str());
    Checked(images ? edgeclip_embed_image_files(model.get(), items.data(), static_cast<int>(count), batch, rows)
                   : edgeclip_embed_texts(model.get(), items.data(), static_cast<int>(count), batch, rows));
    for (size_t j = 0; out.empty() && j < count; ++j) {
      const std::vector<float> row(rows + j * dim, rows + (j + 1) * dim);
      std::printf("%s\n", EmbeddingJson(images, inputs[i + j], row).c_str());
    }
  }
  if (out.empty()) return;
  HostArray array;
  array.shape = {static_cast<int64_t>(inputs.size()), static_cast<int64_t>(dim)};
  array.dtype = DLDataType{kDLFloat, 32, 1};
  const char* bytes = reinterpret_cast<const char*>(all.data());
  array.bytes.assign(bytes, bytes + all.size() * sizeof(float));
  WriteNpyAtomic(out, array);
  std::printf("{\"out\": %s, \"count\": %zu, \"dim\": %zu}\n", Quoted(out).c_str(), inputs.size(), dim);
}

}  // namespace edgeclip

#endif  // EDGECLIP_EMBED_COMMAND_H_
