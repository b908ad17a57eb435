#include "runtime/core/recipe.h"

#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "runtime/core/reshape_layer.h"
#include "runtime/core/sequence_loss.h"
#include "runtime/core/sequence_layers.h"
#include "runtime/core/text_format_errors.h"

namespace lockstep {
namespace {

namespace pb = google::protobuf;

// Turns "training.epochs=3" into text format "training { epochs: 3 }", checking
// every path component against the schema so a typo names the bad field.
Result<std::string> OverrideToText(const std::string& assignment) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return InvalidArgumentError("--set " + assignment + ": expected field.path=value");
  }
  std::string path = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  const pb::Descriptor* desc = config::Recipe::descriptor();
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  std::string open, close;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::FieldDescriptor* field = desc ? desc->FindFieldByName(parts[i]) : nullptr;
    if (field == nullptr) {
      return InvalidArgumentError("--set " + assignment + ": " +
                                  (desc ? desc->full_name() : std::string("a scalar")) +
                                  " has no field named \"" + parts[i] + "\"");
    }
    bool last = i + 1 == parts.size();
    if (field->is_repeated()) {
      return InvalidArgumentError("--set " + assignment + ": \"" + parts[i] +
                                  "\" is a list; edit the recipe file to change it");
    }
    if (!last) {
      if (field->type() != pb::FieldDescriptor::TYPE_MESSAGE) {
        return InvalidArgumentError("--set " + assignment + ": \"" + parts[i] + "\" is not a message");
      }
      open += parts[i] + " { ";
      close += " }";
      desc = field->message_type();
      continue;
    }
    if (field->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
      return InvalidArgumentError("--set " + assignment + ": \"" + parts[i] + "\" is a message; set one of its fields");
    }
    if (field->type() == pb::FieldDescriptor::TYPE_STRING &&
        !(value.size() >= 2 && value.front() == '"' && value.back() == '"')) {
      value = "\"" + pb::CEscape(value) + "\"";
    }
    return open + parts[i] + ": " + value + close;
  }
  return InvalidArgumentError("--set " + assignment + ": empty field path");
}

Activation ToActivation(config::Activation a) {
  switch (a) {
    case config::RELU: return Activation::kRelu;
    case config::TANH: return Activation::kTanh;
    case config::SIGMOID: return Activation::kSigmoid;
    case config::GELU: return Activation::kGelu;
    default: return Activation::kIdentity;
  }
}

// Activations fused into the Dense/Conv2D epilogue (softmax goes to the loss; GELU
// needs its input for backward and stays a separate layer).
bool Fusable(config::Activation a) { return a == config::RELU || a == config::TANH || a == config::SIGMOID; }

ParamInit ToInit(config::Init init) {
  switch (init) {
    case config::HE_UNIFORM: return ParamInit::kHeUniform;
    case config::HE_NORMAL: return ParamInit::kHeNormal;
    default: return ParamInit::kGlorotUniform;
  }
}

// [k] -> (k, k); [a, b] -> (a, b); [] -> (fallback, fallback).
Status Pair(const pb::RepeatedField<int64_t>& v, int64_t fallback, const char* what, int64_t* a,
            int64_t* b) {
  if (v.size() == 0) {
    *a = *b = fallback;
  } else if (v.size() == 1) {
    *a = *b = v[0];
  } else if (v.size() == 2) {
    *a = v[0];
    *b = v[1];
  } else {
    return InvalidArgumentError(std::string(what) + " takes 1 or 2 values, got " + std::to_string(v.size()));
  }
  if (*a <= 0 || *b <= 0) return InvalidArgumentError(std::string(what) + " must be > 0");
  return Status::Ok();
}

// Keras "same" padding with symmetric zero padding: total padding must be even.
Status SamePadding(int64_t in, int64_t k, int64_t stride, int64_t* pad) {
  int64_t out = (in + stride - 1) / stride;
  int64_t total = std::max<int64_t>((out - 1) * stride + k - in, 0);
  if (total % 2 != 0) {
    return InvalidArgumentError("padding SAME needs an even total padding; kernel " + std::to_string(k) +
                                " stride " + std::to_string(stride) + " on size " + std::to_string(in) +
                                " needs " + std::to_string(total) + " (use VALID or an odd kernel)");
  }
  *pad = total / 2;
  return Status::Ok();
}

