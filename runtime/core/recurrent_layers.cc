// LSTM and GRU layers with full backpropagation through time. The input
// projection of all T steps is one GEMM over batch * T rows; each step then
// adds h_{t-1} U (a GEMM on strided views of the (batch, T, ...) buffers) and
// runs the pointwise cell kernel; U is packed once per pass for those per-step
// products (Backend::GemmPackB). Forward keeps the gate activations and
// states in scratch for backward; the weight gradients dW and dU are one GEMM
// each over all batch * T rows.
// With bf16 activation storage (training.precision: BF16) the gate activations,
// the GRU's recurrent products and h are kept in bf16 (SavedActivation), rounded
// once the forward's last step is done: the cells computed c and h from unrounded
// values, backward sees the kept ones rounded (a relative 2^-9 at most). For the
// LSTM's h that changes nothing (h only feeds GEMMs, which round their inputs to
// bf16 under BF16, and the layer's output, which the model rounds); the GRU's cell
// also reads h_{t-1} itself. The LSTM's c stays fp32: it carries the sequence's
// memory from step to step. Backward expands the gates into the buffer it writes
// their gradients into (each step's rows are read, then overwritten, by its cell),
// and h straight into its one-step-shifted copy, so bf16 storage needs no fp32 copy
// of what it keeps.
#include "runtime/core/sequence_layers.h"

namespace lockstep {
namespace {

// Shared shape handling, parameters and output/weight-gradient plumbing; G is
// the number of gate blocks (4 for LSTM, 3 for GRU).
class RecurrentBase : public Layer {
 public:
  RecurrentBase(int64_t units, bool return_sequences, int64_t gate_blocks)
      : units_(units), return_sequences_(return_sequences), g_(gate_blocks) {}
  std::string Describe() const override {
    return "units=" + std::to_string(units_) + (return_sequences_ ? " return_sequences" : "");
  }
  Result<Shape> Build(const Shape& in) override {
    if (in.size() != 2) {
      return InvalidArgumentError(Kind() + " expects a (T, features) input, got " + ShapeToString(in));
    }
    if (units_ <= 0) return InvalidArgumentError(Kind() + " units must be > 0, got " + std::to_string(units_));
    input_shape_ = in;
    t_ = in[0];
    f_ = in[1];
    output_shape_ = return_sequences_ ? Shape{t_, units_} : Shape{units_};
    return output_shape_;
  }
  void SetActivationStorage(ActivationStorage storage) override {
    const bool bf16 = storage != ActivationStorage::kFp32;
    gates_.set_bf16(bf16);
    h_.set_bf16(bf16);
    rec_.set_bf16(bf16);
  }
  void BindParams(const std::vector<Tensor>& p, const std::vector<Tensor>& g) override {
    w_ = p[0].data<float>();
    u_ = p[1].data<float>();
    b_ = p[2].data<float>();
    dw_ = g[0].data<float>();
    du_ = g[1].data<float>();
    db_ = g[2].data<float>();
  }
  double ForwardFlops() const override { return 2.0 * t_ * (f_ + units_) * g_ * units_; }
  double WeightGradFlops() const override { return ForwardFlops(); }

