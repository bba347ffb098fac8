// rnnkit's compiled CPU kernels: one recurrent layer in one direction, forward and backward through time.
//
// The functions of rnnkit/models/fused.py (the Python fast path, which stays the fallback), input projection
// included, in one C++ call per layer, direction and pass, so that no Python runs per time step:
//   - every float32 matrix product runs on oneDNN (see `matmul_t`), the recurrent weights reordered once per
//     call, W_hh for the forward product h W_hh^T and W_hh^T for the backward one dgates W_hh; the input
//     projection x W_ih^T + b is one product per block of ~1024 rows (`Projection`), and so are the weight and
//     input gradients, summed during the backward loop (`BlockGrads`);
//   - the gate math of a step is one loop over the batch rows (at::parallel_for) and the hidden units
//     (vectorised: sigmoid and tanh are written with an inlined exp that the compiler turns into SIMD code);
//   - the buffers of a call are allocated once, before the time loop, the large ones from a pool kept between
//     calls (see `Pool`);
//   - decoding (no autograd): one step of the whole stack per call (`decode_step`).
// Conventions are fused.py's and torch.nn's: time-major (T, B, .), gate order LSTM (i, f, g, o), GRU (r, z, n)
// with n = tanh(x_n + r * (W_hn h + b_hn)). mask (T, B) bool: where false the state is carried over, the
// output is zero and no gradient flows through the step's gates. `reverse` walks t = T-1 .. 0.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace {

using at::Tensor;

// --- Elementwise math -------------------------------------------------------------------------------
// float: Cephes' expf (range reduction by ln 2, degree-5 polynomial, relative error ~1e-7), branch-free so
// that the loops vectorise; NaN propagates (the clamps keep an unordered input). float64 (the testing
// precision) uses the C library.

inline float exp_f(float x) {
  x = 88.3762626647949f < x ? 88.3762626647949f : x;
  x = x < -87.3365447504f ? -87.3365447504f : x;
  float fx = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  float z = r * r;
  float y = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
             1.6666665459e-1f) * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(fx) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_f(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

inline float tanh_(float x) {
  float t = 1.0f - 2.0f / (exp_f(2.0f * x) + 1.0f);
  float x2 = x * x;  // near 0 the formula above loses relative precision: Taylor to x^7
  float p = x * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * -0.0539682540f)));
  return std::fabs(x) < 0.0625f ? p : t;
}
inline double tanh_(double x) { return std::tanh(x); }

// --- Matrix products -------------------------------------------------------------------------------
// float32 products run on oneDNN through torch's own `mkldnn::_linear_pointwise` op (what inductor calls),
// the recurrent weights reordered once per call by `mkldnn::_reorder_linear_weight`. On AMD CPUs MKL takes
// a slower code path: measured here, a (32 x 256) x (256 x 1024) step took 99 us on oneDNN against
// 199-207 us for torch.mm and for MKL's packed GEMM (`_mkl_linear`). float64 (and a torch without oneDNN)
// uses at::mm.

const c10::OperatorHandle* find_op(const char* name) {
  auto handle = c10::Dispatcher::singleton().findSchema({name, ""});
  return handle.has_value() ? new c10::OperatorHandle(*handle) : nullptr;  // kept for the process
}

const c10::OperatorHandle* onednn_linear() {
  static const c10::OperatorHandle* op = find_op("mkldnn::_linear_pointwise");
  return op;
}

const c10::OperatorHandle* onednn_reorder() {
  static const c10::OperatorHandle* op = find_op("mkldnn::_reorder_linear_weight");
  return op;
}

bool use_onednn(const Tensor& t) {
  return t.scalar_type() == at::kFloat && onednn_linear() != nullptr && onednn_reorder() != nullptr;
}

// y = x w^T (+ b): x (M, K), w (N, K) (views allowed; or a weight from `pack`) -> a new (M, N).
Tensor matmul_t(const Tensor& x, const Tensor& w, const c10::optional<Tensor>& b = c10::nullopt) {
  if (use_onednn(x)) {
    torch::jit::Stack stack{x, w, b, std::string("none"), c10::List<c10::optional<at::Scalar>>(), c10::IValue()};
    onednn_linear()->callBoxed(&stack);
    return stack[0].toTensor();
  }
  return b.has_value() && b->defined() ? at::addmm(*b, x, w.t()) : at::mm(x, w.t());
}

// w (N, K) contiguous in the layout `matmul_t` reads fastest for a batch of `rows`.
Tensor pack(const Tensor& w, int64_t rows) {
  if (!use_onednn(w)) return w;
  torch::jit::Stack stack{w, rows};
  onednn_reorder()->callBoxed(&stack);
  return stack[0].toTensor();
}

Tensor contiguous_copy(const Tensor& t);

// b^T a (Q, P) for a (N, P), b (N, Q): a weight gradient (transposed), summed over N rows. On oneDNN computed
// as b^T a (the orientation measured fastest: 9 ms against 12 ms for a^T b at N 3200, P 1024), 2048 rows at a
// time: oneDNN copies a transposed operand whole (+64 MB at N 32768, Q 512, where blocks of 2048 rows added
// 7 MB in the same time), and a strided one sent it to a reference implementation 1000x slower, so the
// blocks are made contiguous first. (The backward loops call it on blocks of ~1024 rows: one product each.)
Tensor gram_t(const Tensor& a, const Tensor& b) {
  if (!use_onednn(a)) return at::mm(b.t(), a);
  const int64_t N = a.size(0), width = std::max(a.size(1), b.size(1));
  const int64_t rows = std::max<int64_t>(2048, (int64_t(1) << 20) / width);  // ~4 MB of float32 per operand
  Tensor sum;  // (Q, P)
  for (int64_t first = 0; first < N; first += rows) {
    const int64_t n = std::min(rows, N - first);
    Tensor part = matmul_t(contiguous_copy(b.narrow(0, first, n)).t(), contiguous_copy(a.narrow(0, first, n)).t());
    sum = sum.defined() ? sum.add_(part) : part;
  }
  return sum;
}

// a^T b (P, Q), contiguous.
Tensor gram(const Tensor& a, const Tensor& b) { return gram_t(a, b).t().contiguous(); }

// --- Memory ----------------------------------------------------------------------------------------
// A fresh 256 MB buffer costs ~65,000 page faults when it is first written: measured here 110-260 ms to
// allocate and fill, against 58 ms to refill one already in memory (torch.nn's LSTM step at (128, 256, 512)
// spends a third of its time in the kernel, most of it faulting). So the large buffers of a call (saved
// activations and states, gradients through time) come from a pool that keeps them between calls: a block
// is free again once no tensor uses its storage (the pool's own reference is the only one left). Asking the
// kernel for 2 MB pages instead (madvise) was fast alone but slower inside a training step (compaction).

