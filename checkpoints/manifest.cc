#include "checkpoints/manifest.h"

#include <algorithm>
#include <limits>
#include <set>
#include <tuple>

namespace lockstep::ckpt {
namespace {

constexpr int64_t kMaxElements = std::numeric_limits<int64_t>::max() / 4;

bool ParseDigits(const std::string& s, size_t pos, size_t len, int64_t* out) {
  if (pos + len > s.size() || len == 0 || len > 18) return false;
  int64_t v = 0;
  for (size_t i = pos; i < pos + len; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

Status Invalid(const std::string& what) { return DataLossError("invalid manifest: " + what); }

}  // namespace

bool ParseShardFileName(const std::string& name, int* rank, int* world_size) {
  // Exactly "shard-" 5 digits "-of-" 5 digits ".bin": no separators, no "..".
  static const std::string kPrefix = "shard-", kMid = "-of-", kSuffix = ".bin";
  if (name.size() != kPrefix.size() + 5 + kMid.size() + 5 + kSuffix.size()) return false;
  if (name.compare(0, kPrefix.size(), kPrefix) != 0) return false;
  if (name.compare(kPrefix.size() + 5, kMid.size(), kMid) != 0) return false;
  if (name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) return false;
  int64_t r = 0, w = 0;
  if (!ParseDigits(name, kPrefix.size(), 5, &r)) return false;
  if (!ParseDigits(name, kPrefix.size() + 5 + kMid.size(), 5, &w)) return false;
  *rank = static_cast<int>(r);
  *world_size = static_cast<int>(w);
  return true;
}

bool ParseStepDirName(const std::string& name, int64_t* step) {
  static const std::string kPrefix = "step-";
  if (name.size() < kPrefix.size() + 8 || name.compare(0, kPrefix.size(), kPrefix) != 0)
    return false;
  return ParseDigits(name, kPrefix.size(), name.size() - kPrefix.size(), step);
}

proto::Manifest ManifestToProto(const CheckpointMeta& meta, const std::vector<ShardInfo>& shards) {
  proto::Manifest m;
  m.set_format_version(meta.format_version);
  m.set_step(meta.step);
  m.set_epoch(meta.epoch);
  m.set_sample_position(meta.sample_position);
  m.set_world_size(meta.world_size);
  m.set_recipe_text(meta.recipe_text);
  m.set_recipe_hash(meta.recipe_hash);
  m.set_architecture(meta.architecture);
  m.set_architecture_fingerprint(meta.architecture_fingerprint);
  for (const BufferLayout& b : meta.buffers) {
    proto::Buffer* pb = m.add_buffers();
    pb->set_name(b.name);
    pb->set_elements(b.elements);
    pb->set_dtype(b.dtype);
    for (const TensorInfo& t : b.tensors) {
      proto::Tensor* pt = pb->add_tensors();
      pt->set_name(t.name);
      for (int64_t d : t.shape) pt->add_shape(d);
      pt->set_offset(t.offset);
    }
  }
  m.set_optimizer_kind(meta.optimizer_kind);
  for (const auto& [k, v] : meta.hyperparameters) (*m.mutable_hyperparameters())[k] = v;
  for (const auto& [k, v] : meta.schedule_state) (*m.mutable_schedule_state())[k] = v;
  for (const std::string& s : meta.rng_states) m.add_rng_states(s);
  for (const auto& [k, v] : meta.extras) (*m.mutable_extras())[k] = v;
  m.set_wall_time(meta.wall_time);
  m.set_lockstep_version(meta.lockstep_version);
  for (const ShardInfo& s : shards) ShardToProto(s, m.add_shards());
  return m;
}

void ShardToProto(const ShardInfo& s, proto::Shard* ps) {
  ps->set_file(s.file);
  ps->set_rank(s.rank);
  ps->set_size(s.size);
  for (const SegmentInfo& g : s.segments) {
    proto::Segment* pg = ps->add_segments();
    pg->set_buffer(g.buffer);
    pg->set_file_offset(g.file_offset);
    pg->set_length(g.length);
    pg->set_element_offset(g.element_offset);
    pg->set_xxh64(g.xxh64);
  }
}

ShardInfo ShardFromProto(const proto::Shard& ps) {
  ShardInfo s;
  s.file = ps.file();
  s.rank = ps.rank();
  s.size = ps.size();
  for (const proto::Segment& pg : ps.segments()) {
    s.segments.push_back(
        {pg.buffer(), pg.file_offset(), pg.length(), pg.element_offset(), pg.xxh64()});
  }
  return s;
}

CheckpointMeta MetaFromProto(const proto::Manifest& m) {
  CheckpointMeta meta;
  meta.format_version = m.format_version();
  meta.step = m.step();
  meta.epoch = m.epoch();
  meta.sample_position = m.sample_position();
  meta.world_size = m.world_size();
  meta.recipe_text = m.recipe_text();
  meta.recipe_hash = m.recipe_hash();
  meta.architecture = m.architecture();
  meta.architecture_fingerprint = m.architecture_fingerprint();
  for (const proto::Buffer& pb : m.buffers()) {
    BufferLayout b;
    b.name = pb.name();
    b.elements = pb.elements();
    b.dtype = pb.dtype();
    for (const proto::Tensor& pt : pb.tensors()) {
      b.tensors.push_back({pt.name(), {pt.shape().begin(), pt.shape().end()}, pt.offset()});
    }
    meta.buffers.push_back(std::move(b));
  }
  meta.optimizer_kind = m.optimizer_kind();
  meta.hyperparameters = {m.hyperparameters().begin(), m.hyperparameters().end()};
  meta.schedule_state = {m.schedule_state().begin(), m.schedule_state().end()};
  meta.rng_states = {m.rng_states().begin(), m.rng_states().end()};
  meta.extras = {m.extras().begin(), m.extras().end()};
  meta.wall_time = m.wall_time();
  meta.lockstep_version = m.lockstep_version();
  return meta;
}

std::vector<ShardInfo> ShardsFromProto(const proto::Manifest& m) {
  std::vector<ShardInfo> shards;
  for (const proto::Shard& ps : m.shards()) shards.push_back(ShardFromProto(ps));
  return shards;
}

Status ValidateLayout(const proto::Manifest& m) {
  std::set<std::string> buffer_names;
  for (const proto::Buffer& b : m.buffers()) {
    const std::string where = "buffer '" + b.name() + "'";
    if (b.name().empty()) return Invalid("a buffer has an empty name");
    if (!buffer_names.insert(b.name()).second) return Invalid(where + " appears twice");
    if (b.dtype() != "f32") return Invalid(where + " has dtype '" + b.dtype() + "', expected f32");
    if (b.elements() < 0 || b.elements() > kMaxElements) {
      return Invalid(where + " has " + std::to_string(b.elements()) + " elements");
    }
    std::set<std::string> tensor_names;
    for (const proto::Tensor& t : b.tensors()) {
      const std::string tw = where + " tensor '" + t.name() + "'";
      if (t.name().empty()) return Invalid(where + " has a tensor with an empty name");
      if (!tensor_names.insert(t.name()).second) return Invalid(tw + " appears twice");
      int64_t count = 1;
      for (int64_t d : t.shape()) {
        if (d < 0) return Invalid(tw + " has a negative dimension");
        if (d > 0 && count > b.elements() / d) return Invalid(tw + " is larger than its buffer");
        count *= d;
      }
      if (t.offset() < 0 || t.offset() > b.elements() - count) {
        return Invalid(tw + " (offset " + std::to_string(t.offset()) + ", " +
                       std::to_string(count) + " elements) lies outside its buffer of " +
                       std::to_string(b.elements()));
      }
    }
  }
  return Status::Ok();
}

Status ValidateLayout(const CheckpointMeta& meta) {
  proto::Manifest m = ManifestToProto(meta, {});
  return ValidateLayout(m);
}

Status ValidateManifest(const proto::Manifest& m, const std::string& dir_name) {
  if (m.format_version() != kFormatVersion) {
    return Invalid("format_version " + std::to_string(m.format_version()) + " (this build reads " +
                   std::to_string(kFormatVersion) + ")");
  }
  if (m.step() < 0 || m.epoch() < 0 || m.sample_position() < 0) {
    return Invalid("negative step, epoch or sample_position");
  }
  if (!dir_name.empty() && dir_name != StepDirName(m.step())) {
    return Invalid("step " + std::to_string(m.step()) + " does not match directory " + dir_name);
  }
  const int world = m.world_size();
  if (world < 1 || world > kMaxWorldSize) return Invalid("world_size " + std::to_string(world));
  if (m.rng_states_size() != 0 && m.rng_states_size() != world) {
    return Invalid(std::to_string(m.rng_states_size()) + " rng states for world size " +
                   std::to_string(world));
  }
  LS_RETURN_IF_ERROR(ValidateLayout(m));

  std::map<std::string, int64_t> elements;
  for (const proto::Buffer& b : m.buffers()) elements[b.name()] = b.elements();
  // (element begin, element end) of every segment, per buffer, to check the tiling.
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> ranges;
  std::set<int> ranks;
  if (m.shards_size() != world) {
    return Invalid(std::to_string(m.shards_size()) + " shards for world size " +
                   std::to_string(world));
  }
  for (const proto::Shard& s : m.shards()) {
    int rank = -1, of = -1;
    if (!ParseShardFileName(s.file(), &rank, &of)) {
      return Invalid("shard file name '" + s.file() +
                     "' is not of the form shard-RRRRR-of-WWWWW.bin");
    }
    const std::string where = "shard " + s.file();
    if (of != world || rank >= world || rank != s.rank()) {
      return Invalid(where + " does not match rank " + std::to_string(s.rank()) +
                     " of world size " + std::to_string(world));
    }
    if (!ranks.insert(rank).second) return Invalid(where + " appears twice");
    if (s.size() < 0) return Invalid(where + " has a negative size");
    std::vector<std::pair<int64_t, int64_t>> extents;  // byte ranges in the file
    for (const proto::Segment& g : s.segments()) {
      auto it = elements.find(g.buffer());
      const std::string gw = where + " segment at byte offset " + std::to_string(g.file_offset());
      if (it == elements.end()) return Invalid(gw + " names unknown buffer '" + g.buffer() + "'");
      if (g.length() <= 0 || g.length() % 4 != 0 || g.length() / 4 > it->second) {
        return Invalid(gw + " has length " + std::to_string(g.length()));
      }
      const int64_t count = g.length() / 4;
      if (g.element_offset() < 0 || g.element_offset() > it->second - count) {
        return Invalid(gw + " (elements from " + std::to_string(g.element_offset()) +
                       ") lies outside buffer '" + g.buffer() + "'");
      }
      if (g.file_offset() < 0 || g.file_offset() > s.size() - g.length()) {
        return Invalid(gw + " lies outside the shard's " + std::to_string(s.size()) + " bytes");
      }
      extents.emplace_back(g.file_offset(), g.file_offset() + g.length());
      ranges[g.buffer()].emplace_back(g.element_offset(), g.element_offset() + count);
    }
    std::sort(extents.begin(), extents.end());
    for (size_t i = 1; i < extents.size(); ++i) {
      if (extents[i].first < extents[i - 1].second)
        return Invalid(where + " has overlapping segments");
    }
  }
  for (const auto& [name, count] : elements) {
    auto& r = ranges[name];
    std::sort(r.begin(), r.end());
    int64_t next = 0;
    for (const auto& [begin, end] : r) {
      if (begin != next) {
        return Invalid("buffer '" + name + "' has a " + (begin > next ? "gap" : "overlap") +
                       " at element " + std::to_string(std::min(begin, next)));
      }
      next = end;
    }
    if (next != count) {
      return Invalid("buffer '" + name + "' is covered up to element " + std::to_string(next) +
                     " of " + std::to_string(count));
    }
  }
  return Status::Ok();
}

Result<proto::Manifest> ParseManifest(const std::string& bytes, const std::string& dir_name) {
  proto::Manifest m;
  if (!m.ParseFromString(bytes)) {
    return DataLossError("manifest does not parse (" + std::to_string(bytes.size()) +
                         " bytes; truncated or not a lockstep manifest)");
  }
  LS_RETURN_IF_ERROR(ValidateManifest(m, dir_name));
  return m;
}

}  // namespace lockstep::ckpt