// Recurrent and attention layers need a (T, features) input; an image-shaped input
// gets a hint to reshape it into rows-as-time-steps.
Status NeedSequence(const std::string& what, const Shape& shape) {
  if (shape.size() == 2) return Status::Ok();
  std::string msg = what + " needs a (T, features) input (time steps x features per step), got " +
                    ShapeToString(shape);
  if (shape.size() >= 3) {
    int64_t rest = NumElements(shape) / shape[0];
    msg += "; to read it as " + std::to_string(shape[0]) + " steps of " + std::to_string(rest) +
           " features add `layers { reshape { shape: [" + std::to_string(shape[0]) + ", " + std::to_string(rest) +
           "] } }` before this layer";
  } else if (shape.size() == 1) {
    msg += "; a flat input has no time axis (reshape it to [T, F], or use return_sequences: true on an "
           "earlier recurrent layer)";
  }
  return InvalidArgumentError(msg);
}

// Checks of a sequence layer's own fields (everything that does not depend on the
// input shape); "" when fine. Shape checks happen in BuildModel.
std::string CheckSequenceLayerFields(const config::Layer& l) {
  auto positive = [](const char* field, int64_t v) {
    return v > 0 ? std::string() : std::string(field) + " must be > 0 (got " + std::to_string(v) + ")";
  };
  auto non_negative = [](const char* field, int64_t v, const char* zero_means) {
    return v >= 0 ? std::string()
                  : std::string(field) + " must be >= 0 (got " + std::to_string(v) + "; 0 = " + zero_means + ")";
  };
  switch (l.kind_case()) {
    case config::Layer::kReshape: {
      const auto& shape = l.reshape().shape();
      if (shape.empty()) return "reshape.shape is empty (e.g. reshape { shape: [28, 28] })";
      int inferred = 0;
      for (int64_t v : shape) {
        if (v == -1) ++inferred;
        if (v == 0 || v < -1) return "reshape.shape entries must be > 0 or -1 (got " + std::to_string(v) + ")";
      }
      if (inferred > 1) return "reshape.shape may have at most one -1 (got " + std::to_string(inferred) + ")";
      return "";
    }
    case config::Layer::kEmbedding: {
      std::string e = positive("embedding.dim", l.embedding().dim());
      return e.empty() ? non_negative("embedding.vocab_size", l.embedding().vocab_size(), "from the dataset") : e;
    }
    case config::Layer::kLstm: return positive("lstm.units", l.lstm().units());
    case config::Layer::kGru: return positive("gru.units", l.gru().units());
    case config::Layer::kLayerNorm:
      if (l.layer_norm().has_epsilon() && !(l.layer_norm().epsilon() > 0)) {
        return "layer_norm.epsilon must be > 0 (got " + std::to_string(l.layer_norm().epsilon()) + ")";
      }
      return "";
    case config::Layer::kPositionalEmbedding:
      return non_negative("positional_embedding.max_length", l.positional_embedding().max_length(),
                          "the input's length");
    case config::Layer::kSelfAttention: return positive("self_attention.heads", l.self_attention().heads());
    case config::Layer::kTransformerBlock: {
      std::string e = positive("transformer_block.heads", l.transformer_block().heads());
      return e.empty() ? non_negative("transformer_block.mlp_hidden", l.transformer_block().mlp_hidden(), "4 x dim")
                       : e;
    }
    case config::Layer::kTimeDistributedDense:
      return non_negative("time_distributed_dense.units", l.time_distributed_dense().units(),
                          "the dataset's vocabulary");
    default: return "";
  }
}