 protected:
  int64_t GateCols() const { return g_ * units_; }
  RecurrentStep StepShape(int64_t batch) const {
    RecurrentStep s;
    s.batch = batch;
    s.units = units_;
    s.gate_stride = t_ * GateCols();
    s.state_stride = t_ * units_;
    return s;
  }
  // The incoming gradient of step t: (pointer, row stride), or null.
  const float* StepDy(const float* dy, int64_t t, int64_t* stride) const {
    if (return_sequences_) {
      *stride = t_ * units_;
      return dy + t * units_;
    }
    *stride = units_;
    return t == t_ - 1 ? dy : nullptr;
  }
  // y from the hidden states h (batch, T, units).
  void WriteOutput(Backend& be, const float* h, float* y, int64_t batch) const {
    if (return_sequences_) {
      be.CopyBytes(y, h, sizeof(float) * static_cast<size_t>(batch * t_ * units_));
      return;
    }
    for (int64_t b = 0; b < batch; ++b) {
      be.CopyBytes(y + b * units_, h + (b * t_ + t_ - 1) * units_, sizeof(float) * units_);
    }
  }
  // x W (+ bias) for all steps into gates (batch * T, G * units).
  void InputProjection(Backend& be, const float* x, const float* bias, float* gates, int64_t batch) const {
    be.Gemm(false, false, batch * t_, GateCols(), f_, 1.0f, x, f_, w_, GateCols(), 0.0f, gates, GateCols());
    be.BiasAdd(gates, bias, batch * t_, GateCols());
  }
  // U (units, G units) packed for the per-step products: trans false for h U
  // (forward), true for d U^T (backward).
  Backend::PackedB PackU(Backend& be, bool trans) {
    const int64_t gc = GateCols();
    const int64_t n = trans ? units_ : gc, k = trans ? gc : units_;
    return be.GemmPackB(trans, n, k, u_, gc, u_packed_.Get(be, be.GemmPackedBBytes(n, k)));
  }
  // h_{t-1} U for step t >= 1 into rows of `out` (gate_stride apart), beta 0 or 1.
  void RecurrentProduct(Backend& be, const Backend::PackedB& u, const float* h, int64_t t, float beta, float* out,
                        int64_t batch) const {
    be.GemmPackedB(batch, h + (t - 1) * units_, t_ * units_, u, beta, out + t * GateCols(), t_ * GateCols());
  }
  // The saved h (batch, T, units) shifted down one step per sample, with a zero row at
  // t = 0: row t of a sample is h_{t-1}. Scratch from the arena (or h_prev_).
  float* ShiftedStates(const StepContext& ctx, int64_t batch) {
    Backend& be = *ctx.backend;
    float* h_prev = TransientFloats(ctx, h_prev_, batch * t_ * units_);
    for (int64_t b = 0; b < batch; ++b) {
      float* dst = h_prev + b * t_ * units_;
      be.ZeroBytes(dst, sizeof(float) * static_cast<size_t>(units_));
      h_.CopyOut(ctx, b * t_ * units_, (t_ - 1) * units_, dst + units_);
    }
    return h_prev;
  }
  // The gates' fp32 values and where their gradients go: with bf16 storage one buffer
  // (the expansion, overwritten step by step by the cells), else the kept values and
  // a separate buffer.
  struct GradTarget {
    const float* values;
    float* grads;
  };
  static GradTarget ValuesAndGrads(const StepContext& ctx, SavedActivation& kept, Scratch& fallback, int64_t n) {
    if (float* expanded = kept.ExpandForOverwrite(ctx)) return {expanded, expanded};
    return {kept.Get(ctx), TransientFloats(ctx, fallback, n)};
  }
  // dW, dU (from d(recurrent products) drec and the shifted states h_prev) and dx
  // from dgates.
  void WeightAndInputGrads(const StepContext& ctx, const float* x, const float* h_prev, const float* dgates,
                           const float* drec, float* dx, int64_t batch) const {
    Backend& be = *ctx.backend;
    const int64_t gc = GateCols();
    be.Gemm(true, false, f_, gc, batch * t_, 1.0f, x, f_, dgates, gc, ctx.grad_beta, dw_, gc);
    // dU = sum_b sum_{t >= 1} h_{t-1}^T drec_t, as one GEMM over batch * T rows (the
    // zero row at t = 0 makes that step's drec contribute nothing).
    be.Gemm(true, false, units_, gc, batch * t_, 1.0f, h_prev, units_, drec, gc, ctx.grad_beta, du_, gc);
    if (dx) be.Gemm(false, true, batch * t_, f_, gc, 1.0f, dgates, gc, w_, gc, 0.0f, dx, f_);
  }

