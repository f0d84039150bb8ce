// Shared helpers of the JIT tests: the graphs under test (built by hand, as lower() will), random
// batches for a kernel's slots, and the comparison of a run against the reference evaluator.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lossjit/eval.hpp"
#include "lossjit/kernel.hpp"

namespace jt {

using namespace lossjit;

struct Case {
    std::string name;
    Graph g;
    std::vector<std::pair<std::string, double>> params;
};

// Cross-entropy with probability targets: loss = logsumexp(u) - dot(p, u), grad = softmax(u) - p.
inline Graph ce_soft() {
    Graph g;
    const int u = g.input("u", InputKind::logits), p = g.input("p", InputKind::probs);
    g.add_output("loss", g.apply(Op::sub, g.apply(Op::logsumexp, u), g.apply(Op::dot, p, u)));
    g.add_output("grad.u", g.apply(Op::sub, g.apply(Op::softmax, u), p));
    return g;
}
// Cross-entropy with integer labels: loss = logsumexp(u) - at(u, y), grad = softmax(u) - onehot(y)
// (with_grad: the loss alone without).
inline Graph ce_hard(bool with_grad = true) {
    Graph g;
    const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label);
    g.add_output("loss", g.apply(Op::sub, g.apply(Op::logsumexp, u), g.apply(Op::at, u, y)));
    if (with_grad) g.add_output("grad.u", g.apply(Op::sub, g.apply(Op::softmax, u), g.apply(Op::onehot, y)));
    return g;
}

