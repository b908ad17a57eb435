// The backend op suite on CUDA: every op of backend.h runs on the CUDA backend and
// on the CPU backend from the same host data, and the outputs must agree within
// per-op tolerances (tight for exact elementwise ops, looser where summation order
// or transcendental functions differ). Then the whole-model check: 50 CNN training
// steps on CUDA against the CPU. Without a usable device every test skips and says
// why; with LOCKSTEP_REQUIRE_CUDA=1 a skip is a failure.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "kernels/cpu/bf16.h"
#include "runtime/core/backend.h"
#include "runtime/core/cuda_backend.h"
#include "runtime/core/loss.h"
#include "runtime/core/model.h"
#include "runtime/core/optimizer.h"
#include "runtime/core/sequence_layers.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep {
namespace {

using kernels::testing::TestRng;

bool CudaRequired() {
  const char* v = std::getenv("LOCKSTEP_REQUIRE_CUDA");
  return v != nullptr && std::string(v) == "1";
}

// LOCKSTEP_CUDA_TEST_STAND_IN=cpu: a CPU backend (with the requested GEMM precision)
// stands in for the CUDA one, so that CI, which has no GPU, runs this suite's own logic:
// its references, premises ("the reference run must learn") and tolerances' baselines.
// Tests that need the real device skip. It proves nothing about the CUDA code.
bool StandIn() {
  const char* v = std::getenv("LOCKSTEP_CUDA_TEST_STAND_IN");
  return v != nullptr && std::string(v) == "cpu";
}

Result<std::unique_ptr<Backend>> CreateDeviceBackend(const CudaBackendOptions& options) {
  if (StandIn()) return CreateCpuBackend(options.gemm_precision);
  return CreateCudaBackend(options);
}

// The buffers of one op call on one backend: inputs copied from host vectors,
// outputs poisoned with NaN bytes, all freed at the end.
class Args {
 public:
  explicit Args(Backend& be) : be_(be) {}
  ~Args() {
    for (auto& [p, bytes] : sizes_) be_.Free(p);
  }
  template <typename T>
  T* In(const std::vector<T>& host) {
    T* p = Alloc<T>(static_cast<int64_t>(host.size()));
    be_.CopyFromHost(p, host.data(), host.size() * sizeof(T));
    return p;
  }
  template <typename T>
  T* Out(int64_t n) {
    T* p = Alloc<T>(n);
    std::vector<unsigned char> poison(static_cast<size_t>(n) * sizeof(T), 0xFF);
    be_.CopyFromHost(p, poison.data(), poison.size());
    return p;
  }
  // The whole buffer at p, as floats (int and byte outputs convert exactly).
  template <typename T>
  std::vector<float> Read(const T* p) {
    const size_t bytes = sizes_.at(const_cast<T*>(p));
    std::vector<T> host(bytes / sizeof(T));
    be_.CopyToHost(host.data(), p, bytes);
    return std::vector<float>(host.begin(), host.end());
  }

 private:
  template <typename T>
  T* Alloc(int64_t n) {
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T);
    void* p = be_.Allocate(bytes);
    sizes_[p] = bytes;
    return static_cast<T*>(p);
  }
  Backend& be_;
  std::map<void*, size_t> sizes_;
};

struct Outputs {
  std::map<std::string, std::vector<float>> arrays;
  std::map<std::string, double> scalars;
};
using Op = std::function<void(Backend&, Args&, Outputs&)>;

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<Backend>> gpu = CreateDeviceBackend(options_);
    if (!gpu.ok()) {
      if (CudaRequired()) FAIL() << "LOCKSTEP_REQUIRE_CUDA=1: " << gpu.status().message();
      GTEST_SKIP() << "no CUDA backend: " << gpu.status().message();
    }
    gpu_ = std::move(gpu).value();
    cpu_ = CreateCpuBackend();
  }

  // Runs op on both backends and compares every output: |gpu - cpu| <= abs_tol +
  // rel_tol * |cpu|, NaN only where both are NaN.
  void ExpectSame(const Op& op, double abs_tol, double rel_tol) {
    Outputs want, got;
    {
      Args a(*cpu_);
      op(*cpu_, a, want);
    }
    {
      Args a(*gpu_);
      op(*gpu_, a, got);
    }
    ASSERT_EQ(want.arrays.size(), got.arrays.size());
    for (const auto& [name, w] : want.arrays) {
      const std::vector<float>& g = got.arrays.at(name);
      ASSERT_EQ(g.size(), w.size()) << name;
      int64_t bad = 0;
      for (size_t i = 0; i < w.size(); ++i) {
        const bool ok = (std::isnan(w[i]) && std::isnan(g[i])) ||
                        std::fabs(double{g[i]} - w[i]) <= abs_tol + rel_tol * std::fabs(w[i]);
        if (!ok && ++bad <= 5) {
          ADD_FAILURE() << name << "[" << i << "]: cuda " << g[i] << " vs cpu " << w[i];
        }
      }
      EXPECT_EQ(bad, 0) << name << ": " << bad << " of " << w.size() << " elements differ";
    }
    for (const auto& [name, w] : want.scalars) {
      EXPECT_NEAR(got.scalars.at(name), w, abs_tol + rel_tol * std::fabs(w)) << name;
    }
  }

  CudaBackendOptions options_;
  std::unique_ptr<Backend> gpu_, cpu_;
};

TEST_F(CudaBackendTest, MemoryOpsRoundTrip) {
  TestRng rng(1);
  const std::vector<float> x = rng.Vector(1000);
  ExpectSame([&](Backend& be, Args& a, Outputs& o) {
    float* src = a.In(x);
    float* dst = a.Out<float>(1000);
    be.CopyBytes(dst, src, 600 * sizeof(float));
    be.ZeroBytes(dst + 600, 400 * sizeof(float));
    o.arrays["dst"] = a.Read(dst);
  }, 0, 0);
}

// The trainer's upload path: a page-locked host buffer refilled after each read-back
// and copied without waiting. Every upload must land, in order, before the read-back
// that follows it (SumOfSquares returns a host value).
TEST_F(CudaBackendTest, AsyncUploadsLandBeforeTheNextReadBack) {
  constexpr int64_t kN = 1000, kRounds = 4;
  TestRng rng(2);
  const std::vector<float> values = rng.Vector(kN * kRounds);
  ExpectSame([&](Backend& be, Args& a, Outputs& o) {
    float* dst = a.Out<float>(kN * kRounds);
    HostBuffer staging(&be);
    float* host = static_cast<float*>(staging.Reserve(sizeof(float) * kN));
    for (int64_t r = 0; r < kRounds; ++r) {
      std::copy(values.begin() + r * kN, values.begin() + (r + 1) * kN, host);
      be.CopyFromHostAsync(dst + r * kN, host, sizeof(float) * kN);
      o.scalars["sum of squares, round " + std::to_string(r)] = be.SumOfSquares(dst + r * kN, kN);
    }
    o.arrays["dst"] = a.Read(dst);
  }, 0, 1e-12);
}

