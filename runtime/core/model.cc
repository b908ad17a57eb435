#include "runtime/core/model.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "kernels/cpu/dropout.h"

namespace lockstep {

Result<std::unique_ptr<Model>> Model::Create(Backend* backend, Shape input_shape,
                                             std::vector<std::unique_ptr<Layer>> layers,
                                             std::vector<std::string> labels) {
  if (layers.empty()) return InvalidArgumentError("a model needs at least one layer");
  std::unique_ptr<Model> model(new Model());
  model->backend_ = backend;
  model->input_shape_ = input_shape;
  if (labels.size() != layers.size()) {
    labels.clear();
    for (size_t i = 0; i < layers.size(); ++i) labels.push_back("layer " + std::to_string(i));
  }
  Shape shape = input_shape;
  for (size_t i = 0; i < layers.size(); ++i) {
    layers[i]->set_index(static_cast<int>(i));
    auto out = layers[i]->Build(shape);
    if (!out.ok()) {
      return InvalidArgumentError(labels[i] + " (" + layers[i]->Kind() + "): " +
                                  out.status().message());
    }
    for (int64_t d : *out) {
      if (d <= 0) {
        return InvalidArgumentError(labels[i] + " (" + layers[i]->Kind() + ") would output shape " +
                                    ShapeToString(*out) + " from input " + ShapeToString(shape));
      }
    }
    shape = *out;
  }
  model->layers_ = std::move(layers);
  model->labels_ = std::move(labels);
  model->transient_ = std::make_unique<TransientArena>(backend);

  // Arena layout: reverse layer order, parameters of a layer in spec order.
  int n = static_cast<int>(model->layers_.size());
  model->layer_grad_end_.assign(static_cast<size_t>(n), 0);
  int64_t offset = 0;
  for (int i = n - 1; i >= 0; --i) {
    const Layer& layer = *model->layers_[static_cast<size_t>(i)];
    for (const ParamSpec& spec : layer.ParamSpecs()) {
      ParamInfo info;
      info.name = "layer" + std::to_string(i) + "." + layer.Kind() + "." + spec.name;
      info.layer = i;
      info.shape = spec.shape;
      info.offset = offset;
      info.spec = spec;
      offset += NumElements(spec.shape);
      model->param_infos_.push_back(info);
    }
    model->layer_grad_end_[static_cast<size_t>(i)] = offset;
  }
  model->params_ = Tensor::Zeros(*backend, {offset}, DType::kFloat32);
  model->grads_ = Tensor::Zeros(*backend, {offset}, DType::kFloat32);
  for (int i = 0; i < n; ++i) {
    std::vector<Tensor> p, g;
    for (const ParamInfo& info : model->param_infos_) {
      if (info.layer != i) continue;
      p.push_back(model->params_.Subview(info.offset, info.shape));
      g.push_back(model->grads_.Subview(info.offset, info.shape));
    }
    model->layers_[static_cast<size_t>(i)]->BindParams(p, g);
  }
  return model;
}

void Model::InitializeParameters(uint64_t seed) {
  std::vector<float> host(static_cast<size_t>(param_count()), 0.0f);
  const std::array<uint32_t, 2> key = {static_cast<uint32_t>(seed),
                                       static_cast<uint32_t>(seed >> 32)};
  for (size_t p = 0; p < param_infos_.size(); ++p) {
    const ParamInfo& info = param_infos_[p];
    const ParamSpec& spec = info.spec;
    int64_t n = NumElements(info.shape);
    float* out = host.data() + info.offset;
    if (spec.init == ParamInit::kZeros) continue;
    double fan_in = static_cast<double>(spec.fan_in), fan_out = static_cast<double>(spec.fan_out);
    double limit = 0;
    switch (spec.init) {
      case ParamInit::kGlorotUniform: limit = std::sqrt(6.0 / (fan_in + fan_out)); break;
      case ParamInit::kHeUniform: limit = std::sqrt(6.0 / fan_in); break;
      case ParamInit::kHeNormal: limit = std::sqrt(2.0 / fan_in); break;  // stddev
      case ParamInit::kZeros: break;
    }
    // Counter = (block of 4 elements, parameter index); 0x1417 tags "initialisation"
    // so these streams never coincide with dropout streams.
    for (int64_t i = 0; i < n; i += 4) {
      auto words = kernels::cpu::Philox4x32(
          {static_cast<uint32_t>(i / 4), static_cast<uint32_t>(p), 0u, 0x1417u}, key);
      for (int64_t j = 0; j < 4 && i + j < n; ++j) {
        float u = kernels::cpu::UniformFromBits(words[static_cast<size_t>(j)]);
        if (spec.init == ParamInit::kHeNormal) {
          // Box-Muller on pairs; the second word of each pair supplies the angle.
          float u1 = kernels::cpu::UniformFromBits(words[static_cast<size_t>(j & ~1)]);
          float u2 = kernels::cpu::UniformFromBits(words[static_cast<size_t>(j | 1)]);
          double r = std::sqrt(-2.0 * std::log(1.0 - u1));
          double theta = 2.0 * M_PI * u2;
          out[i + j] = static_cast<float>(limit * r * ((j & 1) ? std::sin(theta) : std::cos(theta)));
        } else {
          out[i + j] = static_cast<float>((2.0 * u - 1.0) * limit);
        }
      }
    }
  }
  backend_->CopyFromHost(params_.raw(), host.data(), host.size() * sizeof(float));
}

void Model::set_activation_storage(ActivationStorage storage) {
  if (storage == storage_) return;
  storage_ = storage;
  for (auto& layer : layers_) layer->SetActivationStorage(storage);
  capacity_ = 0;  // re-made at the next Forward
  activations_.clear();
  work_a_ = work_b_ = Tensor();
}

void Model::ChooseActivationPrecision() {
  const size_t n = layers_.size();
  rounded_.assign(n, false);
  stored_bf16_.assign(n, false);
  if (storage_ == ActivationStorage::kFp32) return;
  // exact_input[i]: layer i's input must be exact (token ids), directly or through
  // layers that only copy values (flatten, reshape) to one that needs it.
  std::vector<bool> exact_input(n, false);
  for (size_t i = n; i-- > 0;) {
    exact_input[i] = layers_[i]->NeedsExactInput() ||
                     (layers_[i]->CopiesValues() && i + 1 < n && exact_input[i + 1]);
  }
  std::vector<int64_t> sizes;  // per-sample elements of each rounded output
  for (size_t i = 0; i + 1 < n; ++i) {
    rounded_[i] = !exact_input[i + 1];
    if (rounded_[i]) sizes.push_back(NumElements(layers_[i]->output_shape()));
  }
  // Store in bf16 every rounded output of at most `limit` elements, for the limit that
  // minimises 2 bytes each + 4 for the larger ones + two fp32 working buffers of `limit`.
  int64_t best_limit = 0, best_bytes = 0;
  for (int64_t s : sizes) best_bytes += 4 * s;  // limit 0: all fp32
  if (storage_ == ActivationStorage::kBf16Everywhere) {
    best_limit = sizes.empty() ? 0 : *std::max_element(sizes.begin(), sizes.end());
  } else {
    for (int64_t limit : sizes) {
      int64_t bytes = 2 * 4 * limit;
      for (int64_t s : sizes) bytes += s <= limit ? 2 * s : 4 * s;
      if (bytes < best_bytes || (bytes == best_bytes && limit > best_limit)) {
        best_bytes = bytes;
        best_limit = limit;
      }
    }
  }
  for (size_t i = 0; i + 1 < n; ++i) {
    stored_bf16_[i] = rounded_[i] && NumElements(layers_[i]->output_shape()) <= best_limit;
  }
}

void Model::EnsureCapacity(int64_t batch) {
  if (batch <= capacity_) return;
  capacity_ = batch;
  ChooseActivationPrecision();
  activations_.clear();
  int64_t largest = NumElements(input_shape_), largest_bf16 = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Shape out = layers_[i]->output_shape();
    largest = std::max(largest, NumElements(out));
    if (stored_bf16_[i]) largest_bf16 = std::max(largest_bf16, NumElements(out));
    out.insert(out.begin(), batch);
    activations_.push_back(Tensor::Empty(*backend_, out, stored_bf16_[i] ? DType::kBFloat16 : DType::kFloat32));
  }
  grad_a_ = Tensor::Empty(*backend_, {batch * largest}, DType::kFloat32);
  grad_b_ = Tensor::Empty(*backend_, {batch * largest}, DType::kFloat32);
  work_a_ = Tensor::Empty(*backend_, {batch * largest_bf16}, DType::kFloat32);
  work_b_ = Tensor::Empty(*backend_, {batch * largest_bf16}, DType::kFloat32);
}