inline std::vector<Case> cases() {
    std::vector<Case> cs;
    cs.push_back({"ce_soft", ce_soft(), {}});
    cs.push_back({"ce_hard", ce_hard(), {}});
    {  // label smoothing: (1 - eps) CE + eps * mean over classes
        Graph g;
        const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label), eps = g.input("eps", InputKind::param);
        const int one_m = g.apply(Op::sub, g.constant(1), eps);
        const int lse = g.apply(Op::logsumexp, u);
        g.add_output("loss", g.apply(Op::sub, g.apply(Op::sub, lse, g.apply(Op::mul, one_m, g.apply(Op::at, u, y))),
                                     g.apply(Op::mul, eps, g.apply(Op::mean, u))));
        g.add_output("grad.u", g.apply(Op::sub, g.apply(Op::sub, g.apply(Op::softmax, u), g.apply(Op::mul, one_m, g.apply(Op::onehot, y))),
                                       g.apply(Op::div, eps, g.row_length())));
        cs.push_back({"label_smoothing", g, {{"eps", 0.1}}});
    }
    {  // z-loss: CE + scale * lse^2
        Graph g;
        const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label), s = g.input("zscale", InputKind::param);
        const int lse = g.apply(Op::logsumexp, u);
        g.add_output("loss", g.apply(Op::add, g.apply(Op::sub, lse, g.apply(Op::at, u, y)), g.apply(Op::mul, s, g.apply(Op::pow, lse, g.constant(2)))));
        const int f = g.apply(Op::add, g.constant(1), g.apply(Op::mul, g.apply(Op::mul, g.constant(2), s), lse));
        g.add_output("grad.u", g.apply(Op::sub, g.apply(Op::mul, f, g.apply(Op::softmax, u)), g.apply(Op::onehot, y)));
        cs.push_back({"z_loss", g, {{"zscale", 1e-4}}});
    }
    {  // logit soft-capping: v = cap tanh(u / cap)
        Graph g;
        const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label), cap = g.input("cap", InputKind::param);
        const int t = g.apply(Op::tanh, g.apply(Op::div, u, cap));
        const int v = g.apply(Op::mul, cap, t);
        g.add_output("loss", g.apply(Op::sub, g.apply(Op::logsumexp, v), g.apply(Op::at, v, y)));
        g.add_output("grad.u", g.apply(Op::mul, g.apply(Op::sub, g.apply(Op::softmax, v), g.apply(Op::onehot, y)),
                                       g.apply(Op::sub, g.constant(1), g.apply(Op::pow, t, g.constant(2)))));
        cs.push_back({"soft_cap", g, {{"cap", 30}}});
    }
    {  // binary cross-entropy with logits, multi-label
        Graph g;
        const int u = g.input("u", InputKind::logits), p = g.input("p", InputKind::probs);
        g.add_output("loss", g.apply(Op::sum, g.apply(Op::sub, g.apply(Op::softplus, u), g.apply(Op::mul, p, u))));
        g.add_output("grad.u", g.apply(Op::sub, g.apply(Op::sigmoid, u), p));
        cs.push_back({"bce", g, {}});
    }
    {  // focal-like terms: pow with a param exponent (fast paths), log_softmax, at of a vector map
        Graph g;
        const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label), gm = g.input("gamma", InputKind::param);
        const int lp = g.apply(Op::at, g.apply(Op::log_softmax, u), y);
        const int pt = g.apply(Op::exp, lp);
        g.add_output("loss", g.apply(Op::neg, g.apply(Op::mul, g.apply(Op::pow, g.apply(Op::sub, g.constant(1), pt), gm), lp)));
        g.add_output("grad.u", g.apply(Op::mul, g.apply(Op::log_softmax, u), g.apply(Op::pow, g.apply(Op::sub, g.constant(1), g.apply(Op::softmax, u)), gm)));
        cs.push_back({"focal_g2", g, {{"gamma", 2}}});
        cs.push_back({"focal_g1.5", g, {{"gamma", 1.5}}});
        cs.push_back({"focal_g0.3", g, {{"gamma", 0.3}}});
    }
    {  // KL-like with log1p, and log
        Graph g;
        const int u = g.input("u", InputKind::logits), p = g.input("p", InputKind::probs);
        g.add_output("loss", g.apply(Op::sum, g.apply(Op::mul, p, g.apply(Op::sub, g.apply(Op::log1p, p), g.apply(Op::log_softmax, u)))));
        g.add_output("grad.u", g.apply(Op::sub, g.apply(Op::softmax, u), g.apply(Op::log, g.apply(Op::add, p, g.constant(1)))));
        cs.push_back({"kl_log1p", g, {}});
    }
    {  // elementwise zoo: sqrt abs sign step min max expm1 amax mean
        Graph g;
        const int u = g.input("u", InputKind::logits), p = g.input("p", InputKind::probs);
        const int z = g.apply(Op::add, g.apply(Op::sqrt, g.apply(Op::abs, u)), g.apply(Op::mul, g.apply(Op::sign, u), g.apply(Op::step, u)));
        const int w = g.apply(Op::add, g.apply(Op::sub, z, g.apply(Op::min, u, p)), g.apply(Op::max, u, g.constant(0.5)));
        g.add_output("loss", g.apply(Op::add, g.apply(Op::amax, u), g.apply(Op::mean, g.apply(Op::expm1, g.apply(Op::div, u, g.constant(10))))));
        g.add_output("grad.u", w);
        cs.push_back({"zoo", g, {}});
    }
    {  // general pow (vector exponent), div, neg
        Graph g;
        const int u = g.input("u", InputKind::logits), p = g.input("p", InputKind::probs);
        g.add_output("loss", g.apply(Op::sum, g.apply(Op::pow, g.apply(Op::add, p, g.constant(1)), g.apply(Op::div, u, g.constant(10)))));
        g.add_output("grad.u", g.apply(Op::neg, g.apply(Op::div, u, g.apply(Op::add, g.constant(1), g.apply(Op::abs, u)))));
        cs.push_back({"pow_general", g, {}});
    }
    {  // class weights: a shared row, weighted CE
        Graph g;
        const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label), w = g.input("w", InputKind::weights);
        const int wy = g.apply(Op::at, w, y);
        g.add_output("loss", g.apply(Op::mul, wy, g.apply(Op::sub, g.apply(Op::logsumexp, u), g.apply(Op::at, u, y))));
        g.add_output("grad.u", g.apply(Op::mul, wy, g.apply(Op::sub, g.apply(Op::softmax, u), g.apply(Op::onehot, y))));
        cs.push_back({"class_weights", g, {}});
    }
    {  // a per-row scalar input and K
        Graph g;
        const int u = g.input("u", InputKind::logits), s = g.input("s", InputKind::scalar);
        const int K = g.row_length();
        g.add_output("loss", g.apply(Op::add, g.apply(Op::div, g.apply(Op::mul, s, g.apply(Op::logsumexp, u)), K), g.apply(Op::log, K)));
        g.add_output("grad.u", g.apply(Op::div, g.apply(Op::mul, s, g.apply(Op::softmax, u)), K));
        cs.push_back({"scalar_input", g, {}});
    }
    {  // depth 2: softmax of softmax
        Graph g;
        const int u = g.input("u", InputKind::logits), p = g.input("p", InputKind::probs);
        const int s1 = g.apply(Op::softmax, u);
        g.add_output("loss", g.apply(Op::dot, g.apply(Op::softmax, s1), p));
        g.add_output("grad.u", g.apply(Op::log_softmax, s1));
        cs.push_back({"nested_softmax", g, {}});
    }
    {  // reductions of scalars fold; dot of a vector and a scalar; several scalar outputs
        Graph g;
        const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label), s = g.input("s", InputKind::scalar);
        int t = g.apply(Op::add, g.apply(Op::sum, s), g.apply(Op::mean, s));
        t = g.apply(Op::add, t, g.apply(Op::dot, s, s));
        t = g.apply(Op::add, t, g.apply(Op::logsumexp, s));
        t = g.apply(Op::add, t, g.apply(Op::amax, s));
        t = g.apply(Op::add, t, g.apply(Op::at, s, y));
        g.add_output("folds", t);
        g.add_output("dotvs", g.apply(Op::dot, u, s));
        g.add_output("lse", g.apply(Op::logsumexp, u));
        cs.push_back({"scalar_folds", g, {}});
    }
    return cs;
}