class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool();  // never destroyed: tensors may outlive static destruction
    return *pool;
  }

  // A new (uninitialised) tensor of these sizes; from a free block when one fits (at most 1.5x the size).
  Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    const int64_t n = c10::multiply_integers(sizes);
    const int64_t bytes = n * static_cast<int64_t>(options.dtype().itemsize());
    if (bytes < kSmallest || limit_ <= 0) return at::empty(sizes, options);
    std::lock_guard<std::mutex> guard(mutex_);
    Tensor* best = nullptr;
    for (Tensor& block : blocks_) {
      if (block.dtype() == options.dtype() && block.storage().use_count() == 1 && block.numel() >= n &&
          block.numel() <= n + n / 2 && (!best || block.numel() < best->numel()))
        best = &block;
    }
    if (!best) best = add(n, bytes, options);
    if (!best) return at::empty(sizes, options);
    return best->narrow(0, 0, n).view(sizes);
  }

  int64_t bytes() {
    std::lock_guard<std::mutex> guard(mutex_);
    return held_;
  }

  // Drops the free blocks; limit_bytes < 0 keeps the current limit (0 turns the pool off).
  int64_t release(int64_t limit_bytes) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (limit_bytes >= 0) limit_ = limit_bytes;
    evict(held_);
    return held_;
  }

 private:
  static constexpr int64_t kSmallest = int64_t(1) << 20;

  // A new block, after dropping free ones if the pool would grow past its limit; nullptr when it cannot.
  Tensor* add(int64_t n, int64_t bytes, const at::TensorOptions& options) {
    if (held_ + bytes > limit_) evict(held_ + bytes - limit_);
    if (held_ + bytes > limit_) return nullptr;
    blocks_.push_back(at::empty({n}, options));
    held_ += bytes;
    return &blocks_.back();
  }

  void evict(int64_t wanted) {  // frees free blocks, largest first, until `wanted` bytes are gone
    std::sort(blocks_.begin(), blocks_.end(), [](const Tensor& a, const Tensor& b) { return a.nbytes() > b.nbytes(); });
    int64_t freed = 0;
    auto keep = std::remove_if(blocks_.begin(), blocks_.end(), [&](const Tensor& block) {
      if (freed >= wanted || block.storage().use_count() != 1) return false;
      freed += static_cast<int64_t>(block.nbytes());
      return true;
    });
    blocks_.erase(keep, blocks_.end());
    held_ -= freed;
  }

  std::mutex mutex_;
  std::deque<Tensor> blocks_;  // a deque: pointers to blocks stay valid while others are added
  int64_t held_ = 0;
  int64_t limit_ = int64_t(4) << 30;
};

Tensor big_empty(at::IntArrayRef sizes, const at::TensorOptions& options) { return Pool::get().empty(sizes, options); }

Tensor contiguous_copy(const Tensor& t) {
  return t.is_contiguous() ? t : big_empty(t.sizes(), t.options()).copy_(t);
}

// The input projection x W_ih^T + b, computed a block of steps at a time when a step first needs it: one
// product per block of ~1024 rows (efficient), and no (T, B, G) tensor, whose pages would be new each call.
template <typename T>
class Projection {
 public:
  Projection(const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& b)
      : x_(x), w_(w_ih), b_(b), steps_(std::max<int64_t>(1, std::min<int64_t>(x.size(0), 1024 / x.size(1) + 1))) {}

  // Row block of step t: (B, G).
  const T* step(int64_t t) {
    if (!block_.defined() || t < first_ || t >= first_ + steps_) {
      first_ = t / steps_ * steps_;
      const int64_t n = std::min(steps_, x_.size(0) - first_);
      block_ = matmul_t(x_.narrow(0, first_, n).reshape({-1, x_.size(2)}), w_, b_);
    }
    return block_.data_ptr<T>() + (t - first_) * x_.size(1) * w_.size(0);
  }

 private:
  const Tensor& x_;
  const Tensor& w_;
  const c10::optional<Tensor>& b_;
  const int64_t steps_;
  int64_t first_ = 0;
  Tensor block_;
};

// --- Shared helpers ---------------------------------------------------------------------------------

struct Walk {  // the order of the steps: step s (0 .. T-1) is time t(s); its predecessor is t(s - 1)
  int64_t T;
  bool reverse;
  int64_t t(int64_t s) const { return reverse ? T - 1 - s : s; }
};

// Rows of the batch handled by one task: enough work per task to pay for waking a thread.
inline int64_t grain(int64_t row_work) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_work)); }

inline const bool* mask_ptr(const c10::optional<Tensor>& mask) {
  return mask.has_value() && mask->defined() ? mask->data_ptr<bool>() : nullptr;
}

void check_inputs(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& h0,
                  const c10::optional<Tensor>& mask, int64_t gates) {
  TORCH_CHECK(x.dim() == 3 && h0.dim() == 2 && w_hh.dim() == 2 && w_ih.dim() == 2,
              "rnnkit_cpu: expected x (T, B, D), w_ih (G*H, D), w_hh (G*H, H), h0 (B, H)");
  TORCH_CHECK(x.is_contiguous() && h0.is_contiguous() && w_hh.is_contiguous() && w_ih.is_contiguous(),
              "rnnkit_cpu: inputs must be contiguous");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == h0.scalar_type() && dtype == w_hh.scalar_type() && dtype == w_ih.scalar_type(),
              "rnnkit_cpu: one dtype for all inputs");
  const int64_t H = h0.size(1);
  TORCH_CHECK(x.size(0) > 0 && w_ih.size(0) == gates * H && w_ih.size(1) == x.size(2) &&
                  w_hh.size(0) == gates * H && w_hh.size(1) == H && h0.size(0) == x.size(1),
              "rnnkit_cpu: inconsistent shapes");
  if (mask.has_value() && mask->defined()) {
    TORCH_CHECK(mask->scalar_type() == at::kBool && mask->is_contiguous() && mask->dim() == 2 &&
                    mask->size(0) == x.size(0) && mask->size(1) == x.size(1),
                "rnnkit_cpu: mask must be a contiguous (T, B) bool tensor");
  }
}

void check_bias(const c10::optional<Tensor>& b, const Tensor& w_ih) {
  if (b.has_value() && b->defined())
    TORCH_CHECK(b->is_contiguous() && b->dim() == 1 && b->size(0) == w_ih.size(0) &&
                    b->scalar_type() == w_ih.scalar_type(),
                "rnnkit_cpu: a bias must be a contiguous (G*H,) of the weights' dtype");
}

// The gradient reaching the last processed step's h: from its output (unless padded) and from h_T.
template <typename T>
void first_grad(const Tensor& grad_out, const Tensor& grad_hT, const bool* m, int64_t t, T* G) {
  const int64_t B = grad_hT.size(0), H = grad_hT.size(1);
  const T *gout = grad_out.data_ptr<T>() + t * B * H, *ghT = grad_hT.data_ptr<T>();
  for (int64_t b = 0; b < B; ++b) {
    const bool real = !m || m[t * B + b];
    for (int64_t j = 0; j < H; ++j) G[b * H + j] = (real ? gout[b * H + j] : T(0)) + ghT[b * H + j];
  }
}

// The state entering step s: h0 for the first, else the state its predecessor left.
inline Tensor previous(const Tensor& states, const Tensor& initial, const Walk& walk, int64_t s) {
  return s ? states[walk.t(s - 1)] : initial;
}

// The backward loops keep `base` (B, H): what reaches h_t besides the recurrent product dgates_{t+1} W_hh,
// which `matmul_t` returns as a new tensor and the next step adds in.
template <typename T>
void add_product(T* __restrict__ base_row, const T* y, int64_t b, int64_t H) {
  if (!y) return;
  const T* __restrict__ yr = y + b * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) base_row[j] += yr[j];
}

// The next step's base on a real step: the output gradient of h_{t-1} (zero when it is padded or absent).
template <typename T>
void start_base(T* __restrict__ next_row, const T* doutp, int64_t H) {
  if (doutp) {
    std::memcpy(next_row, doutp, H * sizeof(T));
  } else {
    std::memset(next_row, 0, H * sizeof(T));
  }
}

// On a padded step h_t = h_{t-1}: the whole gradient passes on, plus h_{t-1}'s own output gradient.
template <typename T>
void carry_base(T* __restrict__ next_row, const T* __restrict__ row, const T* doutp, int64_t H) {
  for (int64_t j = 0; j < H; ++j) next_row[j] = row[j] + (doutp ? doutp[j] : T(0));
}

