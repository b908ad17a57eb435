#include "checkpoints/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "checkpoints/file_system.h"
#include "checkpoints/reader.h"

namespace lockstep::ckpt {
namespace {

// Keys keep document order: the header lists tensors by offset when we write it,
// and ReadSafetensors returns them in header order.
using Json = nlohmann::ordered_json;

constexpr int64_t kCopyChunkElements = int64_t{4} << 20;
constexpr uint64_t kMaxHeaderBytes = 100 << 20;  // the Python library's own limit
// A header nests three deep (header, tensor, shape); refuse pathological nesting
// before it is built (the library itself would allocate one value per level).
constexpr int kMaxDepth = 64;
// Dimensions and offsets above 2^53 are not exact in every JSON reader (nor in any
// real checkpoint); capping them also keeps the products below from overflowing.
constexpr uint64_t kMaxInteger = uint64_t{1} << 53;

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Product(shape) * element_bytes, or -1 when it does not fit in int64.
int64_t CheckedBytes(const std::vector<int64_t>& shape, int64_t element_bytes) {
  int64_t n = element_bytes;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) return -1;
  }
  return n;
}

std::string ShapeJson(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string Hex(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// A tensor to export and the buffer it lives in.
struct ExportedTensor {
  const BufferLayout* buffer;
  TensorInfo info;
};

Status ExportTo(const CheckpointReader& reader, const std::vector<const BufferLayout*>& buffers,
                const std::string& path) {
  std::vector<ExportedTensor> tensors;
  for (const BufferLayout* params : buffers) {
    std::vector<TensorInfo> infos = params->tensors;
    if (infos.empty()) infos.push_back({params->name, {params->elements}, 0});
    std::sort(infos.begin(), infos.end(),
              [](const TensorInfo& a, const TensorInfo& b) { return a.offset < b.offset; });
    for (TensorInfo& t : infos) tensors.push_back({params, std::move(t)});
  }

  const CheckpointMeta& m = reader.meta();
  std::string header;
  try {
    Json json = Json::object();
    json["__metadata__"] = {
        {"format", "pt"},  // what loaders such as transformers expect for plain tensors
        {"producer", "lockstep " + m.lockstep_version},
        {"step", std::to_string(m.step)},
        {"epoch", std::to_string(m.epoch)},
        {"sample_position", std::to_string(m.sample_position)},
        {"world_size", std::to_string(m.world_size)},
        {"recipe_hash", Hex(m.recipe_hash)},
        {"architecture_fingerprint", Hex(m.architecture_fingerprint)},
        {"optimizer_kind", m.optimizer_kind}};
    int64_t offset = 0;
    for (const ExportedTensor& exported : tensors) {
      const TensorInfo& t = exported.info;
      if (json.contains(t.name))
        return InvalidArgumentError("tensor name '" + t.name + "' is used twice (or reserved)");
      const int64_t bytes = Product(t.shape) * 4;
      json[t.name] = {{"dtype", "F32"},
                      {"shape", t.shape},
                      {"data_offsets", Json::array({offset, offset + bytes})}};
      offset += bytes;
    }
    header = json.dump();  // compact; throws on a name that is not UTF-8
  } catch (const Json::exception& e) {
    return InvalidArgumentError(std::string("cannot write the safetensors header: ") + e.what());
  }
  header.append((8 - header.size() % 8) % 8, ' ');  // data starts 8-byte aligned

  FileSystem* fs = PosixFileSystem();
  LS_ASSIGN_OR_RETURN(auto file, fs->NewWritableFile(path));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  LS_RETURN_IF_ERROR(file->Append(len, 8));
  LS_RETURN_IF_ERROR(file->Append(header.data(), header.size()));
  std::vector<float> chunk;
  for (const ExportedTensor& exported : tensors) {
    const TensorInfo& t = exported.info;
    const int64_t end = t.offset + Product(t.shape);
    for (int64_t e = t.offset; e < end; e += kCopyChunkElements) {
      const int64_t n = std::min(kCopyChunkElements, end - e);
      chunk.resize(static_cast<size_t>(n));
      LS_RETURN_IF_ERROR(reader.Read(exported.buffer->name, e, e + n, chunk.data()));
      LS_RETURN_IF_ERROR(file->Append(chunk.data(), chunk.size() * 4));
    }
  }
  LS_RETURN_IF_ERROR(file->Sync());
  return file->Close();
}

// The library's message without its "[json.exception.parse_error.101] " prefix.
std::string JsonMessage(const std::exception& e) {
  const std::string what = e.what();
  const size_t end = what.find("] ");
  return what.rfind("[json.exception.", 0) == 0 && end != std::string::npos ? what.substr(end + 2)
                                                                            : what;
}

// A value as JSON text, shortened for an error message.
std::string Brief(const Json& v) {
  std::string s = v.dump();
  return s.size() <= 40 ? s : s.substr(0, 37) + "...";
}

struct HeaderError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Parses the header, refusing deep nesting and repeated tensor names (JSON allows
// both; the library would keep the last duplicate silently).
Result<Json> ParseHeader(const std::string& text) {
  std::set<std::string> names;
  const Json::parser_callback_t check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) &&
        depth >= kMaxDepth) {
      throw HeaderError("JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    if (event == Json::parse_event_t::key && depth == 1 &&
        !names.insert(parsed.get<std::string>()).second) {
      throw HeaderError("key '" + parsed.get<std::string>() + "' appears twice");
    }
    return true;
  };
  try {
    return Json::parse(text, check);
  } catch (const HeaderError& e) {
    return DataLossError(std::string("header: ") + e.what());
  } catch (const Json::exception& e) {
    return DataLossError("header is not valid JSON: " + JsonMessage(e));
  }
}

// A JSON integer in [0, 2^53]: no sign, fraction, exponent or quotes.
Result<int64_t> ToInt(const Json& v, const std::string& what) {
  if (!v.is_number_unsigned() || v.get<uint64_t>() > kMaxInteger) {
    return DataLossError("safetensors header: " + what + " is not a non-negative integer (got " +
                         Brief(v) + ")");
  }
  return static_cast<int64_t>(v.get<uint64_t>());
}

Status ReadMetadata(const Json& v, std::map<std::string, std::string>* out) {
  if (!v.is_object()) return DataLossError("__metadata__ is not a JSON object");
  for (const auto& item : v.items()) {
    if (!item.value().is_string()) {
      return DataLossError("__metadata__ value of '" + item.key() + "' is not a string (got " +
                           Brief(item.value()) + ")");
    }
    (*out)[item.key()] = item.value().get<std::string>();
  }
  return Status::Ok();
}

}  // namespace