  int64_t units_;
  bool return_sequences_;
  int64_t g_;
  int64_t t_ = 0, f_ = 0;
  float *w_ = nullptr, *u_ = nullptr, *b_ = nullptr;
  float *dw_ = nullptr, *du_ = nullptr, *db_ = nullptr;
  Scratch u_packed_;  // U packed for the step GEMMs (forward, then transposed in backward)
  // Kept from forward for backward: the gate activations (batch, T, G u), h (batch, T,
  // u) and, for the GRU, h_prev U + b_r (batch, T, 3u).
  SavedActivation gates_, h_, rec_;
  Scratch h_prev_;  // backward only (when no transient arena)
};

constexpr float kLstmForgetBias = 1.0f;  // Keras unit_forget_bias, see sequence_layers.h

class LstmLayer final : public RecurrentBase {
 public:
  LstmLayer(int64_t units, bool return_sequences) : RecurrentBase(units, return_sequences, 4) {}
  std::string Kind() const override { return "lstm"; }
  std::vector<ParamSpec> ParamSpecs() const override {
    return {{"kernel", {f_, 4 * units_}, ParamInit::kGlorotUniform, f_, 4 * units_},
            {"recurrent_kernel", {units_, 4 * units_}, ParamInit::kGlorotUniform, units_, 4 * units_},
            {"bias", {4 * units_}, ParamInit::kZeros, 1, 1}};
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t states = batch * t_ * units_;
    float* gates = gates_.Begin(ctx, batch * t_ * GateCols());
    float* c = c_.Floats(be, states);
    float* h = h_.Begin(ctx, states);
    InputProjection(be, x, b_, gates, batch);
    const RecurrentStep s = StepShape(batch);
    const Backend::PackedB u = PackU(be, false);
    for (int64_t t = 0; t < t_; ++t) {
      if (t > 0) RecurrentProduct(be, u, h, t, 1.0f, gates, batch);
      be.LstmCellForward(s, gates + t * GateCols(), t > 0 ? c + (t - 1) * units_ : nullptr,
                         c + t * units_, h + t * units_, kLstmForgetBias);
    }
    gates_.Seal(ctx);
    h_.Seal(ctx);
    WriteOutput(be, h, y, batch);
  }
  void Backward(const StepContext& ctx, const float* x, const float*, const float* dy, float* dx,
                int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t states = batch * t_ * units_, gc = GateCols();
    const GradTarget g = ValuesAndGrads(ctx, gates_, dgates_, batch * t_ * gc);
    const float* gates = g.values;
    float* dgates = g.grads;
    const float* c = c_.Floats(be, states);
    float* dc = TransientFloats(ctx, dc_, batch * units_);
    float* dh = TransientFloats(ctx, dh_, batch * units_);
    be.ZeroBytes(dc, sizeof(float) * static_cast<size_t>(batch * units_));
    const RecurrentStep s = StepShape(batch);
    const Backend::PackedB ut = PackU(be, true);
    for (int64_t t = t_ - 1; t >= 0; --t) {
      int64_t dy_stride = 0;
      const float* dy_t = StepDy(dy, t, &dy_stride);
      be.LstmCellBackward(s, gates + t * gc, t > 0 ? c + (t - 1) * units_ : nullptr, c + t * units_,
                          dy_t, dy_stride, t < t_ - 1 ? dh : nullptr, dc, dgates + t * gc);
      // dh_{t-1} = dgates_t U^T
      if (t > 0) {
        be.GemmPackedB(batch, dgates + t * gc, t_ * gc, ut, 0.0f, dh, units_);
      }
    }
    be.BiasBackward(dgates, batch * t_, gc, ctx.grad_beta, db_);
    WeightAndInputGrads(ctx, x, ShiftedStates(ctx, batch), dgates, dgates, dx, batch);
  }