// The gradients that sum over steps, a block of steps at a time during the backward loop: the loop writes each
// step's d x_proj (and, for the GRU, its d(W_hh h + b_hh)) into a block buffer of ~1024 rows; when it leaves a
// block, that block's dx rows, d W_ih, d b and d W_hh are computed (one product each on oneDNN) and summed. No
// (T, B, G) gradient is ever allocated (at (128, 256, 512) the LSTM's would be 268 MB), and a block's products
// are as efficient as one over all steps.
template <typename T>
class BlockGrads {
 public:
  BlockGrads(const Tensor& x, const Tensor& w_ih, const Tensor& h0, const Tensor& hs, const Walk& walk,
             int64_t rec_width, bool need_dx, bool need_db_in, bool need_db_rec)
      : x_(x), h0_(h0), hs_(hs), walk_(walk), B_(x.size(1)), steps_(std::min<int64_t>(x.size(0), 1024 / x.size(1) + 1)),
        need_db_in_(need_db_in), need_db_rec_(need_db_rec) {
    const int64_t G = w_ih.size(0);
    in_ = at::empty({steps_, B_, G}, x.options());
    rec_ = rec_width ? at::empty({steps_, B_, rec_width}, x.options()) : in_;
    w_ih_t_ = need_dx ? w_ih.t().contiguous() : Tensor();
    dx_ = need_dx ? big_empty(x.sizes(), x.options()) : Tensor();
  }

  // Where step t's rows go: (B, G) of d x_proj, and (B, rec_width) of the recurrent part (GRU), or the same.
  T* in_rows(int64_t t) { return in_.data_ptr<T>() + slot(t) * B_ * in_.size(2); }
  T* rec_rows(int64_t t) { return rec_.data_ptr<T>() + slot(t) * B_ * rec_.size(2); }
  Tensor rec_step(int64_t t) { return rec_[slot(t)]; }  // (B, rec_width), after rec_rows(t)

  // {dx or undefined, d W_ih, d b_in or undefined, d W_hh, d b_rec or undefined} once every step is in.
  std::vector<Tensor> finish() {
    flush();
    if (both_t_.defined()) {  // [d W_ih, d W_hh]^T, see flush
      const int64_t D = x_.size(2);
      dw_ih_ = both_t_.narrow(0, 0, D).t().contiguous();
      dw_hh_ = both_t_.narrow(0, D, both_t_.size(0) - D).t().contiguous();
    }
    return {dx_, dw_ih_, need_db_in_ ? db_in_ : Tensor(), dw_hh_, need_db_rec_ ? db_rec_ : Tensor()};
  }

 private:
  int64_t slot(int64_t t) {
    const int64_t first = t / steps_ * steps_;
    if (first != first_) {
      flush();
      first_ = first;
    }
    return t - first;
  }

  static void add(Tensor& sum, const Tensor& part) { sum = sum.defined() ? sum.add_(part) : part; }

  // h_{t-1} of the block's steps t0 .. t0 + n - 1, as (n * B, H): hs[t - 1] (reverse: hs[t + 1]), a view, but
  // for the first step processed, whose h_{t-1} is h0 (then a copy).
  Tensor previous_states(int64_t t0, int64_t n) const {
    const int64_t H = hs_.size(2), first_step = walk_.t(0);
    const int64_t lo = walk_.reverse ? t0 + 1 : t0 - 1;  // hs index of step t0's h_{t-1}
    if (first_step < t0 || first_step >= t0 + n) return hs_.narrow(0, lo, n).reshape({n * B_, H});
    Tensor prev = at::empty({n, B_, H}, hs_.options());
    const int64_t at_h0 = first_step - t0;  // 0 forward, n - 1 reverse
    prev[at_h0].copy_(h0_);
    if (n > 1) prev.narrow(0, walk_.reverse ? 0 : 1, n - 1).copy_(hs_.narrow(0, walk_.reverse ? lo : lo + 1, n - 1));
    return prev.view({n * B_, H});
  }

  void flush() {
    if (first_ < 0) return;
    const int64_t Tn = x_.size(0), t0 = first_, n = std::min(steps_, Tn - t0), rows = n * B_;
    const Tensor d_in = in_.narrow(0, 0, n).reshape({rows, in_.size(2)});
    const Tensor d_rec = rec_.narrow(0, 0, n).reshape({rows, rec_.size(2)});
    const Tensor x = x_.narrow(0, t0, n).reshape({rows, x_.size(2)});
    if (dx_.defined()) dx_.narrow(0, t0, n).view({rows, x_.size(2)}).copy_(matmul_t(d_in, w_ih_t_));
    if (need_db_in_) add(db_in_, d_in.sum(0));
    if (need_db_rec_) add(db_rec_, d_rec.sum(0));
    const Tensor prev = previous_states(t0, n);  // (rows, H)
    if (rec_.data_ptr() == in_.data_ptr()) {
      // LSTM, Elman: both weight gradients from one product, [x, h_{t-1}]^T d, which reads d (and makes oneDNN
      // copy it) once instead of twice.
      const int64_t D = x_.size(2), H = prev.size(1);
      Tensor both = at::empty({rows, D + H}, x.options());
      both.narrow(1, 0, D).copy_(x);
      both.narrow(1, D, H).copy_(prev);
      add(both_t_, gram_t(d_in, both));  // (D + H, G)
    } else {
      add(dw_ih_, gram(d_in, x));
      add(dw_hh_, gram(d_rec, prev));
    }
    first_ = -1;
  }

  const Tensor &x_, &h0_, &hs_;
  const Walk walk_;
  const int64_t B_, steps_;
  const bool need_db_in_, need_db_rec_;
  Tensor in_, rec_, w_ih_t_, dx_, dw_ih_, db_in_, dw_hh_, db_rec_, both_t_;
  int64_t first_ = -1;
};

// --- LSTM -------------------------------------------------------------------------------------------