enum class Mode { normal, neg_inf, big };

// A batch for a kernel, with long double copies of the inputs for the reference.
struct Data {
    std::size_t N = 0, K = 0;
    std::vector<std::vector<float>> f32;
    std::vector<std::vector<double>> f64;
    std::vector<std::vector<bf16>> b16;
    std::vector<std::vector<std::int64_t>> i64;
    std::vector<std::vector<std::int32_t>> i32;
    std::vector<std::vector<long double>> ref;  // per slot, the values as the kernel sees them
    std::vector<std::pair<std::string, double>> params;  // the compile-time params, for the reference
    Batch batch;
};

inline long double stored(DType d, long double v) {
    if (d == DType::f32) return static_cast<float>(v);
    if (d == DType::bf16) return bf16::from_float(static_cast<float>(v)).to_float();
    return static_cast<double>(v);
}

// Fills every input slot of `k` with random values and binds every output.
inline void make_data(const Kernel& k, Data& d, std::size_t N, std::size_t K, Mode mode, std::uint32_t seed,
                      bool shared_weights = true) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> nd(0, 2);
    std::uniform_real_distribution<double> ud(0, 1);
    d.N = N;
    d.K = K;
    const auto& slots = k.slots();
    d.f32.resize(slots.size());
    d.f64.resize(slots.size());
    d.b16.resize(slots.size());
    d.i64.resize(slots.size());
    d.i32.resize(slots.size());
    d.ref.resize(slots.size());
    // labels first: -inf logits avoid the label's class
    std::vector<std::size_t> labels(N);
    for (auto& y : labels) y = static_cast<std::size_t>(rng() % K);
    std::vector<std::vector<bool>> masked(N, std::vector<bool>(K, false));
    if (mode == Mode::neg_inf)
        for (std::size_t r = 0; r < N; ++r)
            for (std::size_t j = 0; j < K; ++j) masked[r][j] = j != labels[r] && ud(rng) < 0.4;
    for (std::size_t s = 0; s < slots.size(); ++s) {
        const Slot& sl = slots[s];
        const bool shared = sl.kind == InputKind::weights && shared_weights;
        const std::size_t rows = shared ? 1 : N, cols = sl.vector ? K : 1;
        std::vector<long double>& v = d.ref[s];
        v.assign(rows * cols, 0.0L);
        if (!sl.output) {
            for (std::size_t r = 0; r < rows; ++r) {
                long double tot = 0;
                for (std::size_t j = 0; j < cols; ++j) {
                    long double x = 0;
                    switch (sl.kind) {
                    case InputKind::logits:
                        x = mode == Mode::big ? (ud(rng) < 0.5 ? -80.0 : 80.0) * ud(rng) * (ud(rng) < 0.3 ? 1.0 : 0.05) + (j % 7 == 0 ? 80 : 0) - 40 * (j % 5 == 1)
                                              : nd(rng);
                        if (masked[r][j]) x = -std::numeric_limits<long double>::infinity();
                        break;
                    case InputKind::probs: x = masked[r][j] ? 0.0 : ud(rng); break;
                    case InputKind::weights: x = 0.5 + ud(rng); break;
                    case InputKind::label: x = static_cast<long double>(labels[r]); break;
                    case InputKind::scalar: x = 0.5 + ud(rng); break;
                    default: break;
                    }
                    v[r * cols + j] = x;
                    tot += x;
                }
                if (sl.kind == InputKind::probs && tot > 0)
                    for (std::size_t j = 0; j < cols; ++j) v[r * cols + j] /= tot;
            }
            for (auto& x : v) x = sl.dtype == DType::i32 || sl.dtype == DType::i64 ? x : stored(sl.dtype, x);
        }
        const std::size_t n = rows * cols;
        Array a;
        switch (sl.dtype) {
        case DType::f32:
            d.f32[s].resize(n);
            for (std::size_t i = 0; i < n; ++i) d.f32[s][i] = static_cast<float>(v[i]);
            a = sl.vector ? (shared ? shared_row(d.f32[s].data(), K) : matrix(d.f32[s].data(), N, K)) : column(d.f32[s].data(), N);
            break;
        case DType::f64:
            d.f64[s].resize(n);
            for (std::size_t i = 0; i < n; ++i) d.f64[s][i] = static_cast<double>(v[i]);
            a = sl.vector ? (shared ? shared_row(d.f64[s].data(), K) : matrix(d.f64[s].data(), N, K)) : column(d.f64[s].data(), N);
            break;
        case DType::bf16:
            d.b16[s].resize(n);
            for (std::size_t i = 0; i < n; ++i) d.b16[s][i] = bf16::from_float(static_cast<float>(v[i]));
            a = sl.vector ? (shared ? shared_row(d.b16[s].data(), K) : matrix(d.b16[s].data(), N, K)) : column(d.b16[s].data(), N);
            break;
        case DType::i64:
            d.i64[s].resize(n);
            for (std::size_t i = 0; i < n; ++i) d.i64[s][i] = static_cast<std::int64_t>(v[i]);
            a = column(d.i64[s].data(), N);
            break;
        case DType::i32:
            d.i32[s].resize(n);
            for (std::size_t i = 0; i < n; ++i) d.i32[s][i] = static_cast<std::int32_t>(v[i]);
            a = column(d.i32[s].data(), N);
            break;
        }
        if (sl.output) {  // poison outputs so that an unwritten element shows
            for (auto& x : d.f32[s]) x = std::numeric_limits<float>::quiet_NaN();
            for (auto& x : d.f64[s]) x = std::numeric_limits<double>::quiet_NaN();
            for (auto& x : d.b16[s]) x = bf16{0x7fc1};
        }
        d.batch.bind(sl.name, a);
    }
}

