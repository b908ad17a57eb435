// bench_training_cuda: end-to-end training throughput of the recipes' MLP and CNN
// (recipes/mlp.pbtxt, recipes/cnn.pbtxt) on the CUDA backend, for comparison with
// PyTorch eager on the same GPU in the same run (bench/training/compare_pytorch_cuda.sh,
// bench/training/pytorch_reference.py --device cuda). Never asserts on time.
//
//   bench_training_cuda [-m mlp cnn] [-b 32 64 128 256] [-n STEPS] [-w WARMUP]
//                       [--conv auto|cudnn|im2col] [--tf32] [--bf16] [--header true|false]
//                       [--backend cuda|cpu]
//     -m, --models    models to run (mlp, cnn; several values or a comma list)
//     -b, --batches   batch sizes (several values or a comma list)
//     -n, --steps     timed steps per configuration (default 200)
//     -w, --warmup    untimed steps before them (default 20)
//     --conv          convolution path (CudaBackendOptions::ConvPath; default auto =
//                     cuDNN when the build has it, else im2col + cuBLASLt)
//     --tf32          TF32 tensor cores in the GEMMs (the convolutions stay fp32:
//                     FMA math in cuDNN, see kernels/cuda/cudnn_conv.cc)
//     --bf16          training.precision: BF16_GEMM (GemmPrecision::kBf16Inputs): bf16
//                     tensor-core GEMMs, convolutions on bf16-rounded operands (TF32)
//     --header        print the table header (default true)
//     --backend cpu   the same loop on the CPU backend (checks the bench itself on a
//                     machine without a GPU; its memory columns are the CPU backend's)
//   Exit: 0 done, 1 bad flags or a non-finite loss, 2 no usable CUDA device.
//
// A step is what training/trainer.cc does on one rank: upload the batch (images and
// labels) from page-locked host memory without waiting (CopyFromHostAsync), forward,
// softmax cross-entropy (ComputeLoss: loss and correct count read back to the host,
// as the trainer logs them), backward, Adam
// (lr 1e-3, Keras epsilon 1e-7; the recipes' cosine schedule is host arithmetic and
// left out). The models are built with the layer factories exactly as
// runtime/core/recipe.cc builds the recipes: VALID convolutions, 2x2/2 pooling,
// Glorot-uniform kernels, zero biases, activations fused into their layer, and the
// final softmax fused into the loss; parameters initialised with the recipes' seed 1.
//
// Metrics: samples/s = batch x steps / time of the timed steps (the clock is read
// after backend.Synchronize(), so no queued work is left out); ms/step = time / steps;
// peak_MiB = the backend's caching-allocator peak of bytes in use (memory_stats()),
// from a fresh backend per configuration: parameters, gradients, Adam state,
// activations, scratch, cuDNN workspaces. Not counted: the CUDA context, the library
// handles and cuBLASLt's 32 MiB workspace (cudaMalloc'd by kernels/cuda/gemm.cc outside
// the allocator; PyTorch's max_memory_allocated does include its cuBLAS workspace).
// JSON also has the allocator's peak reserved bytes (in use + cached).
// loss = mean loss of the first and of the last step (a sanity check: the synthetic
// classes are learnable, so it falls).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "kernels/cuda/cuda_check.h"
#include "runtime/core/backend.h"
#include "runtime/core/cuda_backend.h"
#include "runtime/core/layer.h"
#include "runtime/core/loss.h"
#include "runtime/core/model.h"
#include "runtime/core/optimizer.h"