// keep = false (no gradient will be asked: evaluation, generation): the activations and cell states of a step
// are not kept for backward, so two (B, H) cell rows and one (B, 4H) activation row serve every step.
template <typename T>
std::vector<Tensor> lstm_forward_impl(const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& bias,
                                      const Tensor& w_hh, const Tensor& h0, const Tensor& c0,
                                      const c10::optional<Tensor>& mask, bool reverse, bool keep) {
  const int64_t Tn = x.size(0), B = x.size(1), H = h0.size(1), G = 4 * H;
  Projection<T> xproj(x, w_ih, bias);
  Tensor acts = big_empty({keep ? Tn : 1, B, G}, x.options());  // the activations (i, f, g, o)
  Tensor hs = big_empty({Tn, B, H}, x.options()), cs = big_empty({keep ? Tn : 2, B, H}, x.options());
  const bool* m = mask_ptr(mask);
  Tensor out = m ? big_empty({Tn, B, H}, x.options()) : hs;
  const Tensor w = pack(w_hh, B);
  T *a = acts.data_ptr<T>(), *h = hs.data_ptr<T>(), *o = out.data_ptr<T>();
  const Walk walk{Tn, reverse};
  auto cell = [&](int64_t s) { return cs.data_ptr<T>() + (keep ? walk.t(s) : s % 2) * B * H; };
  for (int64_t s = 0; s < Tn; ++s) {
    const int64_t t = walk.t(s);
    const Tensor h_prev = previous(hs, h0, walk, s);
    const T *hp = h_prev.data_ptr<T>(), *cp = s ? cell(s - 1) : c0.data_ptr<T>();
    T *c = cell(s), *as = a + (keep ? t : 0) * B * G;
    const Tensor product = matmul_t(h_prev, w);  // (B, 4H) = h_{t-1} W_hh^T
    const T *y = product.data_ptr<T>(), *xp = xproj.step(t);
    at::parallel_for(0, B, grain(8 * H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T* __restrict__ xr = xp + b * G;
        T* __restrict__ g = as + b * G;
        const T* __restrict__ r = y + b * G;
        const T* __restrict__ cprev = cp + b * H;
        T* __restrict__ cn = c + b * H;
        T* __restrict__ hn = h + (t * B + b) * H;
        if (m && !m[t * B + b]) {  // padded step: the state is carried, the output is zero
          std::memcpy(cn, cprev, H * sizeof(T));
          std::memcpy(hn, hp + b * H, H * sizeof(T));
          std::memset(o + (t * B + b) * H, 0, H * sizeof(T));
          continue;
        }
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          T i = sigmoid(xr[j] + r[j]), f = sigmoid(xr[H + j] + r[H + j]);
          T gg = tanh_(xr[2 * H + j] + r[2 * H + j]), oo = sigmoid(xr[3 * H + j] + r[3 * H + j]);
          T cc = f * cprev[j] + i * gg;
          g[j] = i;
          g[H + j] = f;
          g[2 * H + j] = gg;
          g[3 * H + j] = oo;
          cn[j] = cc;
          hn[j] = oo * tanh_(cc);
        }
        if (m) std::memcpy(o + (t * B + b) * H, hn, H * sizeof(T));
      }
    });
  }
  const int64_t last = walk.t(Tn - 1);
  Tensor h_T = hs[last].clone(), c_T = at::from_blob(cell(Tn - 1), {B, H}, x.options()).clone();
  if (!keep) return {out, h_T, c_T};
  return {out, h_T, c_T, hs, cs, acts};
}

template <typename T>
std::vector<Tensor> lstm_backward_impl(const Tensor& grad_out, const Tensor& grad_hT, const Tensor& grad_cT,
                                       const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& acts,
                                       const Tensor& hs, const Tensor& cs, const Tensor& h0, const Tensor& c0,
                                       const c10::optional<Tensor>& mask, bool reverse, bool need_dx, bool need_db) {
  const int64_t Tn = acts.size(0), B = acts.size(1), H = hs.size(2), G = 4 * H;
  Tensor bases = at::empty({2, B, H}, hs.options());
  Tensor dc = grad_cT.clone();  // the gradient reaching c_t, carried back step by step
  const bool* m = mask_ptr(mask);
  const Tensor w = pack(w_hh.t().contiguous(), B);
  const T *a = acts.data_ptr<T>(), *c = cs.data_ptr<T>(), *gout = grad_out.data_ptr<T>();
  T* dcp = dc.data_ptr<T>();
  T *cur = bases[0].data_ptr<T>(), *next = bases[1].data_ptr<T>();
  const Walk walk{Tn, reverse};
  BlockGrads<T> sums(x, w_ih, h0, hs, walk, 0, need_dx, need_db, false);  // dgates = d x_proj, block by block
  first_grad<T>(grad_out, grad_hT, m, walk.t(Tn - 1), cur);
  Tensor product;  // dgates_{t+1} W_hh
  for (int64_t s = Tn - 1; s >= 0; --s) {
    const int64_t t = walk.t(s), tp = s ? walk.t(s - 1) : -1;
    const T* cp = previous(cs, c0, walk, s).data_ptr<T>();
    const T* y = product.defined() ? product.data_ptr<T>() : nullptr;
    T* dg = sums.in_rows(t);
    at::parallel_for(0, B, grain(8 * H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        T* __restrict__ gdh = cur + b * H;
        T* __restrict__ gn = next + b * H;
        const T* doutp = (tp >= 0 && (!m || m[tp * B + b])) ? gout + (tp * B + b) * H : nullptr;
        T* __restrict__ d = dg + b * G;
        add_product(gdh, y, b, H);
        if (m && !m[t * B + b]) {  // h_t = h_{t-1}, c_t = c_{t-1}: both gradients pass unchanged
          std::memset(d, 0, G * sizeof(T));
          carry_base(gn, gdh, doutp, H);
          continue;
        }
        const T* __restrict__ g = a + (t * B + b) * G;
        const T* __restrict__ cc = c + (t * B + b) * H;
        const T* __restrict__ cprev = cp + b * H;
        T* __restrict__ dcr = dcp + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          T i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
          T tc = tanh_(cc[j]), dh = gdh[j];
          T dct = dcr[j] + dh * o * (T(1) - tc * tc);
          d[j] = dct * gg * i * (T(1) - i);
          d[H + j] = dct * cprev[j] * f * (T(1) - f);
          d[2 * H + j] = dct * i * (T(1) - gg * gg);
          d[3 * H + j] = dh * tc * o * (T(1) - o);
          dcr[j] = dct * f;
        }
        start_base(gn, doutp, H);
      }
    });
    product = matmul_t(sums.rec_step(t), w);  // (B, H) = dgates_t W_hh
    std::swap(cur, next);
  }
  Tensor dh0 = at::from_blob(cur, {B, H}, hs.options()) + product;
  const std::vector<Tensor> g = sums.finish();  // dx, dW_ih, db, dW_hh
  return {g[0], g[1], g[2], g[3], dh0, dc};
}

// --- GRU --------------------------------------------------------------------------------------------
// Saved per step: (r, z, n, W_hn h + b_hn) in one (T, B, 4H) tensor, and the states.

template <typename T>
std::vector<Tensor> gru_forward_impl(const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& b_ih,
                                     const Tensor& w_hh, const c10::optional<Tensor>& b_hh, const Tensor& h0,
                                     const c10::optional<Tensor>& mask, bool reverse, bool keep) {
  const int64_t Tn = x.size(0), B = x.size(1), H = h0.size(1), G3 = 3 * H, G4 = 4 * H;
  Projection<T> xproj(x, w_ih, b_ih);
  Tensor acts = big_empty({keep ? Tn : 1, B, G4}, x.options());  // (r, z, n, W_hn h + b_hn), see lstm_forward_impl
  Tensor hs = big_empty({Tn, B, H}, x.options());
  const Tensor zero_bias = at::zeros({G3}, x.options());
  const T* bias = (b_hh.has_value() && b_hh->defined()) ? b_hh->data_ptr<T>() : zero_bias.data_ptr<T>();
  const bool* m = mask_ptr(mask);
  Tensor out = m ? big_empty({Tn, B, H}, x.options()) : hs;
  const Tensor w = pack(w_hh, B);
  T *a = acts.data_ptr<T>(), *h = hs.data_ptr<T>(), *o = out.data_ptr<T>();
  const Walk walk{Tn, reverse};
  for (int64_t s = 0; s < Tn; ++s) {
    const int64_t t = walk.t(s);
    const Tensor h_prev = previous(hs, h0, walk, s);
    const T* hp = h_prev.data_ptr<T>();
    const Tensor product = matmul_t(h_prev, w);  // (B, 3H) = h_{t-1} W_hh^T
    const T *ghp = product.data_ptr<T>(), *xp = xproj.step(t);
    at::parallel_for(0, B, grain(6 * H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T* __restrict__ xr = xp + b * G3;
        const T* __restrict__ g = ghp + b * G3;
        const T* __restrict__ hprev = hp + b * H;
        T* __restrict__ sv = a + ((keep ? t : 0) * B + b) * G4;
        T* __restrict__ hn = h + (t * B + b) * H;
        if (m && !m[t * B + b]) {
          std::memcpy(hn, hprev, H * sizeof(T));
          std::memset(o + (t * B + b) * H, 0, H * sizeof(T));
          continue;
        }
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          T r = sigmoid(xr[j] + g[j] + bias[j]);
          T z = sigmoid(xr[H + j] + g[H + j] + bias[H + j]);
          T ghn = g[2 * H + j] + bias[2 * H + j];
          T n = tanh_(xr[2 * H + j] + r * ghn);
          sv[j] = r;
          sv[H + j] = z;
          sv[2 * H + j] = n;
          sv[3 * H + j] = ghn;
          hn[j] = n + z * (hprev[j] - n);
        }
        if (m) std::memcpy(o + (t * B + b) * H, hn, H * sizeof(T));
      }
    });
  }
  Tensor h_T = hs[walk.t(Tn - 1)].clone();
  if (!keep) return {out, h_T};
  return {out, h_T, hs, acts};
}