TEST_F(CudaBackendTest, GemmAllTransposesAndBeta) {
  TestRng rng(2);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (float beta : {0.0f, 1.0f}) {
        SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb << " beta=" << beta);
        const int64_t m = 37, n = 29, k = 131, lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
        const std::vector<float> A = rng.Vector((ta ? k : m) * lda), B = rng.Vector((tb ? n : k) * ldb),
                                 C = rng.Vector(m * ldc);
        ExpectSame([&](Backend& be, Args& a, Outputs& o) {
          float* c = a.In(C);
          be.Gemm(ta, tb, m, n, k, 0.5f, a.In(A), lda, a.In(B), ldb, beta, c, ldc);
          o.arrays["c"] = a.Read(c);
        }, 1e-5, 1e-5);
      }
    }
  }
}

// Dense layers' forward: GEMM with the bias and activation fused into cuBLASLt's
// epilogue (identity, ReLU; with and without bias) or applied after it (tanh, sigmoid).
TEST_F(CudaBackendTest, GemmBiasActivationMatchesTheCpu) {
  TestRng rng(12);
  const int64_t m = 33, n = 70, k = 129;
  const std::vector<float> A = rng.Vector(m * k), B = rng.Vector(k * n), bias = rng.Vector(n);
  for (Activation act : {Activation::kIdentity, Activation::kRelu, Activation::kTanh, Activation::kSigmoid}) {
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "act " << static_cast<int>(act) << " bias " << with_bias);
      ExpectSame([&](Backend& be, Args& a, Outputs& o) {
        float* c = a.Out<float>(m * n);
        be.GemmBiasActivation(false, false, m, n, k, a.In(A), k, a.In(B), n, with_bias ? a.In(bias) : nullptr, act, c);
        o.arrays["c"] = a.Read(c);
      }, 1e-5, 1e-5);
    }
  }
}

TEST_F(CudaBackendTest, BiasAndActivations) {
  TestRng rng(3);
  const int64_t rows = 33, cols = 70;
  const std::vector<float> x = rng.Vector(rows * cols, -3, 3), bias = rng.Vector(cols), dy = rng.Vector(rows * cols),
                           db0 = rng.Vector(cols);
  for (Activation act : {Activation::kIdentity, Activation::kRelu, Activation::kTanh, Activation::kSigmoid}) {
    SCOPED_TRACE(static_cast<int>(act));
    ExpectSame([&](Backend& be, Args& a, Outputs& o) {
      float* y = a.In(x);
      be.BiasActivation(y, a.In(bias), rows, cols, act);
      o.arrays["bias_act"] = a.Read(y);
      float* y2 = a.Out<float>(rows * cols);
      be.ActivationForward(act, a.In(x), y2, rows * cols);
      o.arrays["act"] = a.Read(y2);
      float* dx = a.Out<float>(rows * cols);
      be.ActivationBackward(act, a.In(x), y2, a.In(dy), dx, rows * cols);
      o.arrays["act_grad"] = a.Read(dx);
    }, 1e-6, 1e-5);
  }
  for (float beta : {0.0f, 1.0f}) {
    ExpectSame([&](Backend& be, Args& a, Outputs& o) {
      float* y = a.In(x);
      be.BiasAdd(y, a.In(bias), rows, cols);
      o.arrays["bias_add"] = a.Read(y);
      float* db = a.In(db0);
      be.BiasBackward(a.In(dy), rows, cols, beta, db);
      o.arrays["bias_grad"] = a.Read(db);
      float* s = a.In(x);
      be.Scale(s, rows * cols, -0.25f);
      o.arrays["scale"] = a.Read(s);
      float* ax = a.In(dy);
      be.Axpy(0.75f, a.In(x), ax, rows * cols);
      o.arrays["axpy"] = a.Read(ax);
      o.scalars["sum_sq"] = be.SumOfSquares(a.In(x), rows * cols);
    }, 1e-5, 1e-5);
  }
}

class CudaBackendConvTest : public CudaBackendTest,
                            public ::testing::WithParamInterface<CudaBackendOptions::ConvPath> {
 protected:
  void SetUp() override {
    options_.conv = GetParam();
    CudaBackendTest::SetUp();
  }
};

TEST_P(CudaBackendConvTest, ConvolutionAndPoolingMatchTheCpu) {
  TestRng rng(4);
  std::vector<Conv2dShape> shapes;
  auto add = [&](int64_t n, int64_t h, int64_t w, int64_t c, int64_t oc, int64_t kh, int64_t kw, int64_t st,
                 int64_t pad) {
    Conv2dShape s;
    s.batch = n; s.in_h = h; s.in_w = w; s.in_c = c; s.out_c = oc; s.kernel_h = kh; s.kernel_w = kw;
    s.stride_h = s.stride_w = st; s.pad_h = s.pad_w = pad;
    shapes.push_back(s);
  };
  add(3, 28, 28, 1, 32, 3, 3, 1, 1);   // the CNN's first layer
  add(2, 14, 14, 32, 64, 3, 3, 1, 1);  // and its second
  add(2, 9, 7, 3, 5, 3, 2, 2, 1);      // anisotropic, strided
  add(4, 6, 6, 8, 16, 1, 1, 1, 0);     // 1x1
  for (const Conv2dShape& s : shapes) {
    SCOPED_TRACE(::testing::Message() << "conv N=" << s.batch << " " << s.in_h << "x" << s.in_w << "x" << s.in_c
                                      << " -> " << s.out_c << " k" << s.kernel_h << "x" << s.kernel_w);
    const int64_t xn = s.batch * s.in_h * s.in_w * s.in_c, yn = s.batch * s.out_h() * s.out_w() * s.out_c,
                  wn = s.kernel_h * s.kernel_w * s.in_c * s.out_c;
    const std::vector<float> x = rng.Vector(xn), w = rng.Vector(wn), dy = rng.Vector(yn), dw0 = rng.Vector(wn);
    const std::vector<float> bias = rng.Vector(s.out_c);
    for (float beta : {0.0f, 1.0f}) {
      ExpectSame([&](Backend& be, Args& a, Outputs& o) {
        float* ws = a.Out<float>(static_cast<int64_t>(be.Conv2dWorkspaceBytes(s) / sizeof(float)) + 1);
        float* y = a.Out<float>(yn);
        be.Conv2dForward(s, a.In(x), a.In(w), y, ws);
        o.arrays["y"] = a.Read(y);
        // With the layer's epilogue: fused on the im2col path (bias, ReLU), not for tanh.
        const struct {
          const char* name;
          bool bias;
          Activation act;
        } epilogues[] = {{"y_bias", true, Activation::kIdentity},
                         {"y_bias_relu", true, Activation::kRelu},
                         {"y_relu", false, Activation::kRelu},
                         {"y_bias_tanh", true, Activation::kTanh}};
        for (const auto& e : epilogues) {
          float* ye = a.Out<float>(yn);
          be.Conv2dForwardBiasActivation(s, a.In(x), a.In(w), e.bias ? a.In(bias) : nullptr, e.act, ye, ws);
          o.arrays[e.name] = a.Read(ye);
        }
        float* dx = a.Out<float>(xn);
        be.Conv2dBackwardData(s, a.In(dy), a.In(w), dx, ws);
        o.arrays["dx"] = a.Read(dx);
        float* dw = a.In(dw0);
        be.Conv2dBackwardFilter(s, a.In(x), a.In(dy), beta, dw, ws);
        o.arrays["dw"] = a.Read(dw);
      }, 1e-4, 1e-4);
    }
  }
  Pool2dShape p;
  p.batch = 3; p.in_h = 13; p.in_w = 11; p.channels = 7; p.window_h = p.window_w = 3;
  p.stride_h = p.stride_w = 2; p.pad_h = p.pad_w = 1;
  const int64_t pin = 3 * 13 * 11 * 7, pout = 3 * p.out_h() * p.out_w() * 7;
  const std::vector<float> px = rng.Vector(pin), pdy = rng.Vector(pout);
  ExpectSame([&](Backend& be, Args& a, Outputs& o) {
    float* y = a.Out<float>(pout);
    int32_t* arg = a.Out<int32_t>(pout);
    be.MaxPool2dForward(p, a.In(px), y, arg);
    float* dx = a.Out<float>(pin);
    be.MaxPool2dBackward(p, a.In(pdy), arg, dx);
    o.arrays["y"] = a.Read(y);
    o.arrays["argmax"] = a.Read(arg);
    o.arrays["dx"] = a.Read(dx);
  }, 0, 0);
}

