// Softmax attention with attention dropout inside the kernel, for CPUs: forward and backward, the dropout mask drawn
// per query row from Philox4x32-10 (keyed by the call's seed; counter = (call index, query, batch item, head)) and
// drawn again in the backward pass, never stored. Loaded by hf_primaldual/cpu_attention.py through
// torch.utils.cpp_extension.load (built on first use for the CPU capability PyTorch reports, cached).
//
//   out_i = sum_j (softmax_j(scale q_i . k_j) * keep_ij / (1 - p)) v_j,   lse_i = log sum_j exp(scale q_i . k_j)
//
// Two paths, one mask (each query row's keep multipliers come from keep_multipliers, whichever path runs):
// - the row path, for the small head dims: one query row is the tile, its scores over every key (N_k values) in
//   L1/L2, with K and V transposed to (D, N_k) per (batch, head) so that every inner loop runs over keys,
//   contiguous and vectorised (at::vec). A head's K^T and V^T then stay in L1, and the exact two-pass softmax of a
//   row costs no more than an online one.
// - the blocked path, from head dim blocked_min_head_dim: kBlockRows query rows at a time, the products with K and
//   V done by BLAS GEMMs, the softmax and the mask row by row in between.
// Parallel over batch x heads (at::parallel_for); float32 and bfloat16 accumulate in float32, float64 in float64.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#if defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

using at::vec::Vectorized;

// ---------------------------------------------------------------------------------------------------------------
// The generator: Philox4x32-10 (Salmon et al., SC'11; the generator of cuRAND and of PyTorch's CUDA dropout).
// ---------------------------------------------------------------------------------------------------------------

constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;
// 16-bit lanes: two per 32-bit word, eight per Philox call; the drop probability is p rounded to 2^-16.
constexpr int64_t kLanesPerCall = 8;

inline void philox4x32_10(uint32_t& x0, uint32_t& x1, uint32_t& x2, uint32_t& x3, uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t product0 = static_cast<uint64_t>(kPhiloxM0) * x0;
    const uint64_t product1 = static_cast<uint64_t>(kPhiloxM1) * x2;
    const uint32_t y0 = static_cast<uint32_t>(product1 >> 32) ^ x1 ^ key0;
    const uint32_t y2 = static_cast<uint32_t>(product0 >> 32) ^ x3 ^ key1;
    x1 = static_cast<uint32_t>(product1);
    x3 = static_cast<uint32_t>(product0);
    x0 = y0;
    x2 = y2;
    key0 += kPhiloxW0;
    key1 += kPhiloxW1;
  }
}

struct Dropout {
  bool active;          // p > 0
  uint64_t seed;
  uint32_t threshold;   // a lane below it drops its entry: round(p * 2^16)
  double keep_scale;    // 1 / (1 - p), p the rounded probability
};

inline Dropout make_dropout(double p, int64_t seed) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, "attention dropout must be in [0, 1), got ", p);
  const uint32_t threshold = static_cast<uint32_t>(std::llround(p * 65536.0));
  TORCH_CHECK(threshold < 65536u, "attention dropout ", p, " rounds to 1 at the kernel's 2^-16 resolution");
  return Dropout{threshold > 0, static_cast<uint64_t>(seed), threshold, 65536.0 / (65536.0 - threshold)};
}

// Calls of a query row, rounded up to whole vectors of calls (the words scratch holds 4 such rows).
inline int64_t calls_per_row(int64_t n_k) {
  const int64_t calls = (n_k + kLanesPerCall - 1) / kLanesPerCall;
  return (calls + 7) / 8 * 8;
}

#if defined(CPU_CAPABILITY_AVX2)
// The high and low 32 bits of the eight products multiplier * x (32 x 32 -> 64 bits).
inline void mulhilo8(__m256i x, __m256i multiplier, __m256i& high, __m256i& low) {
  const __m256i even = _mm256_mul_epu32(x, multiplier);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), multiplier);
  high = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  low = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}
#endif

// The four output words of the Philox calls (c, i, b, h) for c in [0, stride), word w of call c at words[w * stride + c].
inline void philox_row(uint64_t seed, uint32_t i, uint32_t b, uint32_t h, int64_t stride, uint32_t* words) {
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
  int64_t c = 0;
#if defined(CPU_CAPABILITY_AVX2)
  // Eight calls at a time, one per 32-bit lane: the same arithmetic as philox4x32_10.
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM0)), m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM1));
  for (; c + 8 <= stride; c += 8) {
    __m256i x0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(c)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256i x1 = _mm256_set1_epi32(static_cast<int>(i)), x2 = _mm256_set1_epi32(static_cast<int>(b)),
            x3 = _mm256_set1_epi32(static_cast<int>(h));
    uint32_t k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {
      __m256i high0, low0, high1, low1;
      mulhilo8(x0, m0, high0, low0);
      mulhilo8(x2, m1, high1, low1);
      const __m256i y0 = _mm256_xor_si256(_mm256_xor_si256(high1, x1), _mm256_set1_epi32(static_cast<int>(k0)));
      const __m256i y2 = _mm256_xor_si256(_mm256_xor_si256(high0, x3), _mm256_set1_epi32(static_cast<int>(k1)));
      x0 = y0;
      x1 = low1;
      x2 = y2;
      x3 = low0;
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + c), x0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + stride + c), x1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 2 * stride + c), x2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 3 * stride + c), x3);
  }
#endif
  for (; c < stride; ++c) {
    uint32_t x0 = static_cast<uint32_t>(c), x1 = i, x2 = b, x3 = h;
    philox4x32_10(x0, x1, x2, x3, key0, key1);
    words[c] = x0;
    words[stride + c] = x1;
    words[2 * stride + c] = x2;
    words[3 * stride + c] = x3;
  }
}