template <typename T>
std::vector<Tensor> gru_backward_impl(const Tensor& grad_out, const Tensor& grad_hT, const Tensor& x,
                                      const Tensor& w_ih, const Tensor& w_hh, const Tensor& acts, const Tensor& hs,
                                      const Tensor& h0, const c10::optional<Tensor>& mask, bool reverse, bool need_dx,
                                      bool need_db_ih, bool need_db_hh) {
  const int64_t Tn = acts.size(0), B = acts.size(1), H = hs.size(2), G3 = 3 * H, G4 = 4 * H;
  Tensor bases = at::empty({2, B, H}, hs.options());
  const bool* m = mask_ptr(mask);
  const Tensor w = pack(w_hh.t().contiguous(), B);
  const T *a = acts.data_ptr<T>(), *gout = grad_out.data_ptr<T>();
  T *cur = bases[0].data_ptr<T>(), *next = bases[1].data_ptr<T>();
  const Walk walk{Tn, reverse};
  // d x_proj, and d(W_hh h + b_hh), which equals it but in its n part (r times d x_proj's), block by block
  BlockGrads<T> sums(x, w_ih, h0, hs, walk, G3, need_dx, need_db_ih, need_db_hh);
  first_grad<T>(grad_out, grad_hT, m, walk.t(Tn - 1), cur);
  Tensor product;  // dgh_{t+1} W_hh
  for (int64_t s = Tn - 1; s >= 0; --s) {
    const int64_t t = walk.t(s), tp = s ? walk.t(s - 1) : -1;
    const T* hp = previous(hs, h0, walk, s).data_ptr<T>();
    const T* y = product.defined() ? product.data_ptr<T>() : nullptr;
    T *dx = sums.in_rows(t), *dg = sums.rec_rows(t);
    at::parallel_for(0, B, grain(8 * H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        T* __restrict__ gdh = cur + b * H;
        T* __restrict__ gn = next + b * H;
        const T* doutp = (tp >= 0 && (!m || m[tp * B + b])) ? gout + (tp * B + b) * H : nullptr;
        T* __restrict__ dxr = dx + b * G3;
        T* __restrict__ dgr = dg + b * G3;
        add_product(gdh, y, b, H);
        if (m && !m[t * B + b]) {
          std::memset(dxr, 0, G3 * sizeof(T));
          std::memset(dgr, 0, G3 * sizeof(T));
          carry_base(gn, gdh, doutp, H);
          continue;
        }
        const T* __restrict__ sv = a + (t * B + b) * G4;
        const T* __restrict__ hprev = hp + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          T r = sv[j], z = sv[H + j], n = sv[2 * H + j], ghn = sv[3 * H + j], dh = gdh[j];
          T dn = dh * (T(1) - z) * (T(1) - n * n);
          T dz = dh * (hprev[j] - n) * z * (T(1) - z);
          T dr = dn * ghn * r * (T(1) - r);
          dxr[j] = dr;
          dxr[H + j] = dz;
          dxr[2 * H + j] = dn;
          dgr[j] = dr;
          dgr[H + j] = dz;
          dgr[2 * H + j] = dn * r;
        }
        start_base(gn, doutp, H);
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) gn[j] += gdh[j] * sv[H + j];  // h_t = n + z (h_{t-1} - n): z passes dh on
      }
    });
    product = matmul_t(sums.rec_step(t), w);  // (B, H) = dgh_t W_hh
    std::swap(cur, next);
  }
  Tensor dh0 = at::from_blob(cur, {B, H}, hs.options()) + product;
  const std::vector<Tensor> g = sums.finish();  // dx, dW_ih, db_ih, dW_hh, db_hh
  return {g[0], g[1], g[2], g[3], g[4], dh0};
}

// --- Elman ------------------------------------------------------------------------------------------

template <typename T>
std::vector<Tensor> rnn_forward_impl(const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& bias,
                                     const Tensor& w_hh, const Tensor& h0, bool relu,
                                     const c10::optional<Tensor>& mask, bool reverse) {
  const int64_t Tn = x.size(0), B = x.size(1), H = h0.size(1);
  Projection<T> xproj(x, w_ih, bias);
  Tensor hs = big_empty({Tn, B, H}, x.options());
  const bool* m = mask_ptr(mask);
  Tensor out = m ? big_empty({Tn, B, H}, x.options()) : hs;
  const Tensor w = pack(w_hh, B);
  T *h = hs.data_ptr<T>(), *o = out.data_ptr<T>();
  const Walk walk{Tn, reverse};
  for (int64_t s = 0; s < Tn; ++s) {
    const int64_t t = walk.t(s);
    const Tensor h_prev = previous(hs, h0, walk, s);
    const T* hp = h_prev.data_ptr<T>();
    const Tensor product = matmul_t(h_prev, w);  // (B, H) = h_{t-1} W_hh^T
    const T *y = product.data_ptr<T>(), *xp = xproj.step(t);
    at::parallel_for(0, B, grain(2 * H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T* __restrict__ r = y + b * H;
        const T* __restrict__ xr = xp + b * H;
        T* __restrict__ hn = h + (t * B + b) * H;
        if (m && !m[t * B + b]) {
          std::memcpy(hn, hp + b * H, H * sizeof(T));
          std::memset(o + (t * B + b) * H, 0, H * sizeof(T));
          continue;
        }
        if (relu) {
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            T v = xr[j] + r[j];
            hn[j] = v > T(0) ? v : T(0);
          }
        } else {
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) hn[j] = tanh_(xr[j] + r[j]);
        }
        if (m) std::memcpy(o + (t * B + b) * H, hn, H * sizeof(T));
      }
    });
  }
  return {out, hs[walk.t(Tn - 1)].clone(), hs};
}