std::vector<CudaBackendOptions::ConvPath> ConvPaths() {
  std::vector<CudaBackendOptions::ConvPath> paths = {CudaBackendOptions::ConvPath::kIm2col};
#if LOCKSTEP_HAVE_CUDNN
  paths.push_back(CudaBackendOptions::ConvPath::kCudnn);
#endif
  return paths;
}
std::string ConvPathName(const ::testing::TestParamInfo<CudaBackendOptions::ConvPath>& info) {
  return info.param == CudaBackendOptions::ConvPath::kIm2col ? "im2col" : "cudnn";
}
INSTANTIATE_TEST_SUITE_P(Paths, CudaBackendConvTest, ::testing::ValuesIn(ConvPaths()), ConvPathName);

TEST_F(CudaBackendTest, DropoutMaskIsTheCpusBitForBit) {
  TestRng rng(5);
  const int64_t rows = 17, row_len = 203;
  const std::vector<float> x = rng.Vector(rows * row_len), dy = rng.Vector(rows * row_len);
  ExpectSame([&](Backend& be, Args& a, Outputs& o) {
    DropoutKey key{1234, 3, 77};
    float* y = a.Out<float>(rows * row_len);
    uint8_t* mask = a.Out<uint8_t>(rows * row_len);
    be.DropoutForward(key, a.In(x), y, mask, rows, row_len, 1000, 0.3f);
    float* dx = a.Out<float>(rows * row_len);
    be.DropoutBackward(a.In(dy), mask, dx, rows * row_len, 0.3f);
    o.arrays["y"] = a.Read(y);
    o.arrays["mask"] = a.Read(mask);
    o.arrays["dx"] = a.Read(dx);
  }, 0, 0);
}

TEST_F(CudaBackendTest, LossesMatchTheCpu) {
  TestRng rng(6);
  const int64_t rows = 65, classes = 10, row_len = 17;
  const std::vector<float> logits = rng.Vector(rows * classes, -6, 6), pred = rng.Vector(rows * row_len, -80, 80),
                           target = rng.Vector(rows * row_len, 0, 1);
  std::vector<int32_t> labels(static_cast<size_t>(rows));
  for (auto& l : labels) l = static_cast<int32_t>(rng.Next() % classes);
  ExpectSame([&](Backend& be, Args& a, Outputs& o) {
    float* d = a.Out<float>(rows * classes);
    o.scalars["softmax_ce"] = be.SoftmaxCrossEntropy(a.In(logits), a.In(labels), rows, classes, 0.5f, d);
    o.arrays["softmax_ce_grad"] = a.Read(d);
    o.scalars["correct"] = static_cast<double>(be.CountCorrect(a.In(logits), a.In(labels), rows, classes));
    int64_t correct_too = -1;
    float* d2 = a.Out<float>(rows * classes);
    o.scalars["softmax_ce_and_correct"] =
        be.SoftmaxCrossEntropyAndCorrect(a.In(logits), a.In(labels), rows, classes, 0.5f, d2, &correct_too);
    o.scalars["correct_too"] = static_cast<double>(correct_too);
    o.arrays["softmax_ce_and_correct_grad"] = a.Read(d2);
    float* dm = a.Out<float>(rows * row_len);
    o.scalars["mse"] = be.MeanSquaredError(a.In(pred), a.In(target), rows * row_len, row_len, 0.5f, dm);
    o.arrays["mse_grad"] = a.Read(dm);
    float* db = a.Out<float>(rows * row_len);
    o.scalars["bce"] = be.BinaryCrossEntropyWithLogits(a.In(pred), a.In(target), rows * row_len, row_len, 0.5f, db);
    o.arrays["bce_grad"] = a.Read(db);
  }, 1e-6, 1e-5);
}

TEST_F(CudaBackendTest, SequenceOpsMatchTheCpu) {
  TestRng rng(7);
  const int64_t n = 45, vocab = 23, dim = 19, rows = 21, cols = 48;
  std::vector<float> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<float>(rng.Next() % vocab);
  const std::vector<float> table = rng.Vector(vocab * dim), dy = rng.Vector(n * dim), dt0 = rng.Vector(vocab * dim);
  const std::vector<float> x = rng.Vector(rows * cols, -2, 2), gamma = rng.Vector(cols), beta = rng.Vector(cols),
                           ldy = rng.Vector(rows * cols), dg0 = rng.Vector(cols), dbt0 = rng.Vector(cols);
  for (float grad_beta : {0.0f, 1.0f}) {
    ExpectSame([&](Backend& be, Args& a, Outputs& o) {
      float* y = a.Out<float>(n * dim);
      be.EmbeddingForward(a.In(ids), n, a.In(table), vocab, dim, y);
      o.arrays["embed"] = a.Read(y);
      float* dt = a.In(dt0);
      be.EmbeddingBackward(a.In(ids), n, a.In(dy), vocab, dim, grad_beta, dt);
      o.arrays["embed_grad"] = a.Read(dt);
      float *ly = a.Out<float>(rows * cols), *mean = a.Out<float>(rows), *rstd = a.Out<float>(rows);
      const float* lx = a.In(x);
      const float* g = a.In(gamma);
      be.LayerNormForward(lx, g, a.In(beta), rows, cols, 1e-5f, ly, mean, rstd);
      o.arrays["ln_y"] = a.Read(ly);
      o.arrays["ln_mean"] = a.Read(mean);
      o.arrays["ln_rstd"] = a.Read(rstd);
      float *dx = a.Out<float>(rows * cols), *dg = a.In(dg0), *dbt = a.In(dbt0);
      be.LayerNormBackward(lx, g, mean, rstd, a.In(ldy), rows, cols, grad_beta, dx, dg, dbt);
      o.arrays["ln_dx"] = a.Read(dx);
      o.arrays["ln_dgamma"] = a.Read(dg);
      o.arrays["ln_dbeta"] = a.Read(dbt);
    }, 1e-5, 1e-4);
  }
}