inline long double output_value(const Data& d, const Slot& sl, std::size_t s, std::size_t i) {
    switch (sl.dtype) {
    case DType::f32: return d.f32[s][i];
    case DType::f64: return d.f64[s][i];
    case DType::bf16: return d.b16[s][i].to_float();
    default: return 0;
    }
}

// Relative tolerance per dtype of the math, with an absolute floor scaled by the row's size.
struct Tol {
    double rel, abs;
};
inline Tol tolerance(DType out, DType math, double loose = 1) {
    if (out == DType::bf16) return {loose * 1.0 / 128, loose * 1e-5};
    if (math == DType::f64 && out == DType::f64) return {loose * 1e-10, loose * 1e-12};
    return {loose * 3e-5, loose * 3e-6};
}

inline bool close(long double got, long double want, Tol t, long double scale) {
    if (std::isnan(want)) return std::isnan(got);
    if (std::isinf(want)) return got == want;
    if (!std::isfinite(got)) return false;
    return std::fabs(got - want) <= t.rel * std::fabs(want) + t.abs * (1 + scale);
}

// Compares every output of the run with the reference evaluator, on every row (or `max_rows`).
inline void compare(const Kernel& k, const Data& d, const Result& res, double loose = 1, std::size_t max_rows = 1000000) {
    const auto& slots = k.slots();
    const Graph& g = k.graph();
    const DType math = k.dtype() == DType::f64 ? DType::f64 : DType::f32;
    std::vector<long double> sums(slots.size(), 0.0L);
    std::vector<long double> abs_sums(slots.size(), 0.0L);
    for (std::size_t r = 0; r < d.N; ++r) {
        RowValues row;
        for (auto& [n, v] : d.params) row.set(n, static_cast<long double>(v));
        for (std::size_t s = 0; s < slots.size(); ++s) {
            const Slot& sl = slots[s];
            if (sl.output) continue;
            const bool shared = d.ref[s].size() == (sl.vector ? d.K : 1) && d.N > 1;
            const std::size_t base = shared ? 0 : r * (sl.vector ? d.K : 1);
            if (sl.vector) row.set(sl.name, std::vector<long double>(d.ref[s].begin() + static_cast<std::ptrdiff_t>(base),
                                                                      d.ref[s].begin() + static_cast<std::ptrdiff_t>(base + d.K)));
            else row.set(sl.name, d.ref[s][base]);
        }
        const bool check_row = r < max_rows;
        std::vector<Value> all = evaluate_all(g, row, d.K);
        for (std::size_t s = 0; s < slots.size(); ++s) {
            const Slot& sl = slots[s];
            if (!sl.output) continue;
            const int root = g.output_root(sl.name);
            const Value& want = all[static_cast<std::size_t>(root)];
            const Tol t = tolerance(sl.dtype, math, loose);
            if (!sl.vector) {
                sums[s] += want.s;
                abs_sums[s] += std::fabs(want.s);
                continue;  // per-row scalar outputs are checked through the sums and below
            }
            if (!check_row) continue;
            long double scale = 0;
            for (std::size_t j = 0; j < d.K; ++j)
                if (std::isfinite(want[j])) scale = std::max(scale, std::fabs(want[j]));
            for (std::size_t j = 0; j < d.K; ++j) {
                const long double got = output_value(d, sl, s, r * d.K + j);
                if (!close(got, want[j], t, scale)) {
                    INFO(sl.name << " row " << r << " element " << j << " of K = " << d.K << ": got " << static_cast<double>(got)
                                 << ", want " << static_cast<double>(want[j]));
                    REQUIRE(close(got, want[j], t, scale));
                }
            }
        }
        // per-row scalar outputs, bound by make_data
        for (std::size_t s = 0; s < slots.size(); ++s) {
            const Slot& sl = slots[s];
            if (!sl.output || sl.vector || !check_row) continue;
            const int root = g.output_root(sl.name);
            const long double want = all[static_cast<std::size_t>(root)].s;
            const long double got = output_value(d, sl, s, r);
            const Tol t = tolerance(sl.dtype == DType::bf16 ? DType::f32 : sl.dtype, math, loose);
            if (!close(got, want, t, std::fabs(want))) {
                INFO(sl.name << " row " << r << " of K = " << d.K << ": got " << static_cast<double>(got) << ", want " << static_cast<double>(want));
                REQUIRE(close(got, want, t, std::fabs(want)));
            }
        }
    }
    for (std::size_t s = 0; s < slots.size(); ++s) {
        const Slot& sl = slots[s];
        if (!sl.output || sl.vector) continue;
        const long double got = res.sum(sl.name);
        const Tol t = tolerance(sl.dtype == DType::bf16 ? DType::f32 : sl.dtype, math, loose);
        INFO("sum of " << sl.name << ": got " << static_cast<double>(got) << ", want " << static_cast<double>(sums[s]));
        REQUIRE(close(got, sums[s], t, abs_sums[s]));
    }
}