size_t Model::activation_bytes() const {
  size_t bytes = grad_a_.nbytes() + grad_b_.nbytes() + work_a_.nbytes() + work_b_.nbytes();
  for (const Tensor& a : activations_) bytes += a.nbytes();
  return bytes;
}

Tensor Model::Forward(const StepContext& step, const Tensor& x) {
  StepContext ctx = step;
  ctx.transient = transient_.get();
  LS_CHECK_GE(x.shape().size(), 1u);
  int64_t batch = x.dim(0);
  LS_CHECK_EQ(x.numel(), batch * NumElements(input_shape_)) << "input " << ShapeToString(x.shape());
  EnsureCapacity(batch);
  const float* in = x.data<float>();
  for (size_t i = 0; i < layers_.size(); ++i) {
    Tensor& stored = activations_[i];
    // A bf16-stored output is computed in fp32 into the working buffer the layer is
    // not reading. Rounded outputs are rounded in place: the next layer reads the
    // rounded values, the same ones backward sees.
    float* out = !stored_bf16_[i] ? stored.data<float>()
                 : in == work_a_.raw() ? work_b_.data<float>()
                                       : work_a_.data<float>();
    {
      TransientArena::Scope scope(*transient_);
      layers_[i]->Forward(ctx, in, out, batch);
    }
    if (rounded_[i]) {
      backend_->RoundToBf16Stored(out, stored_bf16_[i] ? static_cast<uint16_t*>(stored.raw()) : nullptr,
                                  batch * NumElements(layers_[i]->output_shape()));
    }
    in = out;
  }
  Shape out_shape = output_shape();
  out_shape.insert(out_shape.begin(), batch);
  last_input_ = x;
  return activations_.back().Subview(0, out_shape);
}