TEST_F(CudaBackendTest, RecurrentCellsMatchTheCpu) {
  TestRng rng(8);
  RecurrentStep s;
  s.batch = 5; s.units = 37; s.gate_stride = 4 * 37 + 3; s.state_stride = 37 + 1;
  const int64_t gates_n = s.batch * s.gate_stride, state_n = s.batch * s.state_stride;
  const std::vector<float> gates = rng.Vector(gates_n, -2, 2), c_prev = rng.Vector(state_n), dy = rng.Vector(state_n),
                           carry = rng.Vector(s.batch * s.units), dc0 = rng.Vector(s.batch * s.units);
  ExpectSame([&](Backend& be, Args& a, Outputs& o) {
    float* g = a.In(gates);
    const float* cp = a.In(c_prev);
    float *c = a.Out<float>(state_n), *h = a.Out<float>(state_n);
    be.LstmCellForward(s, g, cp, c, h, 1.0f);
    o.arrays["lstm_gates"] = a.Read(g);
    o.arrays["lstm_h"] = a.Read(h);
    float* dc = a.In(dc0);
    float* dg = a.Out<float>(gates_n);
    be.LstmCellBackward(s, g, cp, c, a.In(dy), s.state_stride, a.In(carry), dc, dg);
    o.arrays["lstm_dc"] = a.Read(dc);
  }, 1e-6, 1e-5);
  RecurrentStep r;
  r.batch = 4; r.units = 29; r.gate_stride = 3 * 29; r.state_stride = 29;
  const std::vector<float> ggates = rng.Vector(r.batch * 87, -2, 2), rec = rng.Vector(r.batch * 87),
                           rec_bias = rng.Vector(87), h_prev = rng.Vector(r.batch * 29), gdy = rng.Vector(r.batch * 29);
  ExpectSame([&](Backend& be, Args& a, Outputs& o) {
    float *g = a.In(ggates), *rc = a.In(rec), *h = a.Out<float>(r.batch * 29);
    const float* hp = a.In(h_prev);
    be.GruCellForward(r, g, rc, a.In(rec_bias), hp, h);
    o.arrays["gru_h"] = a.Read(h);
    o.arrays["gru_gates"] = a.Read(g);
    float *dhp = a.Out<float>(r.batch * 29), *dg = a.Out<float>(r.batch * 87), *drec = a.Out<float>(r.batch * 87);
    be.GruCellBackward(r, g, rc, hp, a.In(gdy), 29, nullptr, dhp, dg, drec);
    o.arrays["gru_dh_prev"] = a.Read(dhp);
    o.arrays["gru_dgates"] = a.Read(dg);
    o.arrays["gru_drec"] = a.Read(drec);
  }, 1e-6, 1e-5);
}

TEST_F(CudaBackendTest, CausalAttentionMatchesTheCpu) {
  TestRng rng(9);
  AttentionShape s;
  s.batch = 2; s.seq = 33; s.heads = 3; s.head_dim = 16;
  const int64_t qkv_n = s.batch * s.seq * 3 * s.dim(), out_n = s.batch * s.seq * s.dim(),
                probs_n = s.batch * s.heads * s.seq * s.seq;
  const std::vector<float> qkv = rng.Vector(qkv_n), dout = rng.Vector(out_n);
  ExpectSame([&](Backend& be, Args& a, Outputs& o) {
    const float* q = a.In(qkv);
    float *probs = a.Out<float>(probs_n), *out = a.Out<float>(out_n), *dqkv = a.Out<float>(qkv_n);
    float* ws = a.Out<float>(static_cast<int64_t>(be.CausalAttentionWorkspaceBytes(s) / sizeof(float)) + 1);
    be.CausalAttentionForward(s, q, probs, out);
    be.CausalAttentionBackward(s, q, probs, a.In(dout), dqkv, ws);
    o.arrays["probs"] = a.Read(probs);
    o.arrays["out"] = a.Read(out);
    o.arrays["dqkv"] = a.Read(dqkv);
  }, 1e-5, 1e-4);
}

TEST_F(CudaBackendTest, OptimisersMatchTheCpu) {
  TestRng rng(10);
  const int64_t n = 1001;
  const std::vector<float> p0 = rng.Vector(n), g = rng.Vector(n), m0 = rng.Vector(n, -0.1f, 0.1f),
                           v0 = rng.Vector(n, 0, 0.01f);
  ExpectSame([&](Backend& be, Args& a, Outputs& o) {
    SgdHyper sh;
    sh.lr = 0.1f; sh.momentum = 0.9f; sh.nesterov = true; sh.weight_decay = 1e-3f;
    float *p = a.In(p0), *mom = a.In(m0);
    be.SgdStep(sh, p, a.In(g), mom, n);
    o.arrays["sgd_p"] = a.Read(p);
    o.arrays["sgd_m"] = a.Read(mom);
    AdamHyper ah;
    ah.step = 7; ah.weight_decay = 0.01f; ah.decoupled = true;
    float *q = a.In(p0), *m = a.In(m0), *v = a.In(v0);
    be.AdamStep(ah, q, a.In(g), m, v, n);
    o.arrays["adam_p"] = a.Read(q);
    o.arrays["adam_m"] = a.Read(m);
    o.arrays["adam_v"] = a.Read(v);
  }, 1e-7, 1e-6);
}

// ---- whole model: 50 CNN steps on CUDA against the CPU ----