template <typename T>
std::vector<Tensor> rnn_backward_impl(const Tensor& grad_out, const Tensor& grad_hT, const Tensor& x,
                                      const Tensor& w_ih, const Tensor& w_hh, const Tensor& hs, const Tensor& h0,
                                      bool relu, const c10::optional<Tensor>& mask, bool reverse, bool need_dx,
                                      bool need_db) {
  const int64_t Tn = hs.size(0), B = hs.size(1), H = hs.size(2);
  Tensor bases = at::empty({2, B, H}, hs.options());
  const bool* m = mask_ptr(mask);
  const Tensor w = pack(w_hh.t().contiguous(), B);
  const T *h = hs.data_ptr<T>(), *gout = grad_out.data_ptr<T>();
  T *cur = bases[0].data_ptr<T>(), *next = bases[1].data_ptr<T>();
  const Walk walk{Tn, reverse};
  BlockGrads<T> sums(x, w_ih, h0, hs, walk, 0, need_dx, need_db, false);  // dpre = d x_proj, block by block
  first_grad<T>(grad_out, grad_hT, m, walk.t(Tn - 1), cur);
  Tensor product;  // dpre_{t+1} W_hh
  for (int64_t s = Tn - 1; s >= 0; --s) {
    const int64_t t = walk.t(s), tp = s ? walk.t(s - 1) : -1;
    const T* y = product.defined() ? product.data_ptr<T>() : nullptr;
    T* dp = sums.in_rows(t);
    at::parallel_for(0, B, grain(2 * H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        T* __restrict__ gdh = cur + b * H;
        T* __restrict__ gn = next + b * H;
        const T* doutp = (tp >= 0 && (!m || m[tp * B + b])) ? gout + (tp * B + b) * H : nullptr;
        T* __restrict__ d = dp + b * H;
        add_product(gdh, y, b, H);
        if (m && !m[t * B + b]) {
          std::memset(d, 0, H * sizeof(T));
          carry_base(gn, gdh, doutp, H);
          continue;
        }
        const T* __restrict__ hn = h + (t * B + b) * H;
        if (relu) {  // relu' = [h > 0], torch's convention at 0
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) d[j] = hn[j] > T(0) ? gdh[j] : T(0);
        } else {
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) d[j] = gdh[j] * (T(1) - hn[j] * hn[j]);
        }
        start_base(gn, doutp, H);
      }
    });
    product = matmul_t(sums.rec_step(t), w);  // (B, H) = dpre_t W_hh
    std::swap(cur, next);
  }
  Tensor dh0 = at::from_blob(cur, {B, H}, hs.options()) + product;
  const std::vector<Tensor> g = sums.finish();  // dx, dW_ih, db, dW_hh
  return {g[0], g[1], g[2], g[3], dh0};
}

// --- Entry points: checks and dtype dispatch --------------------------------------------------------

#define RNNKIT_DISPATCH(dtype, call)                                                         \
  do {                                                                                       \
    if ((dtype) == at::kFloat) {                                                             \
      using scalar = float;                                                                  \
      return call;                                                                           \
    }                                                                                        \
    TORCH_CHECK((dtype) == at::kDouble, "rnnkit_cpu: float32 or float64 only, not ", dtype); \
    using scalar = double;                                                                   \
    return call;                                                                             \
  } while (0)

std::vector<Tensor> lstm_forward(const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& bias,
                                 const Tensor& w_hh, const Tensor& h0, const Tensor& c0,
                                 const c10::optional<Tensor>& mask, bool reverse, bool keep) {
  check_inputs(x, w_ih, w_hh, h0, mask, 4);
  check_bias(bias, w_ih);
  TORCH_CHECK(c0.is_contiguous() && c0.sizes() == h0.sizes(), "rnnkit_cpu: c0 must be a contiguous (B, H)");
  RNNKIT_DISPATCH(x.scalar_type(), lstm_forward_impl<scalar>(x, w_ih, bias, w_hh, h0, c0, mask, reverse, keep));
}

std::vector<Tensor> lstm_backward(const Tensor& grad_out, const Tensor& grad_hT, const Tensor& grad_cT,
                                  const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& acts,
                                  const Tensor& hs, const Tensor& cs, const Tensor& h0, const Tensor& c0,
                                  const c10::optional<Tensor>& mask, bool reverse, bool need_dx, bool need_db) {
  RNNKIT_DISPATCH(acts.scalar_type(),
                  lstm_backward_impl<scalar>(grad_out.contiguous(), grad_hT.contiguous(), grad_cT.contiguous(), x,
                                             w_ih, w_hh, acts, hs, cs, h0, c0, mask, reverse, need_dx, need_db));
}

std::vector<Tensor> gru_forward(const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& b_ih,
                                const Tensor& w_hh, const c10::optional<Tensor>& b_hh, const Tensor& h0,
                                const c10::optional<Tensor>& mask, bool reverse, bool keep) {
  check_inputs(x, w_ih, w_hh, h0, mask, 3);
  check_bias(b_ih, w_ih);
  check_bias(b_hh, w_ih);
  RNNKIT_DISPATCH(x.scalar_type(), gru_forward_impl<scalar>(x, w_ih, b_ih, w_hh, b_hh, h0, mask, reverse, keep));
}

std::vector<Tensor> gru_backward(const Tensor& grad_out, const Tensor& grad_hT, const Tensor& x, const Tensor& w_ih,
                                 const Tensor& w_hh, const Tensor& acts, const Tensor& hs, const Tensor& h0,
                                 const c10::optional<Tensor>& mask, bool reverse, bool need_dx, bool need_db_ih,
                                 bool need_db_hh) {
  RNNKIT_DISPATCH(acts.scalar_type(),
                  gru_backward_impl<scalar>(grad_out.contiguous(), grad_hT.contiguous(), x, w_ih, w_hh, acts, hs, h0,
                                            mask, reverse, need_dx, need_db_ih, need_db_hh));
}

std::vector<Tensor> rnn_forward(const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& bias,
                                const Tensor& w_hh, const Tensor& h0, bool relu, const c10::optional<Tensor>& mask,
                                bool reverse) {
  check_inputs(x, w_ih, w_hh, h0, mask, 1);
  check_bias(bias, w_ih);
  RNNKIT_DISPATCH(x.scalar_type(), rnn_forward_impl<scalar>(x, w_ih, bias, w_hh, h0, relu, mask, reverse));
}

std::vector<Tensor> rnn_backward(const Tensor& grad_out, const Tensor& grad_hT, const Tensor& x, const Tensor& w_ih,
                                 const Tensor& w_hh, const Tensor& hs, const Tensor& h0, bool relu,
                                 const c10::optional<Tensor>& mask, bool reverse, bool need_dx, bool need_db) {
  RNNKIT_DISPATCH(hs.scalar_type(), rnn_backward_impl<scalar>(grad_out.contiguous(), grad_hT.contiguous(), x, w_ih,
                                                              w_hh, hs, h0, relu, mask, reverse, need_dx, need_db));
}

// --- Decoding: one step of the whole stack for a few rows -------------------------------------------
// At batch 1 (greedy) to a few rows (beam 5), a step is bound by reading every weight once from memory: the
// products below read each weight row once and take its dot products with every row of the batch while it
// is in cache, threads splitting the weight rows. Layer 0's input projection arrives precomputed (CharLM
// looks its rows up in a (V, G*H) table).

// The sum of a vector's lanes by halving (a few vector adds, not one scalar add per lane).
template <typename V>
inline auto lanes_sum(const V& v) {
  if constexpr (sizeof(V) == 16) {
    return v[0] + v[1] + (sizeof(v[0]) == 4 ? v[2] + v[3] : 0);
  } else {
    typedef decltype(v[0] + v[0]) T;
    typedef T Half __attribute__((vector_size(sizeof(V) / 2)));
    Half lo, hi;
    std::memcpy(&lo, &v, sizeof(Half));
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof(Half), sizeof(Half));
    return lanes_sum(lo + hi);
  }
}