const float* Model::Fp32Activation(int i, int64_t batch, const float* keep) {
  Tensor& stored = activations_[static_cast<size_t>(i)];
  if (!stored_bf16_[static_cast<size_t>(i)]) return stored.data<float>();
  float* target = keep == work_a_.raw() ? work_b_.data<float>() : work_a_.data<float>();
  backend_->Bf16ToFp32(static_cast<const uint16_t*>(stored.raw()), target,
                       batch * NumElements(layers_[static_cast<size_t>(i)]->output_shape()));
  return target;
}

void Model::Backward(const StepContext& step, const Tensor& doutput,
                     const std::function<void(int64_t)>& on_grads_ready, Tensor* dinput) {
  StepContext ctx = step;
  ctx.transient = transient_.get();
  if (dinput != nullptr) LS_CHECK_EQ(dinput->numel(), last_input_.numel());
  int64_t batch = doutput.dim(0);
  LS_CHECK_LE(batch, capacity_);
  const float* dy = doutput.data<float>();
  Tensor* next = &grad_a_;
  // Layer i's output is layer i+1's input: expanded once, when layer i+1 needs it.
  const float* y = Fp32Activation(static_cast<int>(layers_.size()) - 1, batch, nullptr);
  for (int i = static_cast<int>(layers_.size()) - 1; i >= 0; --i) {
    const float* x = i == 0 ? last_input_.data<float>() : Fp32Activation(i - 1, batch, y);
    float* dx = i > 0 ? next->data<float>() : dinput != nullptr ? dinput->data<float>() : nullptr;
    {
      TransientArena::Scope scope(*transient_);
      layers_[static_cast<size_t>(i)]->Backward(ctx, x, y, dy, dx, batch);
    }
    if (on_grads_ready) on_grads_ready(layer_grad_end_[static_cast<size_t>(i)]);
    dy = dx;
    y = x;
    next = next == &grad_a_ ? &grad_b_ : &grad_a_;
  }
}

std::string Model::Fingerprint() const {
  std::ostringstream out;
  out << "input" << ShapeToString(input_shape_) << "\n";
  for (size_t i = 0; i < layers_.size(); ++i) {
    out << i << " " << layers_[i]->Kind() << " " << layers_[i]->Describe() << " -> "
        << ShapeToString(layers_[i]->output_shape()) << "\n";
  }
  for (const ParamInfo& p : param_infos_) out << p.name << ShapeToString(p.shape) << "@" << p.offset << "\n";
  return out.str();
}

std::string Model::Summary() const {
  std::ostringstream out;
  out << std::left << std::setw(6) << "#" << std::setw(46) << "layer" << std::setw(18) << "output shape"
      << std::right << std::setw(10) << "params" << "\n";
  int64_t total = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    int64_t n = 0;
    for (const ParamSpec& s : layers_[i]->ParamSpecs()) n += NumElements(s.shape);
    total += n;
    std::string name = layers_[i]->Kind() + " " + layers_[i]->Describe();
    out << std::left << std::setw(6) << i << std::setw(46) << name << std::setw(18)
        << ShapeToString(layers_[i]->output_shape()) << std::right << std::setw(10) << n << "\n";
  }
  out << "total parameters: " << total << " (" << std::fixed << std::setprecision(2)
      << total * 4.0 / (1 << 20) << " MiB fp32)\n";
  return out.str();
}

double Model::ForwardFlopsPerSample() const {
  double f = 0;
  for (const auto& l : layers_) f += l->ForwardFlops();
  return f;
}

double Model::TrainingFlopsPerSample() const {
  double f = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    f += layers_[i]->ForwardFlops() + layers_[i]->WeightGradFlops();
    if (i > 0) f += layers_[i]->InputGradFlops();
  }
  return f;
}

}  // namespace lockstep