// The Keras CNN's shape, narrower (8 and 16 filters, dense 32), plus dropout so the
// counter-based masks must agree too. Built from the layer factories (no recipe), so
// the GPU test bundle can build this test without Protobuf.
std::unique_ptr<Model> MakeCnn(Backend& be) {
  std::vector<std::unique_ptr<Layer>> layers;
  Conv2dOptions c1;
  c1.filters = 8;
  c1.pad_h = c1.pad_w = 1;
  c1.activation = Activation::kRelu;
  layers.push_back(MakeConv2d(c1));
  layers.push_back(MakeMaxPool2d(Pool2dOptions{}));
  Conv2dOptions c2 = c1;
  c2.filters = 16;
  layers.push_back(MakeConv2d(c2));
  layers.push_back(MakeMaxPool2d(Pool2dOptions{}));
  layers.push_back(MakeFlatten());
  layers.push_back(MakeDense(32, true, ParamInit::kGlorotUniform, Activation::kRelu));
  layers.push_back(MakeDropout(0.25f));
  layers.push_back(MakeDense(10, true));
  Result<std::unique_ptr<Model>> model = Model::Create(&be, {28, 28, 1}, std::move(layers));
  EXPECT_TRUE(model.ok()) << model.status().message();
  return model.ok() ? std::move(model).value() : nullptr;
}

// Parameters after a given number of steps (a snapshot taken on the way).
struct ParamsAfter {
  int steps = -1;
  std::vector<float>* params = nullptr;
};

// Trains `steps` Adam steps on `be` from seed-initialised parameters on fixed
// synthetic batches; returns the final parameters and the per-step losses.
// With `grads`, also the gradients of the first step; with `early`, a snapshot.
void TrainCnn(Backend& be, int steps, std::vector<float>* params, std::vector<double>* losses,
              ActivationStorage storage = ActivationStorage::kFp32, std::vector<float>* grads = nullptr,
              ParamsAfter early = {}) {
  std::unique_ptr<Model> model = MakeCnn(be);
  ASSERT_NE(model, nullptr);
  model->set_activation_storage(storage);
  model->InitializeParameters(3);
  Result<std::unique_ptr<Optimizer>> opt = Optimizer::Create(&be, OptimizerConfig{}, 0, model->param_count());
  ASSERT_TRUE(opt.ok()) << opt.status().message();
  const int64_t batch = 32;
  Tensor x = Tensor::Empty(be, {batch, 28, 28, 1}, DType::kFloat32);
  Tensor labels = Tensor::Empty(be, {batch}, DType::kInt32);
  Tensor dout = Tensor::Empty(be, {batch, 10}, DType::kFloat32);
  TestRng rng(11);
  for (int step = 0; step < steps; ++step) {
    // Each class is a different brightness ramp plus noise, so the loss can fall.
    std::vector<float> hx(static_cast<size_t>(batch * 784));
    std::vector<int32_t> hl(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      hl[static_cast<size_t>(b)] = static_cast<int32_t>(rng.Next() % 10);
      for (int64_t i = 0; i < 784; ++i) {
        hx[static_cast<size_t>(b * 784 + i)] =
            0.3f * static_cast<float>(hl[static_cast<size_t>(b)]) * static_cast<float>(i % 28) / 28.0f +
            rng.Uniform(0, 0.2f);
      }
    }
    be.CopyFromHost(x.raw(), hx.data(), hx.size() * sizeof(float));
    be.CopyFromHost(labels.raw(), hl.data(), hl.size() * sizeof(int32_t));
    StepContext ctx;
    ctx.backend = &be;
    ctx.training = true;
    ctx.seed = 3;
    ctx.step = static_cast<uint64_t>(step);
    ctx.first_global_row = step * batch;
    Tensor out = model->Forward(ctx, x);
    LossValue loss = ComputeLoss(be, LossKind::kSoftmaxCrossEntropy, out, labels, 1.0f / batch, &dout);
    losses->push_back(loss.sum / batch);
    model->Backward(ctx, dout);
    if (grads != nullptr && step == 0) {
      grads->resize(static_cast<size_t>(model->param_count()));
      be.CopyToHost(grads->data(), model->grads().raw(), grads->size() * sizeof(float));
    }
    (*opt)->Step(0.003f, model->params().data<float>(), model->grads().data<float>());
    if (early.params != nullptr && step + 1 == early.steps) {
      early.params->resize(static_cast<size_t>(model->param_count()));
      be.CopyToHost(early.params->data(), model->params().raw(), early.params->size() * sizeof(float));
    }
  }
  params->resize(static_cast<size_t>(model->param_count()));
  be.CopyToHost(params->data(), model->params().raw(), params->size() * sizeof(float));
}

// The mean of the last five losses over the first: one batch's loss is noisy.
double LearnedRatio(const std::vector<double>& losses) {
  double tail = 0;
  for (size_t i = losses.size() - 5; i < losses.size(); ++i) tail += losses[i] / 5;
  return tail / losses.front();
}

// The premise of the GPU comparisons below, checked where CI runs (no device needed):
// the CPU reference runs learn, in fp32 and with bf16 GEMMs and storage.
TEST(CnnReferenceTest, CpuRunsLearn) {
  for (bool bf16 : {false, true}) {
    std::unique_ptr<Backend> cpu = CreateCpuBackend(bf16 ? GemmPrecision::kBf16Inputs : GemmPrecision::kFp32);
    std::vector<float> params;
    std::vector<double> losses;
    TrainCnn(*cpu, 50, &params, &losses, bf16 ? ActivationStorage::kBf16 : ActivationStorage::kFp32);
    ASSERT_EQ(losses.size(), 50u);
    EXPECT_LT(LearnedRatio(losses), 0.8) << (bf16 ? "bf16" : "fp32") << ": " << losses.front() << " -> "
                                         << losses.back();
  }
}

// Largest |a - b| / max(1, |a|) over the elements: relative for large values, absolute
// for small ones (not tests/ddp's MaxRelativeDifference, which scales by the largest).
double MaxElementwiseDifference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(double{b[i]} - a[i]) / std::max(1.0, std::fabs(double{a[i]})));
  }
  return worst;
}

// ||a - b|| / ||a||.
double RelativeL2(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (double{b[i]} - a[i]) * (double{b[i]} - a[i]);
    norm += double{a[i]} * a[i];
  }
  return std::sqrt(diff / norm);
}

