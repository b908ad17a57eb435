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

void Model::EnsureCapacity(int64_t batch) {
  if (batch <= capacity_) return;
  capacity_ = batch;
  activations_.clear();
  int64_t largest = NumElements(input_shape_);
  for (auto& layer : layers_) {
    Shape out = layer->output_shape();
    largest = std::max(largest, NumElements(out));
    out.insert(out.begin(), batch);
    activations_.push_back(Tensor::Empty(*backend_, out, DType::kFloat32));
  }
  grad_a_ = Tensor::Empty(*backend_, {batch * largest}, DType::kFloat32);
  grad_b_ = Tensor::Empty(*backend_, {batch * largest}, DType::kFloat32);
}

Tensor Model::Forward(const StepContext& ctx, const Tensor& x) {
  LS_CHECK_GE(x.shape().size(), 1u);
  int64_t batch = x.dim(0);
  LS_CHECK_EQ(x.numel(), batch * NumElements(input_shape_)) << "input " << ShapeToString(x.shape());
  EnsureCapacity(batch);
  const float* in = x.data<float>();
  for (size_t i = 0; i < layers_.size(); ++i) {
    float* out = activations_[i].data<float>();
    layers_[i]->Forward(ctx, in, out, batch);
    in = out;
  }
  Shape out_shape = output_shape();
  out_shape.insert(out_shape.begin(), batch);
  last_input_ = x;
  return activations_.back().Subview(0, out_shape);
}

void Model::Backward(const StepContext& ctx, const Tensor& doutput,
                     const std::function<void(int64_t)>& on_grads_ready, Tensor* dinput) {
  if (dinput != nullptr) LS_CHECK_EQ(dinput->numel(), last_input_.numel());
  int64_t batch = doutput.dim(0);
  LS_CHECK_LE(batch, capacity_);
  const float* dy = doutput.data<float>();
  Tensor* next = &grad_a_;
  for (int i = static_cast<int>(layers_.size()) - 1; i >= 0; --i) {
    const float* x = i == 0 ? last_input_.data<float>() : activations_[static_cast<size_t>(i - 1)].data<float>();
    const float* y = activations_[static_cast<size_t>(i)].data<float>();
    float* dx = i > 0 ? next->data<float>() : dinput != nullptr ? dinput->data<float>() : nullptr;
    layers_[static_cast<size_t>(i)]->Backward(ctx, x, y, dy, dx, batch);
    if (on_grads_ready) on_grads_ready(layer_grad_end_[static_cast<size_t>(i)]);
    dy = dx;
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