namespace lockstep::bench {
namespace {

constexpr int64_t kHeight = 28, kWidth = 28, kClasses = 10;
constexpr int64_t kPixels = kHeight * kWidth;
constexpr uint64_t kRecipeSeed = 1;   // training { seed: 1 } in both recipes
constexpr float kLearningRate = 1e-3f;
// Distinct host batches cycled through, so consecutive uploads read different memory
// as a real input pipeline would.
constexpr int kHostBatches = 8;

struct Options {
  std::vector<std::string> models = {"mlp", "cnn"};
  std::vector<int64_t> batches = {32, 64, 128, 256};
  int steps = 200;
  int warmup = 20;
  CudaBackendOptions::ConvPath conv = CudaBackendOptions::ConvPath::kAuto;
  bool tf32 = false;
  bool bf16 = false;  // GemmPrecision::kBf16Inputs
  bool header = true;
  bool cpu = false;  // --backend cpu
};

const char* ConvPathName(CudaBackendOptions::ConvPath p) {
  switch (p) {
    case CudaBackendOptions::ConvPath::kCudnn: return "cudnn";
    case CudaBackendOptions::ConvPath::kIm2col: return "im2col";
    case CudaBackendOptions::ConvPath::kAuto: break;
  }
  return "auto";
}

// Returns -1 to go on, else the exit code (0 after --help, 1 on a bad flag).
int ParseFlags(int argc, char** argv, Options* o) {
  const char* usage =
      "usage: bench_training_cuda [-m mlp cnn] [-b 32 64 128 256] [-n STEPS] [-w WARMUP]\n"
      "                           [--conv auto|cudnn|im2col] [--tf32] [--bf16] [--header true|false]\n"
      "                           [--backend cuda|cpu]\n"
      "  -m, --models   models (mlp, cnn)               -b, --batches  batch sizes\n"
      "  -n, --steps    timed steps (default 200)         -w, --warmup   untimed steps (default 20)\n"
      "  --conv         convolution path (default auto)   --tf32         TF32 in the GEMMs\n"
      "  --bf16         bf16 GEMM inputs (BF16_GEMM)\n";
  auto bad = [&](const std::string& what) {
    std::fprintf(stderr, "bench_training_cuda: %s\n%s", what.c_str(), usage);
    return 1;
  };
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    if (flag == "-h" || flag == "--help") {
      std::printf("%s", usage);
      return 0;
    }
    if (flag == "--tf32") {
      o->tf32 = true;
      continue;
    }
    if (flag == "--bf16") {
      o->bf16 = true;
      continue;
    }
    const size_t eq = flag.find('=');
    const bool inline_value = flag.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    }
    if (flag == "-m" || flag == "--models" || flag == "-b" || flag == "--batches") {
      // A list: the inline value, or every following argument up to the next flag.
      std::vector<std::string> items;
      if (inline_value) SplitCommas(value, &items);
      while (!inline_value && i + 1 < argc && argv[i + 1][0] != '-') SplitCommas(argv[++i], &items);
      if (items.empty()) return bad(flag + " needs at least one value");
      if (flag == "-m" || flag == "--models") {
        for (const std::string& m : items) {
          if (m != "mlp" && m != "cnn") return bad("unknown model " + m + " (mlp, cnn)");
        }
        o->models = items;
      } else {
        o->batches.clear();
        for (const std::string& b : items) {
          int64_t v = 0;
          if (!ParseInt(b, 1, 1 << 20, &v)) return bad("bad batch size " + b);
          o->batches.push_back(v);
        }
      }
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argc) return bad(flag + " needs a value");
      value = argv[++i];
    }
    int64_t v = 0;
    if ((flag == "-n" || flag == "--steps") && ParseInt(value, 1, 1000000, &v)) {
      o->steps = static_cast<int>(v);
    } else if ((flag == "-w" || flag == "--warmup") && ParseInt(value, 0, 1000000, &v)) {
      o->warmup = static_cast<int>(v);
    } else if (flag == "--conv" && (value == "auto" || value == "cudnn" || value == "im2col")) {
      o->conv = value == "cudnn"    ? CudaBackendOptions::ConvPath::kCudnn
                : value == "im2col" ? CudaBackendOptions::ConvPath::kIm2col
                                    : CudaBackendOptions::ConvPath::kAuto;
    } else if (flag == "--header" && (value == "true" || value == "false")) {
      o->header = value == "true";
    } else if (flag == "--backend" && (value == "cuda" || value == "cpu")) {
      o->cpu = value == "cpu";
    } else {
      return bad("bad flag or value: " + flag + " " + value);
    }
  }
  return -1;
}