// Per-layer checks of one model of the recipe; errors start with "FIELD.layers[i]".
Status ValidateLayers(const config::Model& model, const std::string& field, bool softmax_allowed_last) {
  if (model.layers_size() == 0) return InvalidArgumentError(field + ".layers: the model has no layers");
  for (int i = 0; i < model.layers_size(); ++i) {
    const auto& l = model.layers(i);
    const std::string where = field + ".layers[" + std::to_string(i) + "]: ";
    bool last = i + 1 == model.layers_size();
    config::Activation act = config::LINEAR;
    if (l.has_dense()) act = l.dense().activation();
    if (l.has_conv2d()) act = l.conv2d().activation();
    if (l.has_activation()) act = l.activation().function();
    if (l.has_time_distributed_dense()) act = l.time_distributed_dense().activation();
    if (act == config::SOFTMAX && !(last && softmax_allowed_last)) {
      return InvalidArgumentError(where + "softmax is only allowed on the last layer with "
                                          "SPARSE_CATEGORICAL_CROSSENTROPY (it is fused into the loss)");
    }
    if (l.kind_case() == config::Layer::KIND_NOT_SET) {
      return InvalidArgumentError(where + "empty layer (set dense, conv2d, ...)");
    }
    std::string field_error = CheckSequenceLayerFields(l);
    if (!field_error.empty()) return InvalidArgumentError(where + field_error);
  }
  return Status::Ok();
}

Status ValidateGan(const config::Recipe& r) {
  const config::Gan& g = r.gan();
  if (r.model().layers_size() > 0) {
    return InvalidArgumentError("model: a GAN recipe describes its models in gan.generator and gan.discriminator");
  }
  if (r.has_optimizer()) {
    return InvalidArgumentError("optimizer: a GAN recipe sets gan.generator_optimizer and "
                                "gan.discriminator_optimizer instead");
  }
  if (r.data().dataset() != "fashion_mnist") {
    return InvalidArgumentError("data.dataset: a GAN trains on images (fashion_mnist), not \"" + r.data().dataset() +
                                "\"");
  }
  if (r.distributed().gradient_accumulation_steps() > 1) {
    return InvalidArgumentError("distributed.gradient_accumulation_steps: not supported for GAN recipes "
                                "(each step updates two models in turn)");
  }
  if (g.noise_dim() <= 0) return InvalidArgumentError("gan.noise_dim must be > 0");
  if (g.quality_samples() < 0) return InvalidArgumentError("gan.quality_samples must be >= 0");
  if (g.grid_rows() < 0 || g.grid_rows() > 100) return InvalidArgumentError("gan.grid_rows must be in [0, 100]");
  if (!(g.real_label() > 0 && g.real_label() <= 1)) return InvalidArgumentError("gan.real_label must be in (0, 1]");
  LS_RETURN_IF_ERROR(ValidateLayers(g.generator(), "gan.generator", false));
  LS_RETURN_IF_ERROR(ValidateLayers(g.discriminator(), "gan.discriminator", false));
  for (const char* role : {"generator", "discriminator"}) {
    const std::string field = std::string("gan.") + role + "_optimizer";
    const config::Optimizer& o = std::string(role) == "generator" ? g.generator_optimizer() : g.discriminator_optimizer();
    if (o.clip_global_norm() < 0) return InvalidArgumentError(field + ".clip_global_norm must be >= 0");
    LS_RETURN_IF_ERROR(ValidateSchedule(ToScheduleConfig(r, o, 1)).WithContext(field + "/schedule"));
    LS_RETURN_IF_ERROR(Optimizer::Validate(ToOptimizerConfig(o)).WithContext(field));
  }
  return Status::Ok();
}