// multiplier[j] = keep_ij / (1 - p) for the n_k keys of query i of (b, h); words: scratch of 4 * calls_per_row(n_k).
// Key j takes lane j / calls of call j % calls (calls = ceil(n_k / 8)), so that each lane's keys are contiguous.
template <typename acc_t>
void keep_multipliers(const Dropout& dropout, int64_t b, int64_t h, int64_t i, int64_t n_k, acc_t* multiplier,
                      uint32_t* words) {
  const int64_t calls = (n_k + kLanesPerCall - 1) / kLanesPerCall, stride = calls_per_row(n_k);
  philox_row(dropout.seed, static_cast<uint32_t>(i), static_cast<uint32_t>(b), static_cast<uint32_t>(h), stride,
             words);
  const acc_t keep = static_cast<acc_t>(dropout.keep_scale);
  const uint32_t threshold = dropout.threshold;
  for (int64_t lane = 0; lane < kLanesPerCall; ++lane) {
    const uint32_t* word = words + (lane / 2) * stride;
    const int shift = 16 * (lane % 2);
    const int64_t start = lane * calls;
    const int64_t count = std::min(calls, n_k - start);
    acc_t* out = multiplier + start;
    for (int64_t c = 0; c < count; ++c) {
      out[c] = ((word[c] >> shift) & 0xFFFFu) >= threshold ? keep : acc_t(0);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Vectorised row operations over keys (lengths are multiples of the vector width: rows are padded).
// ---------------------------------------------------------------------------------------------------------------

template <typename acc_t>
inline Vectorized<acc_t> vexp(const Vectorized<acc_t>& x) {
  return x.map([](acc_t value) { return std::exp(value); });
}
template <>
inline Vectorized<float> vexp<float>(const Vectorized<float>& x) {
  return x.exp_u20();
}

// Rows are padded to whole blocks of kUnroll vectors: four independent accumulators per loop, so that the FMA
// chains over the head dim (or over keys, in dot) overlap instead of waiting on each other's latency.
constexpr int64_t kUnroll = 4;

// row[j] = sum_d coefficient[d] * rows_t[d][j] + bias[j]
template <typename acc_t>
inline void combine_rows(const acc_t* coefficient, const acc_t* rows_t, int64_t dim, int64_t stride,
                         const acc_t* bias, acc_t* row, int64_t length) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  for (int64_t j = 0; j < length; j += kUnroll * W) {
    Vec s0(acc_t(0)), s1(acc_t(0)), s2(acc_t(0)), s3(acc_t(0));
    if (bias != nullptr) {
      s0 = Vec::loadu(bias + j);
      s1 = Vec::loadu(bias + j + W);
      s2 = Vec::loadu(bias + j + 2 * W);
      s3 = Vec::loadu(bias + j + 3 * W);
    }
    for (int64_t d = 0; d < dim; ++d) {
      const Vec c(coefficient[d]);
      const acc_t* x = rows_t + d * stride + j;
      s0 = at::vec::fmadd(c, Vec::loadu(x), s0);
      s1 = at::vec::fmadd(c, Vec::loadu(x + W), s1);
      s2 = at::vec::fmadd(c, Vec::loadu(x + 2 * W), s2);
      s3 = at::vec::fmadd(c, Vec::loadu(x + 3 * W), s3);
    }
    s0.store(row + j);
    s1.store(row + j + W);
    s2.store(row + j + 2 * W);
    s3.store(row + j + 3 * W);
  }
}

template <typename acc_t>
inline acc_t dot(const acc_t* a, const acc_t* b, int64_t length) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  Vec s0(acc_t(0)), s1(acc_t(0)), s2(acc_t(0)), s3(acc_t(0));
  for (int64_t j = 0; j < length; j += kUnroll * W) {
    s0 = at::vec::fmadd(Vec::loadu(a + j), Vec::loadu(b + j), s0);
    s1 = at::vec::fmadd(Vec::loadu(a + j + W), Vec::loadu(b + j + W), s1);
    s2 = at::vec::fmadd(Vec::loadu(a + j + 2 * W), Vec::loadu(b + j + 2 * W), s2);
    s3 = at::vec::fmadd(Vec::loadu(a + j + 3 * W), Vec::loadu(b + j + 3 * W), s3);
  }
  const Vec sum = (s0 + s1) + (s2 + s3);
  return at::vec::vec_reduce_all<acc_t>([](Vec& x, Vec& y) { return x + y; }, sum);
}

// row[j] += alpha * x[j]
template <typename acc_t>
inline void axpy(acc_t alpha, const acc_t* x, acc_t* row, int64_t length) {
  using Vec = Vectorized<acc_t>;
  const Vec a(alpha);
  for (int64_t j = 0; j < length; j += Vec::size()) {
    at::vec::fmadd(a, Vec::loadu(x + j), Vec::loadu(row + j)).store(row + j);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Per (batch, head): K and V transposed into padded (D, N_k_padded) rows, the mask as an additive bias row.
// ---------------------------------------------------------------------------------------------------------------

template <typename scalar_t, typename acc_t>
void transpose_into(const at::TensorAccessor<scalar_t, 2>& x, acc_t* x_t, int64_t padded) {
  const int64_t length = x.size(0), dim = x.size(1);
  for (int64_t d = 0; d < dim; ++d) {
    acc_t* row = x_t + d * padded;
    for (int64_t j = 0; j < length; ++j) row[j] = static_cast<acc_t>(x[j][d]);
    for (int64_t j = length; j < padded; ++j) row[j] = acc_t(0);
  }
}

struct MaskView {
  const bool* data = nullptr;  // expanded to (B, H, N_q, N_k), any strides; nullptr: every key allowed
  int64_t stride_b = 0, stride_h = 0, stride_q = 0, stride_k = 0;
};

inline MaskView mask_view(const c10::optional<at::Tensor>& allowed, const at::Tensor& query, int64_t n_k) {
  MaskView view;
  if (!allowed.has_value() || !allowed->defined()) return view;
  TORCH_CHECK(allowed->scalar_type() == at::kBool, "the attention mask must be boolean (True: attend), got ",
              allowed->scalar_type());
  const at::Tensor expanded = allowed->expand({query.size(0), query.size(1), query.size(2), n_k});
  view.data = expanded.data_ptr<bool>();
  view.stride_b = expanded.stride(0);
  view.stride_h = expanded.stride(1);
  view.stride_q = expanded.stride(2);
  view.stride_k = expanded.stride(3);
  return view;
}

// bias[j] = 0 where query i may attend to key j, -inf elsewhere and on the padding past n_k
template <typename acc_t>
void fill_bias(const MaskView& mask, int64_t b, int64_t h, int64_t i, int64_t n_k, int64_t padded, acc_t* bias) {
  const acc_t minus_infinity = -std::numeric_limits<acc_t>::infinity();
  if (mask.data == nullptr) {
    for (int64_t j = 0; j < n_k; ++j) bias[j] = acc_t(0);
  } else {
    const bool* row = mask.data + b * mask.stride_b + h * mask.stride_h + i * mask.stride_q;
    for (int64_t j = 0; j < n_k; ++j) bias[j] = row[j * mask.stride_k] ? acc_t(0) : minus_infinity;
  }
  for (int64_t j = n_k; j < padded; ++j) bias[j] = minus_infinity;
}

template <typename acc_t>
int64_t padded_length(int64_t n) {
  const int64_t width = kUnroll * Vectorized<acc_t>::size();
  return (n + width - 1) / width * width;
}

// A call's sizes; key rows are padded to whole vectors.
struct Sizes {
  int64_t batch, heads, n_q, dim, n_k, dim_v, padded;
};

template <typename acc_t>
Sizes sizes_of(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value) {
  return Sizes{query.size(0), query.size(1), query.size(2), query.size(3), key.size(2), value.size(3),
               padded_length<acc_t>(key.size(2))};
}

// The mask's bias row for query i: per query, or the head's one row where the mask does not vary over queries.
template <typename acc_t>
struct BiasRows {
  BiasRows(const Sizes& sizes, const MaskView& mask) : sizes(sizes), mask(mask), row(sizes.padded) {}

  void at_head(int64_t b, int64_t h) {
    this->b = b;
    this->h = h;
    per_query = mask.data != nullptr && mask.stride_q != 0;
    if (!per_query) fill_bias<acc_t>(mask, b, h, 0, sizes.n_k, sizes.padded, row.data());
  }

  const acc_t* at_query(int64_t i) {
    if (per_query) fill_bias<acc_t>(mask, b, h, i, sizes.n_k, sizes.padded, row.data());
    return row.data();
  }

  const Sizes& sizes;
  const MaskView& mask;
  std::vector<acc_t> row;
  int64_t b = 0, h = 0;
  bool per_query = false;
};

// One (batch, head)'s keys and values transposed to padded (D, N_k_padded) rows, and the mask's bias row for a query.
template <typename scalar_t, typename acc_t>
struct HeadRows {
  HeadRows(const Sizes& sizes, const MaskView& mask)
      : sizes(sizes), key_t(sizes.dim * sizes.padded), value_t(sizes.dim_v * sizes.padded), bias(sizes, mask) {}

  void load(const at::TensorAccessor<scalar_t, 2>& key, const at::TensorAccessor<scalar_t, 2>& value, int64_t b,
            int64_t h) {
    transpose_into<scalar_t, acc_t>(key, key_t.data(), sizes.padded);
    transpose_into<scalar_t, acc_t>(value, value_t.data(), sizes.padded);
    bias.at_head(b, h);
  }

  const Sizes& sizes;
  std::vector<acc_t> key_t, value_t;
  BiasRows<acc_t> bias;
};

// A call's tensors and sizes: its forward and backward, on the row path and on the blocked path, each run a range of
// the (batch x head) indices. out is the forward's output (written by the forward, read by the backward).
template <typename scalar_t, typename acc_t>
struct Call {
  Call(const at::Tensor& grad_output, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
       const at::Tensor& output, const at::Tensor& lse, const MaskView& mask, double scale, const Dropout& dropout,
       const at::Tensor& grad_query, const at::Tensor& grad_key, const at::Tensor& grad_value)
      : z(sizes_of<acc_t>(query, key, value)), mask(mask), scale(scale), dropout(dropout),
        q(query.accessor<scalar_t, 4>()), k(key.accessor<scalar_t, 4>()), v(value.accessor<scalar_t, 4>()),
        out(output.accessor<scalar_t, 4>()), g(grad_output.accessor<scalar_t, 4>()),
        gq(grad_query.accessor<scalar_t, 4>()), gk(grad_key.accessor<scalar_t, 4>()),
        gv(grad_value.accessor<scalar_t, 4>()), log_sum_exp(lse.accessor<acc_t, 3>()) {}

  // The forward's: no gradients (their accessors view the output, unused).
  Call(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, const MaskView& mask, double scale,
       const Dropout& dropout, const at::Tensor& output, const at::Tensor& lse)
      : Call(output, query, key, value, output, lse, mask, scale, dropout, output, output, output) {}

  void forward_rows(int64_t begin, int64_t end);
  void forward_blocks(int64_t begin, int64_t end);
  void backward_rows(int64_t begin, int64_t end);
  void backward_blocks(int64_t begin, int64_t end);

  const Sizes z;
  const MaskView& mask;
  const double scale;
  const Dropout& dropout;
  at::TensorAccessor<scalar_t, 4> q, k, v, out, g, gq, gk, gv;
  at::TensorAccessor<acc_t, 3> log_sum_exp;
  static constexpr acc_t minus_infinity = -std::numeric_limits<acc_t>::infinity();
};

// ---------------------------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------------------------

template <typename scalar_t, typename acc_t>
void Call<scalar_t, acc_t>::forward_rows(int64_t begin, int64_t end) {
  using Vec = Vectorized<acc_t>;
  HeadRows<scalar_t, acc_t> rows(z, mask);
  std::vector<acc_t> scores(z.padded), multiplier(z.padded), query_row(z.dim);
  std::vector<uint32_t> words(4 * calls_per_row(z.n_k));
  for (int64_t bh = begin; bh < end; ++bh) {
    const int64_t b = bh / z.heads, h = bh % z.heads;
    rows.load(k[b][h], v[b][h], b, h);
    for (int64_t i = 0; i < z.n_q; ++i) {
      const acc_t* bias = rows.bias.at_query(i);
      for (int64_t d = 0; d < z.dim; ++d) query_row[d] = static_cast<acc_t>(q[b][h][i][d]) * static_cast<acc_t>(scale);
      combine_rows<acc_t>(query_row.data(), rows.key_t.data(), z.dim, z.padded, bias, scores.data(), z.padded);
      Vec maximum(minus_infinity);
      for (int64_t j = 0; j < z.padded; j += Vec::size()) maximum = at::vec::maximum(maximum, Vec::loadu(&scores[j]));
      const acc_t row_max = at::vec::vec_reduce_all<acc_t>([](Vec& x, Vec& y) { return at::vec::maximum(x, y); },
                                                           maximum);
      if (row_max == minus_infinity) {  // no key allowed: output 0 (and no gradient)
        for (int64_t d = 0; d < z.dim_v; ++d) out[b][h][i][d] = scalar_t(0);
        log_sum_exp[b][h][i] = minus_infinity;
        continue;
      }
      Vec sum(acc_t(0));
      const Vec shift(row_max);
      for (int64_t j = 0; j < z.padded; j += Vec::size()) {
        const Vec e = vexp<acc_t>(Vec::loadu(&scores[j]) - shift);
        e.store(&scores[j]);
        sum = sum + e;
      }
      const acc_t total = at::vec::vec_reduce_all<acc_t>([](Vec& x, Vec& y) { return x + y; }, sum);
      log_sum_exp[b][h][i] = row_max + std::log(total);
      const Vec inverse(acc_t(1) / total);
      if (dropout.active) {
        keep_multipliers<acc_t>(dropout, b, h, i, z.n_k, multiplier.data(), words.data());
        for (int64_t j = z.n_k; j < z.padded; ++j) multiplier[j] = acc_t(0);
        for (int64_t j = 0; j < z.padded; j += Vec::size()) {
          (Vec::loadu(&scores[j]) * Vec::loadu(&multiplier[j]) * inverse).store(&scores[j]);
        }
      } else {
        for (int64_t j = 0; j < z.padded; j += Vec::size()) (Vec::loadu(&scores[j]) * inverse).store(&scores[j]);
      }
      for (int64_t d = 0; d < z.dim_v; ++d) {
        out[b][h][i][d] = static_cast<scalar_t>(dot<acc_t>(scores.data(), rows.value_t.data() + d * z.padded, z.padded));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Backward: with P = softmax(S) recomputed from the log-sum-exps, M = keep / (1 - p), G = dL/dO and
// Delta_i = G_i . O_i = sum_j P_ij M_ij (G_i . v_j):
//   dV_j = sum_i P_ij M_ij G_i,   dS_ij = P_ij (M_ij (G_i . v_j) - Delta_i),
//   dQ_i = scale sum_j dS_ij k_j,   dK_j = scale sum_i dS_ij q_i
// ---------------------------------------------------------------------------------------------------------------

template <typename scalar_t, typename acc_t>
void Call<scalar_t, acc_t>::backward_rows(int64_t begin, int64_t end) {
  using Vec = Vectorized<acc_t>;
  HeadRows<scalar_t, acc_t> rows(z, mask);
  std::vector<acc_t> grad_key_t(z.dim * z.padded), grad_value_t(z.dim_v * z.padded), probs(z.padded),
      grad_probs(z.padded), grad_scores(z.padded), multiplier(z.padded), query_row(z.dim), grad_row(z.dim_v);
  std::vector<uint32_t> words(4 * calls_per_row(z.n_k));
  for (int64_t bh = begin; bh < end; ++bh) {
    const int64_t b = bh / z.heads, h = bh % z.heads;
    rows.load(k[b][h], v[b][h], b, h);
    std::fill(grad_key_t.begin(), grad_key_t.end(), acc_t(0));
    std::fill(grad_value_t.begin(), grad_value_t.end(), acc_t(0));
    for (int64_t i = 0; i < z.n_q; ++i) {
      const acc_t row_lse = log_sum_exp[b][h][i];
      if (row_lse == minus_infinity) {
        for (int64_t d = 0; d < z.dim; ++d) gq[b][h][i][d] = scalar_t(0);
        continue;
      }
      const acc_t* bias = rows.bias.at_query(i);
      acc_t delta = 0;
      for (int64_t d = 0; d < z.dim_v; ++d) {
        grad_row[d] = static_cast<acc_t>(g[b][h][i][d]);
        delta += grad_row[d] * static_cast<acc_t>(out[b][h][i][d]);
      }
      for (int64_t d = 0; d < z.dim; ++d) query_row[d] = static_cast<acc_t>(q[b][h][i][d]) * static_cast<acc_t>(scale);
      combine_rows<acc_t>(query_row.data(), rows.key_t.data(), z.dim, z.padded, bias, probs.data(), z.padded);
      combine_rows<acc_t>(grad_row.data(), rows.value_t.data(), z.dim_v, z.padded, nullptr, grad_probs.data(), z.padded);
      const Vec shift(row_lse), delta_vec(delta);
      if (dropout.active) {
        keep_multipliers<acc_t>(dropout, b, h, i, z.n_k, multiplier.data(), words.data());
        for (int64_t j = z.n_k; j < z.padded; ++j) multiplier[j] = acc_t(0);
      }
      for (int64_t j = 0; j < z.padded; j += Vec::size()) {
        const Vec p = vexp<acc_t>(Vec::loadu(&probs[j]) - shift);
        Vec dp = Vec::loadu(&grad_probs[j]);
        Vec kept = p;
        if (dropout.active) {
          const Vec m = Vec::loadu(&multiplier[j]);
          dp = dp * m;
          kept = p * m;
        }
        (p * (dp - delta_vec)).store(&grad_scores[j]);
        kept.store(&probs[j]);  // P * M, the weights the values were averaged with
      }
      for (int64_t d = 0; d < z.dim_v; ++d) axpy<acc_t>(grad_row[d], probs.data(), grad_value_t.data() + d * z.padded, z.padded);
      for (int64_t d = 0; d < z.dim; ++d) {
        gq[b][h][i][d] = static_cast<scalar_t>(
            static_cast<acc_t>(scale) * dot<acc_t>(grad_scores.data(), rows.key_t.data() + d * z.padded, z.padded));
        axpy<acc_t>(query_row[d], grad_scores.data(), grad_key_t.data() + d * z.padded, z.padded);
      }
    }
    for (int64_t j = 0; j < z.n_k; ++j) {
      for (int64_t d = 0; d < z.dim; ++d) gk[b][h][j][d] = static_cast<scalar_t>(grad_key_t[d * z.padded + j]);
      for (int64_t d = 0; d < z.dim_v; ++d) gv[b][h][j][d] = static_cast<scalar_t>(grad_value_t[d * z.padded + j]);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The blocked path, for the larger head dims: kBlockRows query rows at a time, their scores over every key
// (kBlockRows x N_k values, never N_q x N_k) computed and consumed by BLAS GEMMs, the softmax and the keep mask row by
// row in between (the same rows, lanes and multipliers as the row path). At head dim 64 the row path re-reads a
// head's K^T and V^T (and read-modify-writes dK^T and dV^T) once per query row, so it is bound by loads; a GEMM
// keeps register tiles over queries and keys both.
// ---------------------------------------------------------------------------------------------------------------

// Rows per block: a block's scores and score gradients (2 x 64 x N_k floats, 256 KB at N_k = 512) stay in L2;
// 32 to 512 rows were within a few percent of each other at N = 512.
constexpr int64_t kBlockRows = 64;

// C = alpha op(A) op(B) + beta C, row-major, op(A) m x k, op(B) k x n (beta 0: C is only written). Through ATen's
// addmm on borrowed memory, which calls the BLAS PyTorch was built with on every platform it ships for (calling
// MKL's sgemm_ directly saved only 1-3%, and not every build of PyTorch exports it).
template <typename acc_t>
void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, acc_t alpha, const acc_t* a,
          int64_t lda, const acc_t* b, int64_t ldb, acc_t beta, acc_t* c, int64_t ldc) {
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value);
  auto view = [&](const acc_t* data, int64_t rows, int64_t cols, int64_t ld, bool transposed) {
    return transposed ? at::from_blob(const_cast<acc_t*>(data), {rows, cols}, {1, ld}, options)
                      : at::from_blob(const_cast<acc_t*>(data), {rows, cols}, {ld, 1}, options);
  };
  at::Tensor out = view(c, m, n, ldc, false);
  out.addmm_(view(a, m, k, lda, transpose_a), view(b, k, n, ldb, transpose_b), beta, alpha);
}

// Rows [first, first + count) of a (tokens, D) matrix, times multiplier, as contiguous acc_t rows: the GEMMs'
// operands (the models' (B, N, H, D) views and bfloat16 are read in place by no BLAS).
template <typename scalar_t, typename acc_t>
void copy_rows(const at::TensorAccessor<scalar_t, 2>& x, int64_t first, int64_t count, acc_t multiplier, acc_t* out) {
  const int64_t dim = x.size(1);
  for (int64_t r = 0; r < count; ++r) {
    for (int64_t d = 0; d < dim; ++d) out[r * dim + d] = static_cast<acc_t>(x[first + r][d]) * multiplier;
  }
}

// What both passes of the blocked path begin with: one (batch, head)'s keys and values as contiguous (N_k, D) rows
// and the mask's bias rows; per block, its queries times scale and its scores S = scale Q_blk K^T (kBlockRows x
// N_k, row stride padded); per query, the keep multipliers (zero on the padding past N_k).
template <typename scalar_t, typename acc_t>
struct HeadBlocks {
  HeadBlocks(const Sizes& sizes, const MaskView& mask)
      : sizes(sizes), keys(sizes.n_k * sizes.dim), values(sizes.n_k * sizes.dim_v), queries(kBlockRows * sizes.dim),
        scores(kBlockRows * sizes.padded, acc_t(0)), multiplier(sizes.padded, acc_t(0)),
        words(4 * calls_per_row(sizes.n_k)), bias(sizes, mask) {}

  void load(const at::TensorAccessor<scalar_t, 2>& key, const at::TensorAccessor<scalar_t, 2>& value, int64_t b,
            int64_t h) {
    copy_rows<scalar_t, acc_t>(key, 0, sizes.n_k, acc_t(1), keys.data());
    copy_rows<scalar_t, acc_t>(value, 0, sizes.n_k, acc_t(1), values.data());
    bias.at_head(b, h);
  }

  void block_scores(const at::TensorAccessor<scalar_t, 2>& query, int64_t first, int64_t rows, double scale) {
    copy_rows<scalar_t, acc_t>(query, first, rows, static_cast<acc_t>(scale), queries.data());
    gemm<acc_t>(false, true, rows, sizes.n_k, sizes.dim, acc_t(1), queries.data(), sizes.dim, keys.data(), sizes.dim,
                acc_t(0), scores.data(), sizes.padded);
  }

  const acc_t* keep_row(const Dropout& dropout, int64_t i) {
    keep_multipliers<acc_t>(dropout, bias.b, bias.h, i, sizes.n_k, multiplier.data(), words.data());
    return multiplier.data();
  }

  const Sizes& sizes;
  std::vector<acc_t> keys, values, queries, scores, multiplier;
  std::vector<uint32_t> words;
  BiasRows<acc_t> bias;
};

template <typename scalar_t, typename acc_t>
void Call<scalar_t, acc_t>::forward_blocks(int64_t begin, int64_t end) {
  using Vec = Vectorized<acc_t>;
  const int64_t ld = z.padded;
  HeadBlocks<scalar_t, acc_t> head(z, mask);
  std::vector<acc_t> outputs(kBlockRows * z.dim_v), inverse(kBlockRows);
  for (int64_t bh = begin; bh < end; ++bh) {
    const int64_t b = bh / z.heads, h = bh % z.heads;
    head.load(k[b][h], v[b][h], b, h);
    for (int64_t first = 0; first < z.n_q; first += kBlockRows) {
      const int64_t rows = std::min(kBlockRows, z.n_q - first);
      head.block_scores(q[b][h], first, rows, scale);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = first + r;
        acc_t* row = head.scores.data() + r * ld;
        const acc_t* row_bias = head.bias.at_query(i);
        Vec maximum(minus_infinity);
        for (int64_t j = 0; j < ld; j += Vec::size()) {
          const Vec s = Vec::loadu(row + j) + Vec::loadu(row_bias + j);
          s.store(row + j);
          maximum = at::vec::maximum(maximum, s);
        }
        const acc_t row_max = at::vec::vec_reduce_all<acc_t>(
            [](Vec& x, Vec& y) { return at::vec::maximum(x, y); }, maximum);
        if (row_max == minus_infinity) {  // no key allowed: output 0 (and no gradient)
          std::fill(row, row + ld, acc_t(0));
          inverse[r] = acc_t(0);
          log_sum_exp[b][h][i] = minus_infinity;
          continue;
        }
        // The weights are left unnormalised (times the keep multipliers): 1 / sum scales the output row instead.
        const acc_t* multiplier = dropout.active ? head.keep_row(dropout, i) : nullptr;
        Vec sum(acc_t(0));
        const Vec shift(row_max);
        for (int64_t j = 0; j < ld; j += Vec::size()) {
          const Vec e = vexp<acc_t>(Vec::loadu(row + j) - shift);
          sum = sum + e;
          (dropout.active ? e * Vec::loadu(multiplier + j) : e).store(row + j);
        }
        const acc_t total = at::vec::vec_reduce_all<acc_t>([](Vec& x, Vec& y) { return x + y; }, sum);
        log_sum_exp[b][h][i] = row_max + std::log(total);
        inverse[r] = acc_t(1) / total;
      }
      gemm<acc_t>(false, false, rows, z.dim_v, z.n_k, acc_t(1), head.scores.data(), ld, head.values.data(), z.dim_v,
                  acc_t(0), outputs.data(), z.dim_v);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t d = 0; d < z.dim_v; ++d) {
          out[b][h][first + r][d] = static_cast<scalar_t>(outputs[r * z.dim_v + d] * inverse[r]);
        }
      }
    }
  }
}

// The backward of the blocked path: per block, S and P = exp(S - lse) recomputed, dP = dO V^T, then row by row
// P M and dS = P (M dP - Delta); dV += (P M)^T dO, dQ = scale dS K, dK += dS^T (scale Q), all GEMMs.
template <typename scalar_t, typename acc_t>
void Call<scalar_t, acc_t>::backward_blocks(int64_t begin, int64_t end) {
  using Vec = Vectorized<acc_t>;
  const int64_t ld = z.padded;
  HeadBlocks<scalar_t, acc_t> head(z, mask);
  std::vector<acc_t> grad_keys(z.n_k * z.dim), grad_values(z.n_k * z.dim_v), grads(kBlockRows * z.dim_v),
      grad_queries(kBlockRows * z.dim), grad_scores(kBlockRows * ld, acc_t(0)), delta(kBlockRows);
  for (int64_t bh = begin; bh < end; ++bh) {
    const int64_t b = bh / z.heads, h = bh % z.heads;
    head.load(k[b][h], v[b][h], b, h);
    for (int64_t first = 0; first < z.n_q; first += kBlockRows) {
      const int64_t rows = std::min(kBlockRows, z.n_q - first);
      const bool accumulate = first > 0;
      head.block_scores(q[b][h], first, rows, scale);
      copy_rows<scalar_t, acc_t>(g[b][h], first, rows, acc_t(1), grads.data());
      for (int64_t r = 0; r < rows; ++r) {
        acc_t sum = 0;
        for (int64_t d = 0; d < z.dim_v; ++d) {
          sum += grads[r * z.dim_v + d] * static_cast<acc_t>(out[b][h][first + r][d]);
        }
        delta[r] = sum;
      }
      gemm<acc_t>(false, true, rows, z.n_k, z.dim_v, acc_t(1), grads.data(), z.dim_v, head.values.data(), z.dim_v,
                  acc_t(0), grad_scores.data(), ld);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = first + r;
        acc_t* p_row = head.scores.data() + r * ld;
        acc_t* ds_row = grad_scores.data() + r * ld;
        const acc_t row_lse = log_sum_exp[b][h][i];
        if (row_lse == minus_infinity) {
          std::fill(p_row, p_row + ld, acc_t(0));
          std::fill(ds_row, ds_row + ld, acc_t(0));
          continue;
        }
        const acc_t* row_bias = head.bias.at_query(i);
        const acc_t* multiplier = dropout.active ? head.keep_row(dropout, i) : nullptr;
        const Vec shift(row_lse), delta_vec(delta[r]);
        for (int64_t j = 0; j < ld; j += Vec::size()) {
          const Vec p = vexp<acc_t>(Vec::loadu(p_row + j) + Vec::loadu(row_bias + j) - shift);
          Vec dp = Vec::loadu(ds_row + j);
          Vec kept = p;
          if (dropout.active) {
            const Vec m = Vec::loadu(multiplier + j);
            dp = dp * m;
            kept = p * m;
          }
          (p * (dp - delta_vec)).store(ds_row + j);
          kept.store(p_row + j);  // P * M, the weights the values were averaged with
        }
      }
      gemm<acc_t>(true, false, z.n_k, z.dim_v, rows, acc_t(1), head.scores.data(), ld, grads.data(), z.dim_v,
                  accumulate ? acc_t(1) : acc_t(0), grad_values.data(), z.dim_v);
      gemm<acc_t>(true, false, z.n_k, z.dim, rows, acc_t(1), grad_scores.data(), ld, head.queries.data(), z.dim,
                  accumulate ? acc_t(1) : acc_t(0), grad_keys.data(), z.dim);
      gemm<acc_t>(false, false, rows, z.dim, z.n_k, static_cast<acc_t>(scale), grad_scores.data(), ld,
                  head.keys.data(), z.dim, acc_t(0), grad_queries.data(), z.dim);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t d = 0; d < z.dim; ++d) {
          gq[b][h][first + r][d] = static_cast<scalar_t>(grad_queries[r * z.dim + d]);
        }
      }
    }
    for (int64_t j = 0; j < z.n_k; ++j) {
      for (int64_t d = 0; d < z.dim; ++d) gk[b][h][j][d] = static_cast<scalar_t>(grad_keys[j * z.dim + d]);
      for (int64_t d = 0; d < z.dim_v; ++d) gv[b][h][j][d] = static_cast<scalar_t>(grad_values[j * z.dim_v + d]);
    }
  }
}

// Head dims from which the blocked path runs: below it a head's K^T and V^T sit in L1 and the row path is faster
// (a GEMM with an inner dimension of 8 is mostly packing). Settable for tests and benchmarks.
int64_t blocked_min_head_dim = 12;

bool use_blocks(const at::Tensor& query, const at::Tensor& value) {
  return std::max(query.size(3), value.size(3)) >= blocked_min_head_dim;
}

// ---------------------------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------------------------

void check_inputs(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value) {
  for (const at::Tensor* t : {&query, &key, &value}) {
    TORCH_CHECK(t->device().is_cpu(), "the CPU attention kernel takes CPU tensors, got one on ", t->device());
    TORCH_CHECK(t->dim() == 4, "query, key and value must be (batch, heads, tokens, head dim), got ", t->sizes());
    TORCH_CHECK(t->scalar_type() == query.scalar_type(), "query, key and value must share a dtype, got ",
                query.scalar_type(), " and ", t->scalar_type());
  }
  TORCH_CHECK(query.size(0) == key.size(0) && query.size(1) == key.size(1) && key.size(0) == value.size(0) &&
                  key.size(1) == value.size(1),
              "query, key and value must share batch and heads, got ", query.sizes(), ", ", key.sizes(), ", ",
              value.sizes());
  TORCH_CHECK(query.size(3) == key.size(3), "query and key must share the head dim, got ", query.size(3), " and ",
              key.size(3));
  TORCH_CHECK(key.size(2) == value.size(2), "key and value must have as many tokens, got ", key.size(2), " and ",
              value.size(2));
  TORCH_CHECK(key.size(2) > 0, "attention needs at least one key");
}

#define DISPATCH_ATTENTION_TYPES(dtype, ...)                                   \
  [&] {                                                                        \
    switch (dtype) {                                                           \
      case at::kFloat: { using scalar_t = float; using acc_t = float; return __VA_ARGS__(); }          \
      case at::kBFloat16: { using scalar_t = at::BFloat16; using acc_t = float; return __VA_ARGS__(); } \
      case at::kDouble: { using scalar_t = double; using acc_t = double; return __VA_ARGS__(); }        \
      default: TORCH_CHECK(false, "the CPU attention kernel takes float32, bfloat16 or float64, got ", dtype); \
    }                                                                          \
  }()

std::vector<at::Tensor> attention_forward(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                          const c10::optional<at::Tensor>& allowed, double dropout_p, double scale,
                                          int64_t seed) {
  check_inputs(query, key, value);
  const Dropout dropout = make_dropout(dropout_p, seed);
  const MaskView mask = mask_view(allowed, query, key.size(2));
  at::Tensor output = at::empty({query.size(0), query.size(1), query.size(2), value.size(3)}, query.options());
  const auto acc_dtype = query.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor lse = at::empty({query.size(0), query.size(1), query.size(2)}, query.options().dtype(acc_dtype));
  DISPATCH_ATTENTION_TYPES(query.scalar_type(), [&] {
    Call<scalar_t, acc_t> call(query, key, value, mask, scale, dropout, output, lse);
    const bool blocked = use_blocks(query, value);
    at::parallel_for(0, query.size(0) * query.size(1), 1, [&](int64_t begin, int64_t end) {
      blocked ? call.forward_blocks(begin, end) : call.forward_rows(begin, end);
    });
  });
  return {output, lse};
}

std::vector<at::Tensor> attention_backward(const at::Tensor& grad_output, const at::Tensor& query,
                                           const at::Tensor& key, const at::Tensor& value, const at::Tensor& output,
                                           const at::Tensor& lse, const c10::optional<at::Tensor>& allowed,
                                           double dropout_p, double scale, int64_t seed) {
  check_inputs(query, key, value);
  TORCH_CHECK(grad_output.sizes() == output.sizes() && grad_output.scalar_type() == output.scalar_type(),
              "the output gradient must match the output, got ", grad_output.sizes(), " and ", output.sizes());
  const Dropout dropout = make_dropout(dropout_p, seed);
  const MaskView mask = mask_view(allowed, query, key.size(2));
  at::Tensor grad_query = at::empty_like(query, at::MemoryFormat::Contiguous);
  at::Tensor grad_key = at::empty_like(key, at::MemoryFormat::Contiguous);
  at::Tensor grad_value = at::empty_like(value, at::MemoryFormat::Contiguous);
  DISPATCH_ATTENTION_TYPES(query.scalar_type(), [&] {
    Call<scalar_t, acc_t> call(grad_output, query, key, value, output, lse, mask, scale, dropout, grad_query, grad_key,
                               grad_value);
    const bool blocked = use_blocks(query, value);
    at::parallel_for(0, query.size(0) * query.size(1), 1, [&](int64_t begin, int64_t end) {
      blocked ? call.backward_blocks(begin, end) : call.backward_rows(begin, end);
    });
  });
  return {grad_query, grad_key, grad_value};
}

// ---------------------------------------------------------------------------------------------------------------
// Elementwise dropout (the models' activation dropouts) from the same generator: y = x * keep / (1 - p). The
// contiguous input is cut into rows of kDropoutRow elements; row r draws its mask as a query row of the attention
// does, with counter (c, r mod 2^32, r div 2^32, kDropoutTag) (the tag keeps its streams apart from attention rows),
// so element e of a row takes lane e / calls of call e % calls. Its backward is the same map on the gradient (the
// mask drawn again from the seed): dropout is linear in x.
// ---------------------------------------------------------------------------------------------------------------

constexpr int64_t kDropoutRow = 4096;
constexpr uint32_t kDropoutTag = 0xFFFFFFFFu;

at::Tensor dropout(const at::Tensor& input, double dropout_p, int64_t seed) {
  TORCH_CHECK(input.device().is_cpu(), "the CPU dropout takes CPU tensors, got ", input.device());
  const Dropout drop = make_dropout(dropout_p, seed);
  const at::Tensor x = input.contiguous();
  at::Tensor output = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t numel = x.numel();
  const int64_t rows = (numel + kDropoutRow - 1) / kDropoutRow;
  DISPATCH_ATTENTION_TYPES(x.scalar_type(), [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> multiplier(kDropoutRow);
      std::vector<uint32_t> words(4 * calls_per_row(kDropoutRow));
      for (int64_t r = begin; r < end; ++r) {
        const int64_t start = r * kDropoutRow, length = std::min(kDropoutRow, numel - start);
        if (drop.active) {
          keep_multipliers<acc_t>(drop, static_cast<int64_t>(static_cast<uint64_t>(r) >> 32), kDropoutTag,
                                  static_cast<int64_t>(static_cast<uint32_t>(r)), length, multiplier.data(),
                                  words.data());
        }
        for (int64_t e = 0; e < length; ++e) {
          const acc_t value = static_cast<acc_t>(in[start + e]);
          out[start + e] = static_cast<scalar_t>(drop.active ? value * multiplier[e] : value);
        }
      }
    });
  });
  return output;
}