// recipes/mlp.pbtxt: Flatten -> Dense 128 relu -> Dense 10 (softmax in the loss).
// recipes/cnn.pbtxt: Conv2D 32 3x3 relu (VALID) -> MaxPool 2 -> Conv2D 64 3x3 relu
// -> MaxPool 2 -> Flatten -> Dense 64 relu -> Dense 10: 28 -> 26 -> 13 -> 11 -> 5,
// so the flattened features are 5 x 5 x 64 = 1600.
Result<std::unique_ptr<Model>> BuildRecipeModel(const std::string& name, Backend* backend) {
  std::vector<std::unique_ptr<Layer>> layers;
  if (name == "cnn") {
    Conv2dOptions c1;  // kernel 3x3, stride 1, no padding, Glorot, bias: the defaults
    c1.filters = 32;
    c1.activation = Activation::kRelu;
    layers.push_back(MakeConv2d(c1));
    layers.push_back(MakeMaxPool2d(Pool2dOptions{}));  // 2x2, stride 2
    Conv2dOptions c2 = c1;
    c2.filters = 64;
    layers.push_back(MakeConv2d(c2));
    layers.push_back(MakeMaxPool2d(Pool2dOptions{}));
    layers.push_back(MakeFlatten());
    layers.push_back(MakeDense(64, true, ParamInit::kGlorotUniform, Activation::kRelu));
  } else {
    layers.push_back(MakeFlatten());
    layers.push_back(MakeDense(128, true, ParamInit::kGlorotUniform, Activation::kRelu));
  }
  layers.push_back(MakeDense(kClasses, true, ParamInit::kGlorotUniform));
  return Model::Create(backend, {kHeight, kWidth, 1}, std::move(layers));
}

// Synthetic Fashion-MNIST-shaped batches (NHWC, 28x28x1 floats in [0, 1), int32
// labels), generated once: each class a brightness ramp of its own slope plus noise,
// so the model can learn (throughput does not depend on the values).
// kHostBatches batches of `batch` samples into images (kHostBatches * batch, 28, 28, 1)
// and labels (kHostBatches * batch): a per-class brightness ramp plus noise.
void FillHostData(int64_t batch, float* images, int32_t* labels) {
  const int64_t n = kHostBatches * batch;
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&state] {  // xorshift64*
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (state * 0x2545f4914f6cdd1dull) >> 40;  // 24 random bits
  };
  for (int64_t s = 0; s < n; ++s) {
    const int32_t label = static_cast<int32_t>(next() % kClasses);
    labels[s] = label;
    for (int64_t i = 0; i < kPixels; ++i) {
      const float noise = 0.2f * static_cast<float>(next()) / static_cast<float>(1 << 24);
      images[s * kPixels + i] = 0.08f * static_cast<float>(label) * static_cast<float>(i % kWidth) / kWidth + noise;
    }
  }
}

struct Row {
  std::string model;
  int64_t batch = 0;
  // peak: the most bytes in use at once during the run; held: in use after its last
  // step (parameters, gradients, optimiser state, activations and scratch kept between
  // steps), what bench_training's mem_MiB reports on the CPU.
  double samples_per_sec = 0, ms_per_step = 0, peak_mib = 0, peak_reserved_mib = 0, held_mib = 0;
  double first_loss = 0, last_loss = 0;
  int64_t params = 0;
};