TEST_F(CudaBackendTest, FiftyCnnStepsMatchTheCpu) {
  std::vector<float> cpu_params, gpu_params, cpu_at_20, gpu_at_20;
  std::vector<double> cpu_losses, gpu_losses;
  TrainCnn(*cpu_, 50, &cpu_params, &cpu_losses, ActivationStorage::kFp32, nullptr, {20, &cpu_at_20});
  TrainCnn(*gpu_, 50, &gpu_params, &gpu_losses, ActivationStorage::kFp32, nullptr, {20, &gpu_at_20});
  ASSERT_EQ(cpu_params.size(), gpu_params.size());
  ASSERT_EQ(cpu_at_20.size(), gpu_at_20.size());
  ASSERT_EQ(cpu_losses.size(), 50u);
  EXPECT_LT(LearnedRatio(cpu_losses), 0.8) << "the reference run must learn";
  // Summation order (cuBLASLt's, im2col's, OpenBLAS's) changes gradients by ~1e-7
  // relative, and Adam keeps that at ~1e-7 per step in the parameters -- until ReLU
  // or max-pool routing flips on a near tie: the flipped unit's weights then take
  // full-size Adam steps in one run only. So the elementwise bound holds for the first
  // 20 steps, and after 50 the parameters are compared as a whole. Measured in the
  // CUDA emulator (tests/cuda_emulator): max 6.8e-6 after 20 and 30 steps; a flip
  // between steps 30 and 40 then moved 107 of 26698 parameters past 1e-4 (max 7e-3
  // after 50; relative L2 1.6e-3) while the losses still agreed to 2e-5. A wrong op
  // is far outside both bounds: a bias gradient that skips one row per chunk gave
  // 4.5e-2 after 20 steps and relative L2 0.15 after 50.
  const double worst_at_20 = MaxElementwiseDifference(cpu_at_20, gpu_at_20);
  const double l2_at_50 = RelativeL2(cpu_params, gpu_params);
  RecordProperty("max_param_rel_diff_at_20", std::to_string(worst_at_20));
  RecordProperty("param_rel_l2_at_50", std::to_string(l2_at_50));
  RecordProperty("max_param_rel_diff_at_50", std::to_string(MaxElementwiseDifference(cpu_params, gpu_params)));
  EXPECT_LT(worst_at_20, 1e-4);
  EXPECT_LT(l2_at_50, 1e-2);
  for (size_t i = 0; i < cpu_losses.size(); ++i) EXPECT_NEAR(gpu_losses[i], cpu_losses[i], 1e-3) << "step " << i;
  if (StandIn()) return;  // the CPU backend keeps no device-memory statistics
  const BackendMemoryStats mem = gpu_->memory_stats();
  EXPECT_GT(mem.peak_bytes_in_use, 0u);
  EXPECT_GE(mem.peak_bytes_reserved, mem.peak_bytes_in_use);
}

}  // namespace
}  // namespace lockstep

namespace lockstep {
namespace {

// training.deterministic: two identical runs give bitwise-equal parameters (cuDNN
// restricted to deterministic algorithms; every hand-written kernel reduces in a fixed
// order). Also the im2col convolution path, which is deterministic by construction.
TEST_F(CudaBackendTest, DeterministicRunsAreBitwiseEqual) {
  if (StandIn()) GTEST_SKIP() << "needs the CUDA backend's options (LOCKSTEP_CUDA_TEST_STAND_IN=cpu)";
  for (CudaBackendOptions::ConvPath conv : ConvPaths()) {
    SCOPED_TRACE(conv == CudaBackendOptions::ConvPath::kIm2col ? "im2col" : "cudnn");
    CudaBackendOptions options;
    options.deterministic = true;
    options.conv = conv;
    Result<std::unique_ptr<Backend>> be = CreateCudaBackend(options);
    ASSERT_TRUE(be.ok()) << be.status().message();
    std::vector<float> first, second;
    std::vector<double> first_losses, second_losses;
    TrainCnn(**be, 20, &first, &first_losses);
    TrainCnn(**be, 20, &second, &second_losses);
    ASSERT_EQ(first.size(), second.size());
    EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0);
    EXPECT_EQ(first_losses, second_losses);
  }
}

}  // namespace
}  // namespace lockstep

namespace lockstep {
namespace {

// training.precision: BF16_GEMM: the GPU's bf16 tensor-core GEMM against the CPU
// backend's emulation (inputs rounded to bf16, fp32 sums): the products are exact in
// fp32 on both, so only the summation order differs.
// The CUDA backend with bf16 GEMMs, and the CPU backend's emulation of them.
class CudaBf16Test : public CudaBackendTest {
 protected:
  void SetUp() override {
    options_.gemm_precision = GemmPrecision::kBf16Inputs;
    CudaBackendTest::SetUp();
    cpu_ = CreateCpuBackend(GemmPrecision::kBf16Inputs);
  }
};

// Elements of C (m x n) where the GPU's bf16 GEMM and the CPU's emulation differ by more
// than the summation-order bound 4 (k + 2) 2^-24 sum_l |a_il b_lj| (+1e-6): the products
// of bf16 inputs are exact in fp32, the sums are not (Hopper's tensor cores truncate
// their fp32 partial sums), and the bound must follow the magnitudes summed, not C.
// a(i, l) and b(l, j) read op(A) and op(B) in fp32; they are rounded here.
double SummationTolerance(int64_t terms, double magnitude) {
  return 4.0 * static_cast<double>(terms + 2) * std::ldexp(1.0, -24) * magnitude + 1e-6;
}

int64_t OutsideSummationBound(const std::vector<float>& got, const std::vector<float>& want, int64_t m, int64_t n,
                              int64_t k, const std::function<float(int64_t, int64_t)>& a,
                              const std::function<float(int64_t, int64_t)>& b) {
  int64_t bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double mag = 0;
      for (int64_t l = 0; l < k; ++l) {
        mag += std::fabs(double{kernels::cpu::RoundToBf16(a(i, l))} * kernels::cpu::RoundToBf16(b(l, j)));
      }
      const double tol = SummationTolerance(k, mag);
      const size_t at = static_cast<size_t>(i * n + j);
      if (!(std::fabs(double{got[at]} - want[at]) <= tol) && ++bad <= 3) {
        ADD_FAILURE() << "C[" << i << "," << j << "]: gpu " << got[at] << " cpu " << want[at] << " (tol " << tol << ")";
      }
    }
  }
  return bad;
}

TEST_F(CudaBf16Test, GemmMatchesTheCpuEmulation) {
  Backend* gpu = gpu_.get();
  Backend* cpu = cpu_.get();
  TestRng rng(24);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb);
      const int64_t m = 64, n = 40, k = 257, lda = ta ? m : k, ldb = tb ? k : n;
      const std::vector<float> A = rng.Vector((ta ? k : m) * lda), B = rng.Vector((tb ? n : k) * ldb);
      std::vector<float> want(static_cast<size_t>(m * n)), got(want.size());
      cpu->Gemm(ta, tb, m, n, k, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, want.data(), n);
      Args args(*gpu);
      float* c = args.Out<float>(m * n);
      gpu->Gemm(ta, tb, m, n, k, 1.0f, args.In(A), lda, args.In(B), ldb, 0.0f, c, n);
      got = args.Read(c);
      EXPECT_EQ(OutsideSummationBound(
                    got, want, m, n, k, [&](int64_t i, int64_t l) { return ta ? A[l * lda + i] : A[i * lda + l]; },
                    [&](int64_t l, int64_t j) { return tb ? B[j * ldb + l] : B[l * ldb + j]; }),
                0);
    }
  }
}

