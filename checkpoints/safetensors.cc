#include "checkpoints/safetensors.h"

#include <algorithm>
#include <cstring>

#include "checkpoints/file_system.h"
#include "checkpoints/mini_json.h"
#include "checkpoints/reader.h"

namespace lockstep::ckpt {
namespace {

constexpr int64_t kCopyChunkElements = int64_t{4} << 20;
constexpr uint64_t kMaxHeaderBytes = 100 << 20;  // the Python library's own limit

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
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

Status ExportTo(const CheckpointReader& reader, const BufferLayout& params,
                const std::string& path) {
  std::vector<TensorInfo> tensors = params.tensors;
  if (tensors.empty()) tensors.push_back({"params", {params.elements}, 0});
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.offset < b.offset; });

  const CheckpointMeta& m = reader.meta();
  std::string header = "{\"__metadata__\":{";
  const std::vector<std::pair<std::string, std::string>> meta = {
      {"format", "pt"},  // what loaders such as transformers expect for plain tensors
      {"producer", "lockstep " + m.lockstep_version},
      {"step", std::to_string(m.step)},
      {"epoch", std::to_string(m.epoch)},
      {"sample_position", std::to_string(m.sample_position)},
      {"world_size", std::to_string(m.world_size)},
      {"recipe_hash", Hex(m.recipe_hash)},
      {"architecture_fingerprint", Hex(m.architecture_fingerprint)},
      {"optimizer_kind", m.optimizer_kind}};
  for (size_t i = 0; i < meta.size(); ++i) {
    header += (i ? "," : "") + json::Quote(meta[i].first) + ":" + json::Quote(meta[i].second);
  }
  header += "}";
  int64_t offset = 0;
  for (const TensorInfo& t : tensors) {
    const int64_t bytes = Product(t.shape) * 4;
    header += "," + json::Quote(t.name) + ":{\"dtype\":\"F32\",\"shape\":" + ShapeJson(t.shape) +
              ",\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // data starts 8-byte aligned

  FileSystem* fs = PosixFileSystem();
  LS_ASSIGN_OR_RETURN(auto file, fs->NewWritableFile(path));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  LS_RETURN_IF_ERROR(file->Append(len, 8));
  LS_RETURN_IF_ERROR(file->Append(header.data(), header.size()));
  std::vector<float> chunk;
  for (const TensorInfo& t : tensors) {
    const int64_t end = t.offset + Product(t.shape);
    for (int64_t e = t.offset; e < end; e += kCopyChunkElements) {
      const int64_t n = std::min(kCopyChunkElements, end - e);
      chunk.resize(static_cast<size_t>(n));
      LS_RETURN_IF_ERROR(reader.Read(params.name, e, e + n, chunk.data()));
      LS_RETURN_IF_ERROR(file->Append(chunk.data(), chunk.size() * 4));
    }
  }
  LS_RETURN_IF_ERROR(file->Sync());
  return file->Close();
}

Result<int64_t> ToInt(const json::Value& v, const std::string& what) {
  if (v.kind != json::Value::Kind::kNumber || v.text.empty() || v.text.size() > 18 ||
      v.text.find_first_not_of("0123456789") != std::string::npos) {
    return DataLossError("safetensors header: " + what + " is not a non-negative integer");
  }
  return static_cast<int64_t>(std::stoll(v.text));
}

}  // namespace

Status ExportSafetensors(const std::string& checkpoint_dir, const std::string& out_file) {
  LS_ASSIGN_OR_RETURN(auto reader, CheckpointReader::Open(checkpoint_dir));
  const BufferLayout* params = reader->FindBuffer("params");
  if (params == nullptr)
    return InvalidArgumentError("checkpoint " + checkpoint_dir + " has no 'params' buffer");
  const std::string tmp = out_file + ".tmp";
  Status s = ExportTo(*reader, *params, tmp);
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
  auto header = json::Parse(bytes.substr(8, n));
  if (!header.ok()) return DataLossError(path + ": " + header.status().message());
  if (header->kind != json::Value::Kind::kObject)
    return DataLossError(path + ": header is not a JSON object");
  const std::string data = bytes.substr(8 + n);
  SafetensorsFile out;
  std::vector<std::pair<int64_t, int64_t>> extents;
  for (const auto& [name, v] : header->object) {
    if (name == "__metadata__") {
      for (const auto& [k, val] : v.object) out.metadata[k] = val.text;
      continue;
    }
    const json::Value* dtype = v.Find("dtype");
    const json::Value* shape = v.Find("shape");
    const json::Value* offsets = v.Find("data_offsets");
    if (dtype == nullptr || shape == nullptr || offsets == nullptr || offsets->array.size() != 2) {
      return DataLossError(path + ": tensor '" + name + "' lacks dtype, shape or data_offsets");
    }
    SafetensorsTensor t;
    t.name = name;
    t.dtype = dtype->text;
    for (const json::Value& d : shape->array) {
      LS_ASSIGN_OR_RETURN(int64_t dim, ToInt(d, "a dimension of " + name));
      t.shape.push_back(dim);
    }
    LS_ASSIGN_OR_RETURN(int64_t begin, ToInt(offsets->array[0], "data_offsets of " + name));
    LS_ASSIGN_OR_RETURN(int64_t end, ToInt(offsets->array[1], "data_offsets of " + name));
    if (begin > end || end > static_cast<int64_t>(data.size())) {
      return DataLossError(path + ": tensor '" + name + "' data_offsets outside the data");
    }
    if (t.dtype == "F32" && end - begin != Product(t.shape) * 4) {
      return DataLossError(path + ": tensor '" + name + "' has " + std::to_string(end - begin) +
                           " bytes for shape " + ShapeJson(t.shape));
    }
    t.data = data.substr(begin, end - begin);
    extents.emplace_back(begin, end);
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
