// The fuzzer's judge: what a kernel's output element may be, given the long double evaluator
// (eval.hpp) and an estimate of how well-conditioned the element is in the kernel's precision.
//
// The estimate: the graph is evaluated again, node by node, by the same evaluator, but every
// node's result (the real inputs included; not the exact ops: neg, abs, sign, step, min, max,
// amax, at, onehot) is perturbed by a random relative error of up to 4 units in the last place
// of the compute type (fp32 or fp64) and then rounded to that type.
// Row reductions (sum, mean, dot, logsumexp, softmax, log_softmax) also get an absolute error of
// (2 + sqrt(K)) such units times the sum of their terms' magnitudes: what K additions can lose.
// step and sign of a value within rounding of 0 take either side (break_ties below); sums,
// differences and products of whole numbers that fit the significand are exact (K - 1).
// Rounding to the compute type brings its range too: overflow to inf and underflow to 0 happen
// in these emulations as they do in the kernel, which the long double evaluator alone never shows.
// pow, computed as exp(b log|a|), also gets a relative error of |log of its value| units: the
// rounding of b log|a| (pow(2, 728) in fp64 is some 24 units off, as the method allows).
// Four emulations give candidate values: two random, one with every error at +4 units, and one
// with +4 units on even elements and -4 on odd ones. The last is there for reductions and
// softmax of large values: there each element's own error counts (|x| u of x - lse), and the
// coherent one cancels it while two random draws can both miss it (a fuzz case of
// softmax(log1p(1e10 + u)^2) in fp64, within 1 unit of x but 1.3x the tolerance without it).
// In it pow's own error takes the sign opposite to its element's: for y = a^b < 1 the error
// pow inherits from b (log y units of b's) and its own cancel when both have one sign, so the
// coherent emulation always missed it (log(p) * pow(p, u) in fp64, 2x the tolerance), and
// between the coherent and the alternating one each sign relation is now met once.
//
// The verdict for one element, want = the exact long double value:
//   - every emulation falls in want's class (finite, +inf, -inf, NaN): the element is
//     well-conditioned and checked strictly: the same class, and if finite
//         |got - want| <= 4 * spread + 8 u |want| + 2 * (smallest normal of the compute type)
//     where spread is the largest distance of an emulation from want and u the unit roundoff
//     (2^-24, 2^-53). The absolute term admits flushing subnormal results to zero.
//   - the emulations disagree on the class (a result that overflows only in fp32, a sign() of
//     a value within rounding of 0, ...): the element is ill-conditioned in this precision; the
//     kernel may give any of the classes seen (want's or an emulation's), nothing more is asked.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "byte_reader.hpp"
#include "lossjit/eval.hpp"