// Convolutions with bf16 inputs, on each path: every pass against the CPU's emulation
// (operands rounded, fp32 convolution), within the summation-order bound of each output,
// 4 (k + 2) 2^-24 times the same pass on the operands' magnitudes (+1e-6), k the terms
// summed. The 3x3 stride-1 shapes are where cuDNN may pick Winograd, whose TF32 products
// of transformed operands the TF32 plan must refuse.
class CudaBf16ConvTest : public CudaBf16Test, public ::testing::WithParamInterface<CudaBackendOptions::ConvPath> {
 protected:
  void SetUp() override {
    options_.conv = GetParam();
    CudaBf16Test::SetUp();
  }
};

TEST_P(CudaBf16ConvTest, ConvolutionsMatchTheCpuEmulation) {
  auto fp32 = CreateCpuBackend();  // for the magnitudes
  TestRng rng(28);
  std::vector<Conv2dShape> shapes;
  auto add = [&](int64_t n, int64_t h, int64_t w, int64_t c, int64_t oc, int64_t k, int64_t st, int64_t pad) {
    Conv2dShape s;
    s.batch = n; s.in_h = h; s.in_w = w; s.in_c = c; s.out_c = oc; s.kernel_h = s.kernel_w = k;
    s.stride_h = s.stride_w = st; s.pad_h = s.pad_w = pad;
    shapes.push_back(s);
  };
  add(3, 28, 28, 1, 32, 3, 1, 1);   // the CNN's first layer
  add(2, 14, 14, 32, 64, 3, 1, 1);  // and its second
  add(2, 9, 7, 3, 5, 3, 2, 1);      // strided
  add(4, 6, 6, 8, 16, 1, 1, 0);     // 1x1
  for (const Conv2dShape& s : shapes) {
    SCOPED_TRACE(::testing::Message() << "conv N=" << s.batch << " " << s.in_h << "x" << s.in_w << "x" << s.in_c
                                      << " -> " << s.out_c << " k" << s.kernel_h << " stride " << s.stride_h);
    const int64_t xn = s.batch * s.in_h * s.in_w * s.in_c, yn = s.col_rows() * s.out_c,
                  wn = s.kernel_h * s.kernel_w * s.in_c * s.out_c;
    const std::vector<float> x = rng.Vector(xn), w = rng.Vector(wn), dy = rng.Vector(yn), dw0 = rng.Vector(wn);
    auto magnitude = [](std::vector<float> v) {
      for (float& e : v) e = std::fabs(kernels::cpu::RoundToBf16(e));
      return v;
    };
    const std::vector<float> ax = magnitude(x), aw = magnitude(w), ady = magnitude(dy);
    // The passes on one backend: y, dx, dw with beta 0 and 1 (from dw0, or |dw0| for
    // the magnitudes).
    auto passes = [&](Backend& be, const std::vector<float>& x_, const std::vector<float>& w_,
                      const std::vector<float>& dy_, const std::vector<float>& dw0_) {
      Args a(be);
      float* ws = a.Out<float>(static_cast<int64_t>(be.Conv2dWorkspaceBytes(s) / sizeof(float)) + 1);
      float* y = a.Out<float>(yn);
      float* dx = a.Out<float>(xn);
      float* dw_0 = a.Out<float>(wn);
      float* dw_1 = a.In(dw0_);
      be.Conv2dForward(s, a.In(x_), a.In(w_), y, ws);
      be.Conv2dBackwardData(s, a.In(dy_), a.In(w_), dx, ws);
      be.Conv2dBackwardFilter(s, a.In(x_), a.In(dy_), 0.0f, dw_0, ws);
      be.Conv2dBackwardFilter(s, a.In(x_), a.In(dy_), 1.0f, dw_1, ws);
      return std::vector<std::vector<float>>{a.Read(y), a.Read(dx), a.Read(dw_0), a.Read(dw_1)};
    };
    const auto got = passes(*gpu_, x, w, dy, dw0);
    const auto want = passes(*cpu_, x, w, dy, dw0);
    const auto mag = passes(*fp32, ax, aw, ady, magnitude(dw0));
    const int64_t terms[] = {s.kernel_h * s.kernel_w * s.in_c, s.kernel_h * s.kernel_w * s.out_c, s.col_rows(),
                             s.col_rows() + 1};
    const char* names[] = {"y", "dx", "dw (beta 0)", "dw (beta 1)"};
    for (size_t p = 0; p < 4; ++p) {
      int64_t bad = 0;
      for (size_t i = 0; i < want[p].size(); ++i) {
        const double tol = SummationTolerance(terms[p], mag[p][i]);
        if (!(std::fabs(double{got[p][i]} - want[p][i]) <= tol) && ++bad <= 3) {
          ADD_FAILURE() << names[p] << "[" << i << "]: gpu " << got[p][i] << " cpu " << want[p][i] << " (tol " << tol
                        << ")";
        }
      }
      EXPECT_EQ(bad, 0) << names[p] << ": " << bad << " of " << want[p].size() << " outside the bound";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, CudaBf16ConvTest, ::testing::ValuesIn(ConvPaths()), ConvPathName);

// The packed-B path of the recurrent layers: B converted once (GemmPackB), A per call,
// A a column slice of a wider matrix (an LSTM step's h_{t-1} inside the sequence).
TEST_F(CudaBf16Test, PackedGemmMatchesTheCpuEmulation) {
  TestRng rng(26);
  const int64_t n = 24, k = 40;
  for (bool tb : {false, true}) {
    for (int64_t m : {int64_t{4}, int64_t{70}}) {
      SCOPED_TRACE(::testing::Message() << "tb=" << tb << " m=" << m);
      const int64_t lda = 5 * k, ldb = (tb ? k : n) + 5;
      const std::vector<float> A = rng.Vector(m * lda), B = rng.Vector((tb ? n : k) * ldb);
      std::vector<float> ws(cpu_->GemmPackedBBytes(n, k) / sizeof(float) + 1);
      std::vector<float> want(static_cast<size_t>(m * n), 0.5f);
      cpu_->GemmPackedB(m, A.data() + k, lda, cpu_->GemmPackB(tb, n, k, B.data(), ldb, ws.data()), 1.0f,
                        want.data(), n);
      Args args(*gpu_);
      float* c = args.In(std::vector<float>(want.size(), 0.5f));
      uint16_t* gpu_ws = args.Out<uint16_t>(static_cast<int64_t>(gpu_->GemmPackedBBytes(n, k) / sizeof(uint16_t)));
      const Backend::PackedB packed = gpu_->GemmPackB(tb, n, k, args.In(B), ldb, gpu_ws);
      EXPECT_NE(packed.packed, nullptr) << "bf16: B is converted once";
      gpu_->GemmPackedB(m, args.In(A) + k, lda, packed, 1.0f, c, n);
      const std::vector<float> got = args.Read(c);
      EXPECT_EQ(OutsideSummationBound(
                    got, want, m, n, k, [&](int64_t i, int64_t l) { return A[i * lda + k + l]; },
                    [&](int64_t l, int64_t j) { return tb ? B[j * ldb + l] : B[l * ldb + j]; }),
                0);
    }
  }
}

}  // namespace
}  // namespace lockstep