// out[b, j] (+)= bias[j] + W[j, :] . x[b, :] for R rows b0 .. b0 + R - 1 of x and weight rows j0 .. j1 - 1,
// J weight rows at a time: each 64-byte piece of a weight row is loaded once and multiplied into the R rows'
// accumulators (GCC's vector extension: AVX-512 or two AVX2 registers), so that beam 5 reads the weights no
// more than greedy. The J * R accumulators are independent chains of adds: with one (greedy, J = 1) each
// add waits for the previous one and a product runs at a third of the cache's speed (measured at (2048, 512):
// 131 -> 50 us). Every output is summed in the same order whatever J, so results do not depend on it.
template <typename T, int R, int J>
void rows_block(const T* W, int64_t N, int64_t K, int64_t j0, int64_t j1, const T* x, const T* bias,
                bool accumulate, T* out) {
  typedef T V __attribute__((vector_size(64)));
  constexpr int64_t kLanes = 64 / sizeof(T);
  int64_t j = j0;
  for (; j + J <= j1; j += J) {
    const T* row = W + j * K;
    V acc[J][R] = {};
    int64_t k = 0;
    for (; k + kLanes <= K; k += kLanes) {
      V xv[R];
      for (int r = 0; r < R; ++r) std::memcpy(&xv[r], x + r * K + k, sizeof(V));
      for (int q = 0; q < J; ++q) {
        V w;
        std::memcpy(&w, row + q * K + k, sizeof(V));
        for (int r = 0; r < R; ++r) acc[q][r] += w * xv[r];
      }
    }
    for (int q = 0; q < J; ++q) {
      for (int r = 0; r < R; ++r) {
        T sum = (bias ? bias[j + q] : T(0)) + lanes_sum(acc[q][r]);
        for (int64_t i = k; i < K; ++i) sum += row[q * K + i] * x[r * K + i];
        T* o = out + r * N + j + q;
        *o = accumulate ? *o + sum : sum;
      }
    }
  }
  if constexpr (J > 1) {
    if (j < j1) rows_block<T, R, 1>(W, N, K, j, j1, x, bias, accumulate, out);
  }
}

// rows_block with J = 4 weight rows at a time for up to 5 batch rows, 2 above (4 * 8 accumulators would not
// fit in the 32 vector registers).
template <typename T, int R>
void rows_block(const T* W, int64_t N, int64_t K, int64_t j0, int64_t j1, const T* x, const T* bias,
                bool accumulate, T* out) {
  rows_block<T, R, (R <= 5 ? 4 : 2)>(W, N, K, j0, j1, x, bias, accumulate, out);
}

// out (B, N) = x (B, K) W^T (+ bias) (+ out, when accumulate), W (N, K) contiguous. Threads split the weight rows
// only for weights of 8 MB and more: smaller ones are read by one core faster than threads can be woken, and on
// a loaded machine a waiting thread costs far more (measured: greedy decoding at 2 threads 40x slower).
template <typename T>
void rows_product(const T* x, int64_t B, int64_t K, const Tensor& w, const T* bias, bool accumulate, T* out) {
  const int64_t N = w.size(0);
  const T* W = w.data_ptr<T>();
  const int64_t grain = w.nbytes() >= (int64_t(8) << 20) ? 256 : N;
  at::parallel_for(0, N, grain, [&](int64_t j0, int64_t j1) {
    for (int64_t b = 0; b < B; b += 8) {
      const T* xb = x + b * K;
      T* ob = out + b * N;
      switch (std::min<int64_t>(8, B - b)) {
        case 1: rows_block<T, 1>(W, N, K, j0, j1, xb, bias, accumulate, ob); break;
        case 2: rows_block<T, 2>(W, N, K, j0, j1, xb, bias, accumulate, ob); break;
        case 3: rows_block<T, 3>(W, N, K, j0, j1, xb, bias, accumulate, ob); break;
        case 4: rows_block<T, 4>(W, N, K, j0, j1, xb, bias, accumulate, ob); break;
        case 5: rows_block<T, 5>(W, N, K, j0, j1, xb, bias, accumulate, ob); break;
        case 6: rows_block<T, 6>(W, N, K, j0, j1, xb, bias, accumulate, ob); break;
        case 7: rows_block<T, 7>(W, N, K, j0, j1, xb, bias, accumulate, ob); break;
        default: rows_block<T, 8>(W, N, K, j0, j1, xb, bias, accumulate, ob); break;
      }
    }
  });
}

template <typename T>
const T* optional_ptr(const c10::optional<Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

// Layer 0's projected input rows (B, G) into `out`: xw0 itself, or with `tokens` (B,) the rows tokens[b] of the
// table xw0 (V, G).
template <typename T>
void first_inputs(const Tensor& xw0, const c10::optional<Tensor>& tokens, int64_t B, T* out) {
  const int64_t G = xw0.size(1);
  if (!tokens.has_value()) {
    std::memcpy(out, xw0.data_ptr<T>(), B * G * sizeof(T));
    return;
  }
  const int64_t* tok = tokens->data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(tok[b] >= 0 && tok[b] < xw0.size(0), "rnnkit_cpu: decode_step token ", tok[b], " out of range");
    std::memcpy(out + b * G, xw0.data_ptr<T>() + tok[b] * G, G * sizeof(T));
  }
}

// kind 0 LSTM, 1 GRU, 2 Elman tanh, 3 Elman relu. xw0 (B, G*H) = layer 0's x W_ih^T + its input biases (LSTM
// and Elman: b_ih + b_hh, GRU: b_ih), or with tokens (B,) a (V, G*H) table of them to look up; h, c (L, B, H)
// (c unused but for LSTM); per layer w_ih, w_hh, b_ih, b_hh as torch.nn holds them; dec_w (V, H), dec_b (V,) or
// none. Returns the new (h, c) or (h,), each (L, B, H), then with dec_w the logits (B, V) of the top layer's h:
// the whole step in this thread, where torch's product would wake a second one (on a loaded machine waiting
// for it cost beam search 10x).
template <typename T>
std::vector<Tensor> decode_step_impl(int64_t kind, const Tensor& xw0, const c10::optional<Tensor>& tokens,
                                     const Tensor& h, const Tensor& c, const std::vector<Tensor>& w_ih,
                                     const std::vector<Tensor>& w_hh, const std::vector<c10::optional<Tensor>>& b_ih,
                                     const std::vector<c10::optional<Tensor>>& b_hh, const c10::optional<Tensor>& dec_w,
                                     const c10::optional<Tensor>& dec_b) {
  const int64_t L = h.size(0), B = h.size(1), H = h.size(2), G = xw0.size(1);
  Tensor h_new = at::empty_like(h), c_new = kind == 0 ? at::empty_like(c) : Tensor();
  Tensor gates = at::empty({B, G}, h.options()), gx = at::empty({kind == 1 ? B : 0, G}, h.options());
  T* __restrict__ g = gates.data_ptr<T>();
  T* __restrict__ x = gx.data_ptr<T>();
  for (int64_t l = 0; l < L; ++l) {
    const T* hl = h.data_ptr<T>() + l * B * H;
    T* hn = h_new.data_ptr<T>() + l * B * H;
    const T* below = l ? h_new.data_ptr<T>() + (l - 1) * B * H : nullptr;
    const int64_t K = l ? w_ih[l].size(1) : 0;
    if (kind == 1) {  // GRU: the input and recurrent parts apart (r multiplies W_hn h + b_hn)
      if (l) {
        rows_product<T>(below, B, K, w_ih[l], optional_ptr<T>(b_ih[l]), false, x);
      } else {
        first_inputs<T>(xw0, tokens, B, x);
      }
      rows_product<T>(hl, B, H, w_hh[l], optional_ptr<T>(b_hh[l]), false, g);
      for (int64_t b = 0; b < B; ++b) {
        const T *__restrict__ xr = x + b * G, *__restrict__ gr = g + b * G, *__restrict__ hp = hl + b * H;
        T* __restrict__ hr = hn + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          T r = sigmoid(xr[j] + gr[j]), z = sigmoid(xr[H + j] + gr[H + j]);
          T n = tanh_(xr[2 * H + j] + r * gr[2 * H + j]);
          hr[j] = n + z * (hp[j] - n);
        }
      }
      continue;
    }
    if (l) {  // LSTM and Elman: one sum of both products and both biases
      const T *bi = optional_ptr<T>(b_ih[l]), *bh = optional_ptr<T>(b_hh[l]);
      rows_product<T>(below, B, K, w_ih[l], bi, false, g);
      if (bh) {
        for (int64_t b = 0; b < B; ++b)
          for (int64_t j = 0; j < G; ++j) g[b * G + j] += bh[j];
      }
    } else {
      first_inputs<T>(xw0, tokens, B, g);
    }
    rows_product<T>(hl, B, H, w_hh[l], nullptr, true, g);
    if (kind == 0) {
      // __restrict__ and `omp simd` let the compiler vectorise the gate math (without, beam 5's 2560 units per
      // layer cost ~50 us; the training kernels' loops do the same).
      for (int64_t b = 0; b < B; ++b) {
        const T* __restrict__ gr = g + b * G;
        const T* __restrict__ cl = c.data_ptr<T>() + (l * B + b) * H;
        T* __restrict__ cn = c_new.data_ptr<T>() + (l * B + b) * H;
        T* __restrict__ hr = hn + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          T i = sigmoid(gr[j]), f = sigmoid(gr[H + j]), gg = tanh_(gr[2 * H + j]), o = sigmoid(gr[3 * H + j]);
          T cc = f * cl[j] + i * gg;
          cn[j] = cc;
          hr[j] = o * tanh_(cc);
        }
      }
    } else if (kind == 3) {
#pragma omp simd
      for (int64_t j = 0; j < B * H; ++j) hn[j] = g[j] > T(0) ? g[j] : T(0);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < B * H; ++j) hn[j] = tanh_(g[j]);
    }
  }
  std::vector<Tensor> out = {h_new};
  if (kind == 0) out.push_back(c_new);
  if (dec_w.has_value()) {
    Tensor logits = at::empty({B, dec_w->size(0)}, h.options());
    rows_product<T>(h_new.data_ptr<T>() + (L - 1) * B * H, B, H, *dec_w, optional_ptr<T>(dec_b), false,
                    logits.data_ptr<T>());
    out.push_back(logits);
  }
  return out;
}