Status ExportSafetensors(const std::string& checkpoint_dir, const std::string& out_file) {
  LS_ASSIGN_OR_RETURN(auto reader, CheckpointReader::Open(checkpoint_dir));
  // "params", or one "NAME.params" per model (a GAN's generator and discriminator).
  std::vector<const BufferLayout*> params;
  const std::string suffix = ".params";
  for (const BufferLayout& b : reader->meta().buffers) {
    if (b.name == "params" || (b.name.size() > suffix.size() &&
                               b.name.compare(b.name.size() - suffix.size(), suffix.size(), suffix) == 0)) {
      params.push_back(&b);
    }
  }
  if (params.empty()) {
    return InvalidArgumentError("checkpoint " + checkpoint_dir + " has no 'params' buffer");
  }
  const std::string tmp = out_file + ".tmp";
  Status s = ExportTo(*reader, params, tmp);
  if (s.ok()) s = PosixFileSystem()->Rename(tmp, out_file);
  if (!s.ok()) {
    (void)PosixFileSystem()->RemoveAll(tmp);
    return s.WithContext("exporting " + checkpoint_dir + " to " + out_file);
  }
  return Status::Ok();
}

std::vector<float> SafetensorsTensor::AsFloats() const {
  std::vector<float> out(data.size() / 4);
  std::memcpy(out.data(), data.data(), out.size() * 4);
  return out;
}

const SafetensorsTensor* SafetensorsFile::Find(const std::string& name) const {
  for (const SafetensorsTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Result<SafetensorsFile> ReadSafetensors(const std::string& path) {
  LS_ASSIGN_OR_RETURN(std::string bytes, PosixFileSystem()->ReadFileToString(path));
  if (bytes.size() < 8) return DataLossError(path + ": too short for a safetensors file");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  if (n > kMaxHeaderBytes || n > bytes.size() - 8)
    return DataLossError(path + ": bad header length " + std::to_string(n));
  auto header = ParseHeader(bytes.substr(8, n));
  if (!header.ok()) return header.status().WithContext(path);
  if (!header->is_object()) return DataLossError(path + ": header is not a JSON object");
  const std::string data = bytes.substr(8 + n);
  SafetensorsFile out;
  std::vector<std::pair<int64_t, int64_t>> extents;
  for (const auto& item : header->items()) {
    const std::string& name = item.key();
    const Json& v = item.value();
    if (name == "__metadata__") {
      LS_RETURN_IF_ERROR(ReadMetadata(v, &out.metadata).WithContext(path));
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets")) {
      return DataLossError(path + ": tensor '" + name + "' lacks dtype, shape or data_offsets");
    }
    const Json& dtype = v["dtype"];
    const Json& shape = v["shape"];
    const Json& offsets = v["data_offsets"];
    if (!dtype.is_string() || !shape.is_array() || !offsets.is_array() || offsets.size() != 2) {
      return DataLossError(path + ": tensor '" + name +
                           "' needs a string dtype, an array shape and two data_offsets");
    }
    SafetensorsTensor t;
    t.name = name;
    t.dtype = dtype.get<std::string>();
    for (const Json& d : shape) {
      auto dim = ToInt(d, "a dimension of " + name);
      if (!dim.ok()) return dim.status().WithContext(path);
      t.shape.push_back(*dim);
    }
    auto begin = ToInt(offsets[0], "data_offsets of " + name);
    if (!begin.ok()) return begin.status().WithContext(path);
    auto end = ToInt(offsets[1], "data_offsets of " + name);
    if (!end.ok()) return end.status().WithContext(path);
    if (*begin > *end || *end > static_cast<int64_t>(data.size())) {
      return DataLossError(path + ": tensor '" + name + "' data_offsets outside the data");
    }
    if (t.dtype == "F32" && *end - *begin != CheckedBytes(t.shape, 4)) {
      return DataLossError(path + ": tensor '" + name + "' has " + std::to_string(*end - *begin) +
                           " bytes for shape " + ShapeJson(t.shape));
    }
    const int64_t b = *begin, e = *end;
    t.data = data.substr(b, e - b);
    extents.emplace_back(b, e);
    out.tensors.push_back(std::move(t));
  }
  std::sort(extents.begin(), extents.end());
  int64_t next = 0;
  for (const auto& [b, e] : extents) {
    if (b != next)
      return DataLossError(path + ": tensor data is not contiguous at byte " +
                           std::to_string(next));
    next = e;
  }
  if (next != static_cast<int64_t>(data.size()))
    return DataLossError(path + ": trailing bytes after the tensors");
  return out;
}

}  // namespace lockstep::ckpt