Status ValidateRecipe(const config::Recipe& r) {
  const auto& t = r.training();
  if (t.global_batch_size() <= 0) {
    return InvalidArgumentError("training.global_batch_size must be > 0 (got " +
                                std::to_string(t.global_batch_size()) + ")");
  }
  if (t.epochs() <= 0 && t.max_steps() <= 0) {
    return InvalidArgumentError("training.epochs or training.max_steps must be > 0");
  }
  if (t.epochs() < 0 || t.max_steps() < 0 || t.eval_batch_size() < 0 || t.threads() < 0) {
    return InvalidArgumentError("training: epochs, max_steps, eval_batch_size and threads must be >= 0");
  }
  const std::string& dataset = r.data().dataset();
  if (!dataset.empty() && dataset != "fashion_mnist" && dataset != "text") {
    return InvalidArgumentError("data.dataset: unknown dataset \"" + dataset + "\" (expected fashion_mnist or text)");
  }
  if (dataset == "text" && r.data().sequence_length() <= 0) {
    return InvalidArgumentError("data.sequence_length must be > 0 for the text dataset (characters per window)");
  }
  if (r.data().has_validation_fraction() &&
      (r.data().validation_fraction() < 0 || r.data().validation_fraction() >= 1)) {
    return InvalidArgumentError("data.validation_fraction must be in [0, 1)");
  }
  const auto& d = r.distributed();
  if (d.zero_stage() != 0 && d.zero_stage() != 1) {
    return InvalidArgumentError("distributed.zero_stage must be 0 or 1 (got " + std::to_string(d.zero_stage()) + ")");
  }
  if (d.gradient_accumulation_steps() < 0) {
    return InvalidArgumentError("distributed.gradient_accumulation_steps must be >= 0");
  }
  if (d.has_bucket_size_mb() && !(d.bucket_size_mb() > 0)) {
    return InvalidArgumentError("distributed.bucket_size_mb must be > 0");
  }
  if (d.has_collective_timeout_seconds() && !(d.collective_timeout_seconds() > 0)) {
    return InvalidArgumentError("distributed.collective_timeout_seconds must be > 0");
  }
  if (r.has_gan()) return ValidateGan(r);
  if (r.optimizer().clip_global_norm() < 0) {
    return InvalidArgumentError("optimizer.clip_global_norm must be >= 0");
  }
  LS_RETURN_IF_ERROR(ValidateSchedule(ToScheduleConfig(r, 1)).WithContext("optimizer/schedule"));
  LS_RETURN_IF_ERROR(Optimizer::Validate(ToOptimizerConfig(r.optimizer())).WithContext("optimizer"));
  return ValidateLayers(r.model(), "model", r.loss() == config::SPARSE_CATEGORICAL_CROSSENTROPY);
}

// The parse-tree node of a message field path ("model", "gan.generator"); null when absent.
pb::TextFormat::ParseInfoTree* TreeFor(pb::TextFormat::ParseInfoTree* root, const std::string& field_path) {
  const pb::Descriptor* desc = config::Recipe::descriptor();
  pb::TextFormat::ParseInfoTree* tree = root;
  std::stringstream parts(field_path);
  for (std::string part; tree != nullptr && std::getline(parts, part, '.');) {
    const pb::FieldDescriptor* f = desc->FindFieldByName(part);
    if (f == nullptr || f->message_type() == nullptr) return nullptr;
    tree = tree->GetTreeForNested(f, -1);
    desc = f->message_type();
  }
  return tree;
}

// 1-based line of each layers entry of the model at `field_path` (0 = unknown).
std::vector<int> LayerLines(pb::TextFormat::ParseInfoTree* root, const std::string& field_path, int layers) {
  const pb::FieldDescriptor* layers_f = config::Model::descriptor()->FindFieldByName("layers");
  pb::TextFormat::ParseInfoTree* tree = TreeFor(root, field_path);
  std::vector<int> lines;
  for (int i = 0; i < layers; ++i) {
    int line = tree ? tree->GetLocation(layers_f, i).line : -1;
    lines.push_back(line >= 0 ? line + 1 : 0);
  }
  return lines;
}

const config::Model& ModelAt(const config::Recipe& r, const std::string& field) {
  if (field == "gan.generator") return r.gan().generator();
  if (field == "gan.discriminator") return r.gan().discriminator();
  return r.model();
}

const char* const kModelFields[] = {"model", "gan.generator", "gan.discriminator"};