// Compiles, runs and compares one case.
inline Kernel check_case(const Case& c, std::size_t N, std::size_t K, CompileOptions o, Mode mode, std::uint32_t seed = 1,
                         double loose = 1) {
    o.params = c.params;
    Kernel k = compile(c.g, o);
    Data d;
    make_data(k, d, N, K, mode, seed);
    d.params = c.params;
    const Result res = k.run(d.batch);
    INFO("case " << c.name << ", K = " << K << ", N = " << N << ", dtype " << to_string(o.dtype) << ", specialized " << (o.row_length != 0));
    compare(k, d, res, loose);
    return k;
}

// The llvm.prefetch calls of an IR text: each call's line.
inline std::vector<std::string> prefetch_calls(const std::string& ir) {
    std::vector<std::string> calls;
    for (std::size_t pos = 0; (pos = ir.find("call void @llvm.prefetch", pos)) != std::string::npos; ++pos)
        calls.push_back(ir.substr(pos, ir.find('\n', pos) - pos));
    return calls;
}

// The N rows of K elements in x, each padded with -inf to Kp elements: a row whose loss and
// softmax are the same, its padding's gradient 0, for a reference from the kernel for rows of Kp
// (generic K takes each length's own kernel: jit::make_plans).
inline std::vector<float> padded_rows(const std::vector<float>& x, std::size_t N, std::size_t K, std::size_t Kp) {
    std::vector<float> p(N * Kp, -INFINITY);
    for (std::size_t r = 0; r < N; ++r) std::copy_n(x.begin() + static_cast<std::ptrdiff_t>(r * K), K, p.begin() + static_cast<std::ptrdiff_t>(r * Kp));
    return p;
}

}  // namespace jt