// The keep mask the kernels draw for a (batch, heads, n_q, n_k) call with this seed and p (True: kept).
at::Tensor keep_mask(int64_t batch, int64_t heads, int64_t n_q, int64_t n_k, double dropout_p, int64_t seed) {
  const Dropout dropout = make_dropout(dropout_p, seed);
  at::Tensor mask = at::empty({batch, heads, n_q, n_k}, at::TensorOptions().dtype(at::kBool));
  auto m = mask.accessor<bool, 4>();
  std::vector<float> multiplier(n_k);
  std::vector<uint32_t> words(4 * calls_per_row(n_k));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < n_q; ++i) {
        if (dropout.active) keep_multipliers<float>(dropout, b, h, i, n_k, multiplier.data(), words.data());
        for (int64_t j = 0; j < n_k; ++j) m[b][h][i][j] = !dropout.active || multiplier[j] != 0.0f;
      }
  return mask;
}

// Philox4x32-10 of one counter and key, for the known-answer test.
std::vector<int64_t> philox(std::vector<int64_t> counter, std::vector<int64_t> key) {
  TORCH_CHECK(counter.size() == 4 && key.size() == 2, "philox takes 4 counter words and 2 key words");
  uint32_t x0 = counter[0], x1 = counter[1], x2 = counter[2], x3 = counter[3];
  philox4x32_10(x0, x1, x2, x3, static_cast<uint32_t>(key[0]), static_cast<uint32_t>(key[1]));
  return {x0, x1, x2, x3};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("forward", &attention_forward, "attention with dropout: (output, log-sum-exp)");
  module.def("backward", &attention_backward, "its backward: (grad query, grad key, grad value)");
  module.def("keep_mask", &keep_mask, "the keep mask drawn for a call");
  module.def("dropout", &dropout, "elementwise dropout x * keep / (1 - p); also its backward");
  module.def("dropout_row", [] { return kDropoutRow; }, "elements per generator row of the elementwise dropout");
  module.def("philox", &philox, "Philox4x32-10 of one counter");
  module.def("lanes_per_call", [] { return kLanesPerCall; });
  module.def("blocked_min_head_dim", [] { return blocked_min_head_dim; }, "head dims from which the blocked path runs");
  module.def("set_blocked_min_head_dim", [](int64_t dim) { blocked_min_head_dim = dim; },
             "choose the path by hand (tests, benchmarks)");
}