void FillDefaults(config::Recipe* r) {
  if (r->data().dataset().empty()) r->mutable_data()->set_dataset("fashion_mnist");
  if (!r->data().has_validation_samples()) r->mutable_data()->set_validation_samples(5000);
  if (r->training().eval_batch_size() == 0) r->mutable_training()->set_eval_batch_size(256);
  if (!r->training().has_drop_last()) r->mutable_training()->set_drop_last(true);
  auto* d = r->mutable_distributed();
  if (!d->has_bucket_size_mb()) d->set_bucket_size_mb(25);
  if (d->gradient_accumulation_steps() == 0) d->set_gradient_accumulation_steps(1);
  if (!d->has_collective_timeout_seconds()) d->set_collective_timeout_seconds(300);
  auto* c = r->mutable_checkpoint();
  if (c->keep_last() == 0) c->set_keep_last(3);
  if (!c->has_async()) c->set_async(true);
  if (!c->has_at_end()) c->set_at_end(true);
  if (!c->has_timeout_seconds()) c->set_timeout_seconds(300);
  if (r->has_gan()) {
    auto* g = r->mutable_gan();
    if (g->noise_dim() == 0) g->set_noise_dim(100);
    if (g->quality_samples() == 0) g->set_quality_samples(1000);
    if (!g->has_grid_rows()) g->set_grid_rows(10);
    if (!g->has_real_label()) g->set_real_label(1.0f);
  }
}

}  // namespace

Result<LoadedRecipe> ParseRecipe(const std::string& text, const std::string& name,
                                 const std::vector<std::string>& overrides) {
  LoadedRecipe out;
  out.path = name;
  pb::TextFormat::Parser parser;
  FirstParseError errors(name);
  parser.RecordErrorsTo(&errors);
  pb::TextFormat::ParseInfoTree info;
  parser.WriteLocationsTo(&info);
  if (!parser.ParseFromString(text, &out.recipe)) {
    return InvalidArgumentError(errors.first().empty() ? name + ": cannot parse recipe" : errors.first());
  }
  for (const std::string& o : overrides) {
    LS_ASSIGN_OR_RETURN(std::string snippet, OverrideToText(o));
    pb::TextFormat::Parser override_parser;
    FirstParseError override_errors("--set " + o);
    override_parser.RecordErrorsTo(&override_errors);
    if (!override_parser.MergeFromString(snippet, &out.recipe)) return InvalidArgumentError(override_errors.first());
  }
  FillDefaults(&out.recipe);
  Status valid = ValidateRecipe(out.recipe);
  if (!valid.ok()) {
    // Point at the layer's line when the message is about a layer ("gan.generator.layers[2]: ...").
    const std::string& m = valid.message();
    size_t at = m.find(".layers[");
    if (at != std::string::npos) {
      const std::string field = m.substr(0, at);
      const int index = std::atoi(m.c_str() + at + 8);
      const pb::FieldDescriptor* layers_f = config::Model::descriptor()->FindFieldByName("layers");
      pb::TextFormat::ParseInfoTree* tree = TreeFor(&info, field);
      if (tree) {
        pb::TextFormat::ParseLocation loc = tree->GetLocation(layers_f, index);
        if (loc.line >= 0) {
          return InvalidArgumentError(name + ":" + std::to_string(loc.line + 1) + ":" +
                                      std::to_string(loc.column + 1) + ": " + m);
        }
      }
    }
    return InvalidArgumentError(name + ": " + m);
  }
  pb::TextFormat::PrintToString(out.recipe, &out.text);
  out.layer_lines.clear();
  for (const char* field : kModelFields) {
    out.layer_lines[field] = LayerLines(&info, field, ModelAt(out.recipe, field).layers_size());
  }
  return out;
}

Result<LoadedRecipe> LoadRecipe(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("recipe " + path + ": cannot open (" + std::strerror(errno) + ")");
  std::stringstream buf;
  buf << in.rdbuf();
  return ParseRecipe(buf.str(), path, overrides);
}

Result<std::unique_ptr<Model>> BuildModel(const LoadedRecipe& loaded, Backend* backend,
                                          const Shape& input_shape, int64_t dataset_vocab_size) {
  return BuildModel(loaded, "model", backend, input_shape, dataset_vocab_size);
}