std::vector<Tensor> decode_step(int64_t kind, const Tensor& xw0, const c10::optional<Tensor>& tokens, const Tensor& h,
                                const c10::optional<Tensor>& c, std::vector<Tensor> w_ih, std::vector<Tensor> w_hh,
                                std::vector<c10::optional<Tensor>> b_ih, std::vector<c10::optional<Tensor>> b_hh,
                                const c10::optional<Tensor>& dec_w, const c10::optional<Tensor>& dec_b) {
  TORCH_CHECK(kind >= 0 && kind <= 3, "rnnkit_cpu: decode_step kind 0..3");
  const int64_t rows = tokens.has_value() ? tokens->numel() : xw0.size(0);
  TORCH_CHECK(h.dim() == 3 && xw0.dim() == 2 && rows == h.size(1), "rnnkit_cpu: decode_step shapes");
  TORCH_CHECK(!tokens.has_value() || (tokens->dim() == 1 && tokens->scalar_type() == at::kLong),
              "rnnkit_cpu: decode_step tokens must be (B,) int64");
  TORCH_CHECK(xw0.is_cpu() && h.is_cpu() && (!tokens.has_value() || tokens->is_cpu()) &&
                  (!c.has_value() || c->is_cpu()),
              "rnnkit_cpu: decode_step runs on CPU tensors only");
  const int64_t L = h.size(0);
  TORCH_CHECK(static_cast<int64_t>(w_ih.size()) == L && static_cast<int64_t>(w_hh.size()) == L &&
                  static_cast<int64_t>(b_ih.size()) == L && static_cast<int64_t>(b_hh.size()) == L,
              "rnnkit_cpu: decode_step wants every layer's weights");
  for (auto& t : w_ih) t = t.contiguous();
  for (auto& t : w_hh) t = t.contiguous();
  const Tensor hc = h.contiguous(), cc = kind == 0 ? c.value().contiguous() : Tensor();
  const c10::optional<Tensor> tok = tokens.has_value() ? c10::optional<Tensor>(tokens->contiguous()) : c10::nullopt;
  c10::optional<Tensor> dw, db;
  if (dec_w.has_value()) {
    TORCH_CHECK(dec_w->dim() == 2 && dec_w->size(1) == h.size(2) && dec_w->scalar_type() == h.scalar_type(),
                "rnnkit_cpu: decode_step decoder weight must be (V, H) of the state's dtype");
    TORCH_CHECK(!dec_b.has_value() || (dec_b->numel() == dec_w->size(0) && dec_b->scalar_type() == h.scalar_type()),
                "rnnkit_cpu: decode_step decoder bias must be (V,)");
    dw = dec_w->contiguous();
    if (dec_b.has_value()) db = dec_b->contiguous();
  }
  RNNKIT_DISPATCH(h.scalar_type(),
                  decode_step_impl<scalar>(kind, xw0.contiguous(), tok, hc, cc, w_ih, w_hh, b_ih, b_hh, dw, db));
}

int64_t pool_bytes() { return Pool::get().bytes(); }

int64_t pool_release(int64_t limit_bytes) { return Pool::get().release(limit_bytes); }

}  // namespace

// Gradients that a need_* flag turns off come back as undefined tensors (None in Python).
TORCH_LIBRARY(rnnkit_cpu, m) {
  m.def("pool_bytes() -> int", &pool_bytes);
  m.def("decode_step(int kind, Tensor xw0, Tensor? tokens, Tensor h, Tensor? c, Tensor[] w_ih, Tensor[] w_hh, "
        "Tensor?[] b_ih, Tensor?[] b_hh, Tensor? dec_w, Tensor? dec_b) -> Tensor[]",
        &decode_step);
  m.def("pool_release(int limit_bytes) -> int", &pool_release);
  // Forward: (out, h_T[, c_T]) and, with keep (or always for the Elman RNN), what backward reads.
  m.def("lstm_forward(Tensor x, Tensor w_ih, Tensor? bias, Tensor w_hh, Tensor h0, Tensor c0, Tensor? mask, "
        "bool reverse, bool keep) -> Tensor[]",
        &lstm_forward);
  m.def("lstm_backward(Tensor grad_out, Tensor grad_hT, Tensor grad_cT, Tensor x, Tensor w_ih, Tensor w_hh, "
        "Tensor acts, Tensor hs, Tensor cs, Tensor h0, Tensor c0, Tensor? mask, bool reverse, bool need_dx, "
        "bool need_db) -> Tensor[]",
        &lstm_backward);
  m.def("gru_forward(Tensor x, Tensor w_ih, Tensor? b_ih, Tensor w_hh, Tensor? b_hh, Tensor h0, Tensor? mask, "
        "bool reverse, bool keep) -> Tensor[]",
        &gru_forward);
  m.def("gru_backward(Tensor grad_out, Tensor grad_hT, Tensor x, Tensor w_ih, Tensor w_hh, Tensor acts, Tensor hs, "
        "Tensor h0, Tensor? mask, bool reverse, bool need_dx, bool need_db_ih, bool need_db_hh) -> Tensor[]",
        &gru_backward);
  m.def("rnn_forward(Tensor x, Tensor w_ih, Tensor? bias, Tensor w_hh, Tensor h0, bool relu, Tensor? mask, "
        "bool reverse) -> Tensor[]",
        &rnn_forward);
  m.def("rnn_backward(Tensor grad_out, Tensor grad_hT, Tensor x, Tensor w_ih, Tensor w_hh, Tensor hs, Tensor h0, "
        "bool relu, Tensor? mask, bool reverse, bool need_dx, bool need_db) -> Tensor[]",
        &rnn_backward);
}