namespace fuzz {

using namespace lossjit;

struct Precision {
    bool f32 = true;
    long double unit() const { return f32 ? 0x1p-24L : 0x1p-53L; }
    long double min_normal() const {
        return f32 ? std::numeric_limits<float>::min() : std::numeric_limits<double>::min();
    }
    long double round(long double x) const {
        return f32 ? static_cast<long double>(static_cast<float>(x)) : static_cast<long double>(static_cast<double>(x));
    }
};

inline constexpr int emulations = 4;
enum class Noise { random, coherent, alternating };  // see above
inline constexpr long double noise_ulps = 4, spread_factor = 4, rel_floor_ulps = 8;

enum class Cls { finite, pos_inf, neg_inf, nan };
inline Cls classify(long double x) {
    if (std::isnan(x)) return Cls::nan;
    if (std::isinf(x)) return x > 0 ? Cls::pos_inf : Cls::neg_inf;
    return Cls::finite;
}

// One op applied to given argument values, by the reference evaluator on a one-op graph.
inline Value apply_op(Op op, const Value& a, const Value* b, std::size_t K) {
    Graph m;
    RowValues r;
    auto bind = [&](const char* name, const Value& v) {
        if (v.is_vector) r.set(name, v.v);
        else r.set(name, v.s);
        return m.input(name, v.is_vector ? InputKind::logits : InputKind::scalar);
    };
    const int ia = bind("a", a);
    const int ib = b ? bind("b", *b) : -1;
    return evaluate(m, m.apply(op, ia, ib), r, K);
}

// step(x) and sign(x) where x is within 16 units of rounding of 0 (relative to the operands of
// the sum or difference that made it, whose cancellation may give 0 or not): a tie the kernel
// may see or not, so the emulations take either side (the coherent one: x = 0).
inline void break_ties(const Graph& g, const std::vector<Value>& v, const Node& n, Value& x, Precision pr, Rng& rng, bool coherent) {
    const Node& arg = g[n.a];
    const Value& a = v[static_cast<std::size_t>(n.a)];
    const bool sum = arg.op == Op::add || arg.op == Op::sub;
    auto tie = [&](long double y, std::size_t j) {
        const long double scale = sum ? std::max(std::fabs(v[static_cast<std::size_t>(arg.a)][j]), std::fabs(v[static_cast<std::size_t>(arg.b)][j]))
                                      : std::fabs(y);
        if (!(std::fabs(a[j]) <= 16 * pr.unit() * scale)) return y;
        if (coherent) return n.op == Op::step ? 1.0L : 0.0L;
        return n.op == Op::step ? static_cast<long double>(rng.below(2)) : static_cast<long double>(rng.below(3)) - 1;
    };
    if (x.is_vector)
        for (std::size_t j = 0; j < x.v.size(); ++j) x.v[j] = tie(x.v[j], j);
    else
        x.s = tie(x.s, 0);
}

// Every node's value for one row with the errors described above, drawn as `noise` says.
inline std::vector<Value> emulate(const Graph& g, const std::vector<Value>& exact, std::size_t K, Precision pr, Rng& rng,
                                  Noise noise) {
    const long double e = noise_ulps * pr.unit();
    const long double row_ulps = 2 + std::sqrt(static_cast<long double>(K));
    const bool coherent = noise == Noise::coherent;
    auto err = [&](std::size_t j) {
        if (noise == Noise::alternating) return j % 2 == 0 ? e : -e;
        return coherent ? e : e * static_cast<long double>(rng.symmetric());
    };
    std::vector<Value> v(static_cast<std::size_t>(g.size()));
    for (int i = 0; i < g.size(); ++i) {
        const Node& n = g[i];
        Value& x = v[static_cast<std::size_t>(i)];
        if (info(n.op).cls == OpClass::leaf) {
            x = exact[static_cast<std::size_t>(i)];
            // labels, params and K are exact; numbers are rounded to the compute type
            if (n.op == Op::row_length || (n.op == Op::input && (n.kind == InputKind::label || n.kind == InputKind::param))) continue;
            if (n.op == Op::constant) {
                x.s = pr.round(x.s);
                continue;
            }
        } else {
            x = apply_op(n.op, v[static_cast<std::size_t>(n.a)], n.b >= 0 ? &v[static_cast<std::size_t>(n.b)] : nullptr, K);
        }
        // the absolute error a row reduction adds
        long double abs_err = 0, rel_err = 0;
        if (n.op == Op::sum || n.op == Op::mean || n.op == Op::dot) {
            const Value& a = v[static_cast<std::size_t>(n.a)];
            long double mag = 0;
            for (std::size_t j = 0; j < K; ++j)
                mag += std::fabs(n.op == Op::dot ? ref::mul(a[j], v[static_cast<std::size_t>(n.b)][j]) : a[j]);
            abs_err = row_ulps * (n.op == Op::mean ? mag / static_cast<long double>(K) : mag);
        } else if (n.op == Op::logsumexp || n.op == Op::log_softmax) {
            abs_err = row_ulps;
        } else if (n.op == Op::softmax) {
            rel_err = row_ulps;
        }
        if (n.op == Op::step || n.op == Op::sign) break_ties(g, v, n, x, pr, rng, coherent);
        const bool pow_node = n.op == Op::pow;
        // exact in any precision: selections and sign changes; noise there would break ties
        // (amax of equal values) that the kernel keeps
        if (n.op == Op::neg || n.op == Op::abs || n.op == Op::sign || n.op == Op::step || n.op == Op::min || n.op == Op::max ||
            n.op == Op::amax || n.op == Op::at || n.op == Op::onehot)
            continue;
        if (!std::isfinite(abs_err)) abs_err = 0;  // the value itself is then inf or NaN
        auto perturb = [&](long double y, std::size_t j) {
            // pow is exp(b log|a|): the rounding of b log|a| is a relative error of |log y| units
            const long double rel = pow_node && y != 0 && std::isfinite(y) ? rel_err + std::fabs(std::log(std::fabs(y))) : rel_err;
            const long double own = err(j), absolute = err(j);  // drawn in this order
            const long double relative = pow_node && noise == Noise::alternating ? -own : own;
            return pr.round(y * (1 + relative * (1 + rel)) + abs_err * absolute);
        };
        // whole numbers added, subtracted or multiplied are exact while they fit the significand
        // (K - 1 must stay an integer: pow(-2, K - 1) depends on it)
        const bool integer_op = n.op == Op::add || n.op == Op::sub || n.op == Op::mul;
        auto whole = [](long double y) { return std::isfinite(y) && std::floor(y) == y; };
        auto exact_int = [&](long double y, std::size_t j) {
            return integer_op && whole(y) && std::fabs(y) <= 1 / pr.unit() && whole(v[static_cast<std::size_t>(n.a)][j]) &&
                   whole(v[static_cast<std::size_t>(n.b)][j]);
        };
        if (x.is_vector) {
            for (std::size_t j = 0; j < x.v.size(); ++j)
                if (!exact_int(x.v[j], j)) x.v[j] = perturb(x.v[j], j);
        } else if (!exact_int(x.s, 0)) {
            x.s = perturb(x.s, 0);
        }
    }
    return v;
}

struct Verdict {
    bool ok = true;
    bool strict = true;  // false: ill-conditioned, only the class was checked
    long double tolerance = 0;
};

inline Verdict judge(long double got, long double want, const std::array<long double, emulations>& emu, Precision pr) {
    Verdict v;
    long double spread = 0;
    for (long double x : emu) {
        if (classify(x) != classify(want)) v.strict = false;
        else if (std::isfinite(x)) spread = std::max(spread, std::fabs(x - want));
    }
    if (!v.strict) {
        v.ok = classify(got) == classify(want);
        for (long double x : emu) v.ok = v.ok || classify(got) == classify(x);
        return v;
    }
    if (classify(want) != Cls::finite) {
        v.ok = classify(got) == classify(want);
        return v;
    }
    v.tolerance = spread_factor * spread + rel_floor_ulps * pr.unit() * std::fabs(want) + 2 * pr.min_normal();
    v.ok = std::isfinite(got) && std::fabs(got - want) <= v.tolerance;
    return v;
}

// Whether the kernel skips the row as fully masked: a logsumexp it computes (its own, or the
// one behind a softmax or log_softmax) is -inf. 0: no, 1: yes, -1: cannot tell (a logsumexp of
// a scalar, which the kernel may fold away).
inline int masked(const Graph& g, const std::vector<Value>& val, std::size_t K) {
    int verdict = 0;
    for (int i = 0; i < g.size(); ++i) {
        const Node& n = g[i];
        if (n.op != Op::logsumexp && n.op != Op::softmax && n.op != Op::log_softmax) continue;
        const Value& a = val[static_cast<std::size_t>(n.a)];
        const long double lse = detail::logsumexp(a.is_vector ? a.v : std::vector<long double>(K, a.s));
        if (std::isinf(lse) && lse < 0) {
            if (!a.is_vector) return -1;
            verdict = 1;
        }
    }
    return verdict;
}

}  // namespace fuzz