namespace lockstep {
namespace {

// training.precision: BF16 (bf16 GEMM inputs and bf16 activation storage): the storage
// ops bit for bit, then the CNN on both backends. One bf16 rounding that falls the
// other way moves a value by 2^-8 relative, so the model is compared by the norm of
// the first step's gradient difference and by the loss curve, not element-wise.
TEST_F(CudaBackendTest, Bf16StorageOpsMatchTheCpuBitForBit) {
  TestRng rng(25);
  std::vector<float> x = rng.Vector(70001);
  x[0] = 1.0f + 3 * std::ldexp(1.0f, -8);  // a tie, to even (up)
  ExpectSame([&](Backend& be, Args& a, Outputs& o) {
    float* v = a.In(x);
    uint16_t* bits = a.Out<uint16_t>(70001);
    float* back = a.Out<float>(70001);
    float* only = a.In(x);
    be.RoundToBf16Stored(v, bits, 70001);
    be.RoundToBf16Stored(only, nullptr, 70001);
    be.Bf16ToFp32(bits, back, 70001);
    o.arrays["rounded"] = a.Read(v);
    o.arrays["rounded_only"] = a.Read(only);
    o.arrays["bits"] = a.Read(bits);
    o.arrays["expanded"] = a.Read(back);
  }, 0, 0);
}

// One step of a small recurrent model (LSTM 16, GRU 12, Dense 5 over 6 steps of 8
// features, batch 4): the parameter gradients, read back.
std::vector<float> RecurrentModelGrads(Backend& be, ActivationStorage storage) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(MakeLstm(16, /*return_sequences=*/true));
  layers.push_back(MakeGru(12, /*return_sequences=*/false));
  layers.push_back(MakeDense(5, /*use_bias=*/true));
  Result<std::unique_ptr<Model>> created = Model::Create(&be, {6, 8}, std::move(layers));
  EXPECT_TRUE(created.ok()) << created.status().message();
  if (!created.ok()) return {};
  std::unique_ptr<Model> model = std::move(created).value();
  model->set_activation_storage(storage);
  model->InitializeParameters(5);
  const int64_t batch = 4;
  TestRng rng(13);
  const std::vector<float> hx = rng.Vector(batch * 6 * 8);
  std::vector<int32_t> hl(static_cast<size_t>(batch));
  for (int32_t& label : hl) label = static_cast<int32_t>(rng.Next() % 5);
  Tensor x = Tensor::Empty(be, {batch, 6, 8}, DType::kFloat32);
  Tensor labels = Tensor::Empty(be, {batch}, DType::kInt32);
  Tensor dout = Tensor::Empty(be, {batch, 5}, DType::kFloat32);
  be.CopyFromHost(x.raw(), hx.data(), hx.size() * sizeof(float));
  be.CopyFromHost(labels.raw(), hl.data(), hl.size() * sizeof(int32_t));
  StepContext ctx;
  ctx.backend = &be;
  ctx.training = true;
  Tensor out = model->Forward(ctx, x);
  ComputeLoss(be, LossKind::kSoftmaxCrossEntropy, out, labels, 1.0f / batch, &dout);
  model->Backward(ctx, dout);
  std::vector<float> grads(static_cast<size_t>(model->param_count()));
  be.CopyToHost(grads.data(), model->grads().raw(), grads.size() * sizeof(float));
  return grads;
}

// LSTM and GRU keep their gates and states in bf16 (training.precision: BF16), and
// backward writes the gates' gradients over their expansion, in place.
TEST_F(CudaBf16Test, RecurrentModelWithBf16StorageMatchesTheCpu) {
  const std::vector<float> cpu = RecurrentModelGrads(*cpu_, ActivationStorage::kBf16Everywhere);
  const std::vector<float> gpu = RecurrentModelGrads(*gpu_, ActivationStorage::kBf16Everywhere);
  const std::vector<float> cpu_fp32 = RecurrentModelGrads(*cpu_, ActivationStorage::kFp32);
  ASSERT_EQ(cpu.size(), gpu.size());
  const double backends = RelativeL2(cpu, gpu), storage = RelativeL2(cpu_fp32, cpu);
  RecordProperty("grad_rel_diff", std::to_string(backends));
  RecordProperty("bf16_storage_effect", std::to_string(storage));
  std::printf("[bf16 recurrent] cuda vs cpu %.3g, bf16 vs fp32 storage (cpu) %.3g\n", backends, storage);
  // Emulated: 6.9e-8 against a storage effect of 2.4e-3, so a GPU that kept its gates
  // and states in fp32 fails the bound while summation order alone stays far below it.
  constexpr double kBound = 1e-3;
  EXPECT_GT(storage, kBound) << "bf16 storage must round what the layers keep";
  EXPECT_LT(backends, kBound) << "first-step gradients, relative L2";
}

TEST_F(CudaBf16Test, CnnWithBf16StorageMatchesTheCpu) {
  std::vector<float> cpu_params, gpu_params, cpu_grads, gpu_grads;
  std::vector<double> cpu_losses, gpu_losses;
  TrainCnn(*cpu_, 50, &cpu_params, &cpu_losses, ActivationStorage::kBf16Everywhere, &cpu_grads);
  TrainCnn(*gpu_, 50, &gpu_params, &gpu_losses, ActivationStorage::kBf16Everywhere, &gpu_grads);
  ASSERT_EQ(cpu_grads.size(), gpu_grads.size());
  const double grad_l2 = RelativeL2(cpu_grads, gpu_grads);
  RecordProperty("first_step_grad_rel_diff", std::to_string(grad_l2));
  // Measured on the CPU (stand-in): fp32 instead of bf16 storage moves this to 0.0039,
  // fp32 GEMMs and convolutions instead of bf16 ones to 0.052; summation order alone
  // flips a rounding only rarely. (Before the convolutions rounded their operands the
  // two were 0.018 and 0.002, and the bound 5e-3.)
  EXPECT_LT(grad_l2, 2e-3) << "first-step gradients, relative L2";
  EXPECT_NEAR(gpu_losses.front(), cpu_losses.front(), 1e-3 * cpu_losses.front());
  EXPECT_LT(LearnedRatio(cpu_losses), 0.8) << "the reference run must learn";
  EXPECT_NEAR(LearnedRatio(gpu_losses), LearnedRatio(cpu_losses), 0.05);
}

}  // namespace
}  // namespace lockstep