 private:
  Scratch c_;  // forward: c (batch, T, u), always fp32
  Scratch dgates_, dc_, dh_;  // backward only (when no transient arena)
};

class GruLayer final : public RecurrentBase {
 public:
  GruLayer(int64_t units, bool return_sequences) : RecurrentBase(units, return_sequences, 3) {}
  std::string Kind() const override { return "gru"; }
  std::vector<ParamSpec> ParamSpecs() const override {
    return {{"kernel", {f_, 3 * units_}, ParamInit::kGlorotUniform, f_, 3 * units_},
            {"recurrent_kernel", {units_, 3 * units_}, ParamInit::kGlorotUniform, units_, 3 * units_},
            {"bias", {2, 3 * units_}, ParamInit::kZeros, 1, 1}};
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t gc = GateCols();
    float* gates = gates_.Begin(ctx, batch * t_ * gc);
    float* rec = rec_.Begin(ctx, batch * t_ * gc);
    float* h = h_.Begin(ctx, batch * t_ * units_);
    InputProjection(be, x, b_, gates, batch);
    const RecurrentStep s = StepShape(batch);
    const Backend::PackedB u = PackU(be, false);
    for (int64_t t = 0; t < t_; ++t) {
      if (t > 0) RecurrentProduct(be, u, h, t, 0.0f, rec, batch);
      be.GruCellForward(s, gates + t * gc, rec + t * gc, b_ + gc, t > 0 ? h + (t - 1) * units_ : nullptr,
                        h + t * units_);
    }
    gates_.Seal(ctx);
    rec_.Seal(ctx);
    h_.Seal(ctx);
    WriteOutput(be, h, y, batch);
  }
  void Backward(const StepContext& ctx, const float* x, const float*, const float* dy, float* dx,
                int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t gc = GateCols();
    const GradTarget g = ValuesAndGrads(ctx, gates_, dgates_, batch * t_ * gc);
    const GradTarget r = ValuesAndGrads(ctx, rec_, drec_, batch * t_ * gc);
    const float *gates = g.values, *rec = r.values;
    float *dgates = g.grads, *drec = r.grads;
    // Row t of a sample is h_{t-1}: the cells' previous state, and dU's left operand.
    const float* h_prev = ShiftedStates(ctx, batch);
    float* dh = TransientFloats(ctx, dh_, batch * units_);
    const RecurrentStep s = StepShape(batch);
    const Backend::PackedB ut = PackU(be, true);
    for (int64_t t = t_ - 1; t >= 0; --t) {
      int64_t dy_stride = 0;
      const float* dy_t = StepDy(dy, t, &dy_stride);
      be.GruCellBackward(s, gates + t * gc, rec + t * gc, t > 0 ? h_prev + t * units_ : nullptr, dy_t,
                         dy_stride, t < t_ - 1 ? dh : nullptr, dh, dgates + t * gc, drec + t * gc);
      // dh_{t-1} = z * dh_t (written above) + drec_t U^T
      if (t > 0) {
        be.GemmPackedB(batch, drec + t * gc, t_ * gc, ut, 1.0f, dh, units_);
      }
    }
    be.BiasBackward(dgates, batch * t_, gc, ctx.grad_beta, db_);
    be.BiasBackward(drec, batch * t_, gc, ctx.grad_beta, db_ + gc);
    WeightAndInputGrads(ctx, x, h_prev, dgates, drec, dx, batch);
  }

 private:
  Scratch dgates_, drec_, dh_;  // backward only (when no transient arena)
};

}  // namespace

std::unique_ptr<Layer> MakeLstm(int64_t units, bool return_sequences) {
  return std::make_unique<LstmLayer>(units, return_sequences);
}
std::unique_ptr<Layer> MakeGru(int64_t units, bool return_sequences) {
  return std::make_unique<GruLayer>(units, return_sequences);
}

}  // namespace lockstep