Result<std::unique_ptr<Model>> BuildModel(const LoadedRecipe& loaded, const std::string& field, Backend* backend,
                                          const Shape& input_shape, int64_t dataset_vocab_size) {
  const config::Recipe& r = loaded.recipe;
  const config::Model& spec = ModelAt(r, field);
  std::vector<std::unique_ptr<Layer>> layers;
  std::vector<std::string> labels;
  ParamInit init = ToInit(spec.kernel_init());
  Shape shape = input_shape;  // tracked to resolve SAME padding
  auto lines = loaded.layer_lines.find(field);
  auto label = [&](int i) {
    int line = lines != loaded.layer_lines.end() && i < static_cast<int>(lines->second.size())
                   ? lines->second[static_cast<size_t>(i)]
                   : 0;
    return loaded.path + (line > 0 ? ":" + std::to_string(line) : std::string()) + ": " + field + ".layers[" +
           std::to_string(i) + "]";
  };
  auto add = [&](std::unique_ptr<Layer> layer, int i) -> Status {
    auto out = layer->Build(shape);
    if (!out.ok()) return InvalidArgumentError(label(i) + " (" + layer->Kind() + "): " + out.status().message());
    shape = *out;
    layers.push_back(std::move(layer));
    labels.push_back(label(i));
    return Status::Ok();
  };
  int n = spec.layers_size();
  for (int i = 0; i < n; ++i) {
    const config::Layer& l = spec.layers(i);
    auto fail = [&](const Status& s) { return InvalidArgumentError(label(i) + ": " + s.message()); };
    config::Activation act = config::LINEAR;
    switch (l.kind_case()) {
      case config::Layer::kDense: {
        act = l.dense().activation();
        Activation fused = Fusable(act) ? ToActivation(act) : Activation::kIdentity;
        LS_RETURN_IF_ERROR(add(MakeDense(l.dense().units(), !l.dense().no_bias(), init, fused), i));
        if (Fusable(act)) act = config::LINEAR;
        break;
      }
      case config::Layer::kConv2D: {
        const auto& c = l.conv2d();
        Conv2dOptions o;
        o.filters = c.filters();
        o.use_bias = !c.no_bias();
        o.init = init;
        Status s = Pair(c.kernel_size(), 3, "kernel_size", &o.kernel_h, &o.kernel_w);
        if (s.ok()) s = Pair(c.strides(), 1, "strides", &o.stride_h, &o.stride_w);
        if (s.ok() && c.padding() == config::SAME) {
          if (shape.size() != 3) s = InvalidArgumentError("conv2d expects a (height, width, channels) input");
          if (s.ok()) s = SamePadding(shape[0], o.kernel_h, o.stride_h, &o.pad_h);
          if (s.ok()) s = SamePadding(shape[1], o.kernel_w, o.stride_w, &o.pad_w);
        }
        if (!s.ok()) return fail(s);
        act = c.activation();
        if (Fusable(act)) {
          o.activation = ToActivation(act);
          act = config::LINEAR;
        }
        LS_RETURN_IF_ERROR(add(MakeConv2d(o), i));
        break;
      }
      case config::Layer::kMaxpool2D: {
        const auto& p = l.maxpool2d();
        Pool2dOptions o;
        Status s = Pair(p.pool_size(), 2, "pool_size", &o.window_h, &o.window_w);
        if (s.ok() && p.strides_size() == 0) {
          o.stride_h = o.window_h;  // Keras: strides default to the pool size
          o.stride_w = o.window_w;
        } else if (s.ok()) {
          s = Pair(p.strides(), 1, "strides", &o.stride_h, &o.stride_w);
        }
        if (s.ok() && p.padding() == config::SAME) {
          if (shape.size() != 3) s = InvalidArgumentError("maxpool2d expects a (height, width, channels) input");
          if (s.ok()) s = SamePadding(shape[0], o.window_h, o.stride_h, &o.pad_h);
          if (s.ok()) s = SamePadding(shape[1], o.window_w, o.stride_w, &o.pad_w);
        }
        if (!s.ok()) return fail(s);
        LS_RETURN_IF_ERROR(add(MakeMaxPool2d(o), i));
        break;
      }
      case config::Layer::kFlatten: LS_RETURN_IF_ERROR(add(MakeFlatten(), i)); break;
      case config::Layer::kActivation: act = l.activation().function(); break;
      case config::Layer::kDropout: LS_RETURN_IF_ERROR(add(MakeDropout(l.dropout().rate()), i)); break;
      case config::Layer::kReshape: {
        Shape target(l.reshape().shape().begin(), l.reshape().shape().end());
        LS_RETURN_IF_ERROR(add(MakeReshape(target), i));
        break;
      }
      case config::Layer::kEmbedding: {
        int64_t vocab = l.embedding().vocab_size();
        if (vocab == 0) {
          // Hook: text datasets pass their vocabulary size to BuildModel.
          if (dataset_vocab_size <= 0) {
            return fail(InvalidArgumentError(
                "embedding.vocab_size is 0 (= the dataset's vocabulary), but dataset \"" + r.data().dataset() +
                "\" has no vocabulary; set embedding { vocab_size: N } or use a text dataset"));
          }
          vocab = dataset_vocab_size;
        }
        LS_RETURN_IF_ERROR(add(MakeEmbedding(vocab, l.embedding().dim()), i));
        break;
      }
      case config::Layer::kLstm: {
        Status s = NeedSequence("lstm", shape);
        if (!s.ok()) return fail(s);
        LS_RETURN_IF_ERROR(add(MakeLstm(l.lstm().units(), l.lstm().return_sequences()), i));
        break;
      }
      case config::Layer::kGru: {
        Status s = NeedSequence("gru", shape);
        if (!s.ok()) return fail(s);
        LS_RETURN_IF_ERROR(add(MakeGru(l.gru().units(), l.gru().return_sequences()), i));
        break;
      }
      case config::Layer::kLayerNorm: {
        float eps = l.layer_norm().has_epsilon() ? l.layer_norm().epsilon() : 1e-5f;
        LS_RETURN_IF_ERROR(add(MakeLayerNorm(eps), i));
        break;
      }
      case config::Layer::kPositionalEmbedding: {
        Status s = NeedSequence("positional_embedding", shape);
        if (!s.ok()) return fail(s);
        int64_t max_length = l.positional_embedding().max_length();
        if (max_length == 0) max_length = shape[0];
        if (max_length < shape[0]) {
          return fail(InvalidArgumentError("positional_embedding.max_length " + std::to_string(max_length) +
                                           " is shorter than the input sequence " + ShapeToString(shape)));
        }
        LS_RETURN_IF_ERROR(add(MakePositionalEmbedding(max_length, shape[1]), i));
        break;
      }
      case config::Layer::kSelfAttention:
      case config::Layer::kTransformerBlock: {
        const bool block = l.kind_case() == config::Layer::kTransformerBlock;
        const char* what = block ? "transformer_block" : "self_attention";
        Status s = NeedSequence(what, shape);
        if (!s.ok()) return fail(s);
        int64_t heads = block ? l.transformer_block().heads() : l.self_attention().heads();
        int64_t dim = shape[1];
        if (heads <= 0 || dim % heads != 0) {
          return fail(InvalidArgumentError(std::string(what) + ".heads " + std::to_string(heads) +
                                           " must divide the model dim " + std::to_string(dim) + " (input " +
                                           ShapeToString(shape) + ")"));
        }
        if (block) {
          int64_t hidden = l.transformer_block().mlp_hidden() > 0 ? l.transformer_block().mlp_hidden() : 4 * dim;
          LS_RETURN_IF_ERROR(add(MakeTransformerBlock(heads, dim, hidden), i));
        } else {
          LS_RETURN_IF_ERROR(add(MakeCausalSelfAttention(heads, dim), i));
        }
        break;
      }
      case config::Layer::kTimeDistributedDense: {
        const auto& d = l.time_distributed_dense();
        if (shape.size() < 2) {
          return fail(InvalidArgumentError("time_distributed_dense needs a (T, features) input, got " +
                                           ShapeToString(shape) + "; use dense for a flat input"));
        }
        act = d.activation();
        Activation fused = Fusable(act) ? ToActivation(act) : Activation::kIdentity;
        int64_t units = d.units();
        if (units == 0) {  // a language model's output layer: one logit per character
          if (dataset_vocab_size <= 0) {
            return fail(InvalidArgumentError("time_distributed_dense.units is 0 (= the dataset's vocabulary), "
                                             "but this dataset has no vocabulary; set units"));
          }
          units = dataset_vocab_size;
        }
        LS_RETURN_IF_ERROR(add(MakeTimeDistributedDense(units, !d.no_bias(), fused), i));
        if (Fusable(act)) act = config::LINEAR;
        break;
      }
      case config::Layer::KIND_NOT_SET: return fail(InvalidArgumentError("empty layer"));
    }
    if (act != config::LINEAR && act != config::SOFTMAX) {
      LS_RETURN_IF_ERROR(add(MakeActivation(ToActivation(act)), i));
    }
  }
  if (field == "gan.discriminator" && shape != Shape{1}) {
    return InvalidArgumentError(loaded.path + ": gan.discriminator must output one logit per image, shape (1); it "
                                "outputs " + ShapeToString(shape));
  }
  auto create = [&]() -> Result<std::unique_ptr<Model>> {
    LS_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                        Model::Create(backend, input_shape, std::move(layers), std::move(labels)));
    if (r.training().precision() == config::BF16) model->set_activation_storage(ActivationStorage::kBf16);
    return model;
  };
  if (field != "model") return create();
  // A (T, vocab) output is a language model: softmax cross-entropy per time step.
  Status loss_ok = shape.size() == 2 && ToLossKind(r.loss()) == LossKind::kSoftmaxCrossEntropy
                       ? ValidateSequenceLoss(shape)
                       : ValidateLoss(ToLossKind(r.loss()), shape);
  LS_RETURN_IF_ERROR(loss_ok.WithContext(loaded.path + ": loss"));
  return create();
}