// Trains one model at one batch size on a fresh backend (so its allocator peak is this
// configuration's alone); false with a message on stderr if something failed.
bool RunConfig(const Options& opt, const std::string& name, int64_t batch, Row* row) {
  CudaBackendOptions bo;
  bo.device = 0;
  bo.conv = opt.conv;
  bo.allow_tf32 = opt.tf32;
  bo.gemm_precision = opt.bf16 ? GemmPrecision::kBf16Inputs : GemmPrecision::kFp32;
  Result<std::unique_ptr<Backend>> created =
      opt.cpu ? Result<std::unique_ptr<Backend>>(CreateCpuBackend(bo.gemm_precision)) : CreateCudaBackend(bo);
  if (!created.ok()) {
    std::fprintf(stderr, "bench_training_cuda: %s\n", created.status().ToString().c_str());
    return false;
  }
  std::unique_ptr<Backend> backend = std::move(created).value();  // outlives every tensor below
  Backend& be = *backend;
  Result<std::unique_ptr<Model>> built = BuildRecipeModel(name, &be);
  if (!built.ok()) {
    std::fprintf(stderr, "bench_training_cuda: %s: %s\n", name.c_str(), built.status().ToString().c_str());
    return false;
  }
  std::unique_ptr<Model> model = std::move(built).value();
  model->InitializeParameters(kRecipeSeed);
  Result<std::unique_ptr<Optimizer>> made = Optimizer::Create(&be, OptimizerConfig{}, 0, model->param_count());
  if (!made.ok()) {
    std::fprintf(stderr, "bench_training_cuda: %s\n", made.status().ToString().c_str());
    return false;
  }
  std::unique_ptr<Optimizer> optimizer = std::move(made).value();

  // The trainer's upload path: the batches in AllocateHost memory (page-locked on the
  // GPU), copied with CopyFromHostAsync.
  HostBuffer pinned_images(&be), pinned_labels(&be);
  const size_t host_samples = static_cast<size_t>(kHostBatches * batch);
  float* images = static_cast<float*>(pinned_images.Reserve(sizeof(float) * host_samples * kPixels));
  int32_t* label_ids = static_cast<int32_t*>(pinned_labels.Reserve(sizeof(int32_t) * host_samples));
  FillHostData(batch, images, label_ids);
  Tensor x = Tensor::Empty(be, {batch, kHeight, kWidth, 1}, DType::kFloat32);
  Tensor labels = Tensor::Empty(be, {batch}, DType::kInt32);
  Tensor dout = Tensor::Empty(be, {batch, kClasses}, DType::kFloat32);
  const float grad_scale = 1.0f / static_cast<float>(batch);
  bool finite = true;
  int64_t step = 0;
  auto train_step = [&]() -> double {
    // The input pipeline's cost is part of the step, as in the trainer: two copies
    // from page-locked host memory (batch x 3136 B of images, batch x 4 B of labels;
    // 0.8 MB at batch 256) queued without waiting; the step's loss read-back waits for
    // them, so a slot is never rewritten under a pending copy (and none is rewritten).
    // PyTorch's side uploads the same way (pinned host tensors, .to(device,
    // non_blocking=True)).
    const size_t slot = static_cast<size_t>(step % kHostBatches);
    be.CopyFromHostAsync(x.raw(), images + slot * static_cast<size_t>(batch * kPixels), x.nbytes());
    be.CopyFromHostAsync(labels.raw(), label_ids + slot * static_cast<size_t>(batch), labels.nbytes());
    StepContext ctx;
    ctx.backend = &be;
    ctx.training = true;
    ctx.seed = kRecipeSeed;
    ctx.step = static_cast<uint64_t>(step);
    ctx.first_global_row = step * batch;
    Tensor out = model->Forward(ctx, x);
    const LossValue loss = ComputeLoss(be, LossKind::kSoftmaxCrossEntropy, out, labels, grad_scale, &dout);
    model->Backward(ctx, dout);
    optimizer->Step(kLearningRate, model->params().data<float>(), model->grads().data<float>());
    ++step;
    const double mean = loss.sum / static_cast<double>(batch);
    finite = finite && std::isfinite(mean);
    if (step == 1) row->first_loss = mean;
    return mean;
  };

  row->model = name;
  row->batch = batch;
  row->params = model->param_count();
  for (int i = 0; i < opt.warmup; ++i) train_step();
  be.Synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  double last = 0;
  for (int i = 0; i < opt.steps; ++i) last = train_step();
  be.Synchronize();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  row->last_loss = last;
  row->samples_per_sec = static_cast<double>(batch) * opt.steps / seconds;
  row->ms_per_step = seconds / opt.steps * 1e3;
  const BackendMemoryStats mem = be.memory_stats();
  row->peak_mib = static_cast<double>(mem.peak_bytes_in_use) / (1 << 20);
  row->peak_reserved_mib = static_cast<double>(mem.peak_bytes_reserved) / (1 << 20);
  row->held_mib = static_cast<double>(mem.bytes_in_use) / (1 << 20);
  if (!finite) {
    std::fprintf(stderr, "bench_training_cuda: %s batch %lld: non-finite loss\n", name.c_str(),
                 static_cast<long long>(batch));
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  Options opt;
  const int flags_rc = ParseFlags(argc, argv, &opt);
  if (flags_rc >= 0) return flags_rc;
  std::string why;
  if (!opt.cpu && !CudaBackendAvailable(&why)) {
    std::fprintf(stderr, "bench_training_cuda: no usable CUDA device: %s\n", why.c_str());
    return 2;
  }
  if (opt.header) {
    if (!opt.cpu) LS_CUDA_CHECK(cudaSetDevice(0));  // the device every configuration's backend uses
    std::printf("# lockstep %s backend on %s; conv %s, tf32 %s, precision %s; %d timed steps after %d warm-up\n",
                opt.cpu ? "CPU" : "CUDA", opt.cpu ? "the host" : kernels::cuda::CurrentDeviceDescription().c_str(),
                ConvPathName(opt.conv), opt.tf32 ? "on" : "off", opt.bf16 ? "BF16_GEMM" : "FP32", opt.steps,
                opt.warmup);
    std::printf("%-8s %6s %12s %10s %10s %10s %16s\n", "model", "batch", "samples/s", "ms/step", "peak_MiB",
                "held_MiB", "loss");
    std::printf("%-8s %6s %12s %10s %10s %10s %16s\n", "", "", "", "", "(device)", "(device)", "(first>last)");
  }
  std::fflush(stdout);
  std::vector<Row> rows;
  bool ok = true;
  for (const std::string& name : opt.models) {
    for (int64_t batch : opt.batches) {
      Row r;
      if (!RunConfig(opt, name, batch, &r)) {
        ok = false;
        continue;
      }
      char loss[64];
      std::snprintf(loss, sizeof loss, "%.3f>%.3f", r.first_loss, r.last_loss);
      std::printf("%-8s %6lld %12.0f %10.3f %10.1f %10.1f %16s\n", r.model.c_str(), static_cast<long long>(r.batch),
                  r.samples_per_sec, r.ms_per_step, r.peak_mib, r.held_mib, loss);
      std::fflush(stdout);
      rows.push_back(r);
    }
  }
  for (const Row& r : rows) {
    std::printf("{\"bench\":\"training_cuda\",\"backend\":\"%s\",\"model\":\"%s\",\"batch\":%lld,\"conv\":\"%s\",\"tf32\":%s,\"precision\":\"%s\","
                "\"params\":%lld,\"steps\":%d,\"samples_per_sec\":%.1f,\"ms_per_step\":%.4f,\"peak_device_mib\":%.2f,"
                "\"peak_reserved_mib\":%.2f,\"held_device_mib\":%.2f,\"first_loss\":%.4f,\"last_loss\":%.4f}\n",
                opt.cpu ? "cpu" : "cuda", r.model.c_str(), static_cast<long long>(r.batch), ConvPathName(opt.conv),
                opt.tf32 ? "true" : "false", opt.bf16 ? "BF16_GEMM" : "FP32", static_cast<long long>(r.params), opt.steps, r.samples_per_sec, r.ms_per_step, r.peak_mib,
                r.peak_reserved_mib, r.held_mib, r.first_loss, r.last_loss);
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace lockstep::bench

int main(int argc, char** argv) { return lockstep::bench::Main(argc, argv); }