GemmPrecision ToGemmPrecision(const config::Recipe& r) {
  const config::Precision p = r.training().precision();
  return p == config::BF16_GEMM || p == config::BF16 ? GemmPrecision::kBf16Inputs : GemmPrecision::kFp32;
}

OptimizerConfig ToOptimizerConfig(const config::Optimizer& o) {
  OptimizerConfig c;
  switch (o.kind()) {
    case config::SGD: c.kind = OptimizerKind::kSgd; break;
    case config::ADAMW: c.kind = OptimizerKind::kAdamW; break;
    default: c.kind = OptimizerKind::kAdam; break;
  }
  c.momentum = o.momentum();
  c.nesterov = o.nesterov();
  if (o.has_beta1()) c.beta1 = o.beta1();
  if (o.has_beta2()) c.beta2 = o.beta2();
  if (o.has_epsilon()) c.epsilon = o.epsilon();
  c.weight_decay = o.weight_decay();
  return c;
}

ScheduleConfig ToScheduleConfig(const config::Recipe& r, int64_t total_training_steps) {
  return ToScheduleConfig(r, r.optimizer(), total_training_steps);
}

ScheduleConfig ToScheduleConfig(const config::Recipe& r, const config::Optimizer& optimizer,
                                int64_t total_training_steps) {
  ScheduleConfig s;
  const auto& sc = r.schedule();
  switch (sc.kind()) {
    case config::STEP_DECAY: s.kind = ScheduleKind::kStepDecay; break;
    case config::COSINE: s.kind = ScheduleKind::kCosine; break;
    default: s.kind = ScheduleKind::kConstant; break;
  }
  s.base_lr = optimizer.learning_rate();
  s.warmup_steps = sc.warmup_steps();
  s.decay_steps = sc.decay_steps();
  s.gamma = sc.gamma();
  s.min_lr = sc.min_lr();
  s.total_steps = sc.total_steps() > 0 ? sc.total_steps()
                                       : std::max<int64_t>(1, total_training_steps - sc.warmup_steps());
  return s;
}

LossKind ToLossKind(config::LossFunction loss) {
  switch (loss) {
    case config::MEAN_SQUARED_ERROR: return LossKind::kMeanSquaredError;
    case config::BINARY_CROSSENTROPY_WITH_LOGITS: return LossKind::kBinaryCrossEntropyWithLogits;
    default: return LossKind::kSoftmaxCrossEntropy;
  }
}

}  // namespace lockstep
