// The fuzzer's judge: what a kernel's output element may be, given the long double evaluator
// (eval.hpp) and an estimate of how well-conditioned the element is in the kernel's precision.
//
// The estimate: the graph is evaluated again, node by node, by the same evaluator, but every
// node's result (the real inputs included unless whole; not the exact ops: neg, abs, sign,
// step, min, max, amax, at, onehot) is perturbed by a random relative error of up to 4 units in
// the last place of the compute type (fp32 or fp64; bf16 kernels compute in fp32) and then
// rounded to that type; a result in the type's subnormal range also gets up to 4 of its
// absolute units (see perturb).
// Row reductions (sum, mean, dot, logsumexp, softmax, log_softmax) also get an absolute error of
// (2 + sqrt(K)) such units times the sum of their terms' magnitudes: what K additions can lose.
// step and sign of a value within rounding of 0 take either side (break_ties below; outputs
// that depend on more than 4 such near ties of one vector, or on a softmax whose arguments the
// noise moves by more than 1, are checked by class only, and on a pow of a negative base by
// several near-whole exponents not at all: unsampled below); sums, differences and products of
// whole numbers that fit the
// significand are exact (K - 1), and a sum that cancels exactly gets its operands' units.
// Rounding to the compute type brings its range too: overflow to inf and underflow to 0 happen
// in these emulations as they do in the kernel, which the long double evaluator alone never shows.
// pow, computed as exp(b log|a|), also gets a relative error of |log of its value| units: the
// rounding of b log|a| (pow(2, 728) in fp64 is some 24 units off, as the method allows).
// Four emulations give candidate values: two random, one with every error at +4 units, and one
// with +4 units on even elements and -4 on odd ones. The last is there for reductions and
// softmax of large values: there each element's own error counts (|x| u of x - lse), and the
// coherent one cancels it while two random draws can both miss it (a fuzz case of
// softmax(log1p(1e10 + u)^2) in fp64, within 1 unit of x but 1.3x the tolerance without it).
// pow's own error is drawn at full size, away from where its arguments' noise moved it: for
// y = a^b the error pow inherits from b (|log y| units of b's) and its own cancel when they
// have opposite effects, as they did in the coherent emulation (log(p) * pow(p, u) in fp64,
// 2x the tolerance; see perturb below).
//
// The verdict for one element, want = the exact long double value:
//   - every emulation falls in want's class (finite, +inf, -inf, NaN): the element is
//     well-conditioned and checked strictly: the same class, and if finite
//         |got - want| <= 4 * spread + 8 u |want| + 2 * (smallest normal of the compute type)
//     where spread is the largest distance of an emulation from want and u the unit roundoff
//     (2^-24, 2^-53). The absolute term admits flushing subnormal results to zero. An element
//     stored as bf16 is that value rounded once more (twice where a mean was rescaled after
//     the store): each rounding adds 2^-8 (|want| + the tolerance so far) + 2^-134 (Storage).
//   - the emulations disagree on the class (a result that overflows only in fp32, a sign() of
//     a value within rounding of 0, ...): the element is ill-conditioned in this precision; the
//     kernel may give any of the classes seen (want's or an emulation's), nothing more is asked.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "byte_reader.hpp"
#include "lossjit/eval.hpp"
#include "lossjit/kernel.hpp"

namespace fuzz {

using namespace lossjit;

struct Precision {
    bool f32 = true;
    long double unit() const { return f32 ? 0x1p-24L : 0x1p-53L; }
    long double min_normal() const {
        return f32 ? std::numeric_limits<float>::min() : std::numeric_limits<double>::min();
    }
    long double subnormal_unit() const { return 2 * min_normal() * unit(); }  // 2^-149, 2^-1074
    long double round(long double x) const {
        return f32 ? static_cast<long double>(static_cast<float>(x)) : static_cast<long double>(static_cast<double>(x));
    }
};

inline constexpr int emulations = 4;
enum class Noise { random, coherent, alternating };  // see above
inline constexpr long double noise_ulps = 4, spread_factor = 4, rel_floor_ulps = 8, subnormal_units = 4;

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
// may see or not, so the emulations take either side: the coherent one and one random one take
// every tie (x = 0), one random one none, the alternating one each at random. Both sides with
// random errors: the coherent errors of two chains equal in exact arithmetic can round alike and
// cancel exactly (a fuzz case: t1 - t2 with t1 = t2 = step(...) / 2u by two paths, where the
// kernel's step was 1 and gave a difference of an ulp, while three random draws all had step 0).
enum class Ties { random, taken, skipped };

// Whether element j of step(x) or sign(x) (node n, values v) is such a tie.
inline bool is_tie(const Graph& g, const std::vector<Value>& v, const Node& n, std::size_t j, long double y, Precision pr) {
    const Node& arg = g[n.a];
    const bool sum = arg.op == Op::add || arg.op == Op::sub;
    const long double scale = sum ? std::max(std::fabs(v[static_cast<std::size_t>(arg.a)][j]), std::fabs(v[static_cast<std::size_t>(arg.b)][j]))
                                  : std::fabs(y);
    const long double x = v[static_cast<std::size_t>(n.a)][j];
    return std::isfinite(x) && std::fabs(x) <= 16 * pr.unit() * scale;  // inf - inf's neighbours are no ties
}

inline void break_ties(const Graph& g, const std::vector<Value>& v, const Node& n, Value& x, Precision pr, Rng& rng, Ties ties) {
    const bool step = n.op == Op::step;
    auto tie = [&](long double y, std::size_t j) {
        if (!is_tie(g, v, n, j, y, pr)) return y;
        switch (ties) {
        case Ties::taken: return step ? 1.0L : 0.0L;
        case Ties::skipped: return step ? 0.0L : rng.below(2) ? 1.0L : -1.0L;
        default: return step ? static_cast<long double>(rng.below(2)) : static_cast<long double>(rng.below(3)) - 1;
        }
    };
    if (x.is_vector)
        for (std::size_t j = 0; j < x.v.size(); ++j) x.v[j] = tie(x.v[j], j);
    else
        x.s = tie(x.s, 0);
}

// pow of a negative base is defined at whole exponents only, its sign by their parity. An
// exponent within 16 units of a whole number may be whole in the kernel (exp(p) of p < 2^-24
// is 1 in fp32: pow(-inf, exp(p)) -inf there, +inf for the exact exponent), and so may one
// within the subnormal noise of 0 (pow(2, -2664.3) is 0 in fp64: pow(-2664.3, 0) = 1 there,
// NaN for the exact exponent): a tie like step's, made whole where ties are taken.
inline bool near_whole(long double y, Precision pr) {
    const long double w = std::nearbyint(y);
    const bool near_zero = w == 0 && std::fabs(y) <= subnormal_units * pr.subnormal_unit();
    return std::isfinite(y) && y != w && (std::fabs(y - w) <= 16 * pr.unit() * std::fabs(y) || near_zero);
}

inline Value whole_exponent_ties(const Value& base, Value b, Precision pr, Rng& rng, Ties ties) {
    auto snap = [&](long double& y, bool negative_base) {
        if (!negative_base || !near_whole(y, pr)) return;
        if (ties == Ties::taken || (ties == Ties::random && rng.below(2) == 0)) y = std::nearbyint(y);
    };
    bool any_negative = false;
    for (std::size_t j = 0; j < (base.is_vector ? base.v.size() : 1); ++j) any_negative = any_negative || base[j] < 0;
    if (!b.is_vector) snap(b.s, any_negative);
    else
        for (std::size_t j = 0; j < b.v.size(); ++j) snap(b.v[j], base[j] < 0);
    return b;
}

// Which nodes of one row an output element may depend on beyond what four emulations can
// bound (exact values v, the emulations emu): their outputs are checked by class only.
//   - a vector step or sign of a sum or difference with more near ties (x within rounding of
//     0, not 0) than the tolerance covers: step(x - amax(x)) with T near-maxima, say (equal
//     inputs are equal in the kernel too). Which of them the kernel sees as ties decides how a
//     gradient is shared: its one maximum may take all of it, where the emulations taking every
//     tie give each a 1/T share and the alternating one about 2/T. The tolerance, 4 times the
//     spread, covers the whole from a 1/4 share; beyond 4 ties the emulations cannot bound the
//     2^T choices (a fuzz case: amax(log1p(softmax(softmax(u)))) of K = 4536 logits of 1e-3,
//     near-uniform, the kernel's one maximum 1.1 tolerances from the exact gradient).
//   - a softmax, log_softmax or logsumexp whose argument the emulations move by more than 1:
//     then which elements share the maximum after rounding is a draw, and an element's
//     probability anything from 0 to 1 (softmax(abs(1e10 + u)) in fp32, whose arguments are
//     1024 apart: the kernel rounded one of them onto the maximum, no emulation did).
// And which ones they cannot even give the class of: a pow of a negative base by more than one
// exponent within rounding of a whole number (whole_exponent_ties): each may flip the sign of an
// infinity or make a NaN, and an amax over them takes whichever the kernel's roundings gave
// (amax(-pow(-inf, exp(p))) of p < 1e-6: +inf where exp(p) rounds to 1, -inf elsewhere).
// Nor a sum, mean or dot whose terms' magnitudes add up beyond the compute type's range: its
// partial sums may overflow in the kernel's order (to either infinity, or NaN from both) where
// the emulations, rounding only the result, see a finite mean (mean(u) of two u of 3e38 in
// fp32: +inf in the kernel, 1e38 here). Nor a division by a value within a few units of 0 in
// the compute type's subnormal range (2^-149 in fp32), which the kernel may round to 0 where
// the emulations do not: the quotient then turns infinite (the fp32 gradient of
// amax(p^4 / p^4), p = log1p(u) of u near -1e-6, has s / p^4 - p^4 s / p^8: +inf in the
// kernel where p^8 is 1e-45, finite or NaN in the emulations); nor of such a value by 0, which
// the kernel may make 0 / 0 (the fp32 gradient exp(u) / (1 + expm1(u)) at u = -109: exp(u)
// is 2.6e-48 here, 0 in fp32, and 1 + expm1(u) 0 in both: +inf here, NaN in the kernel).
// Nor a pow of a negative base within as few units of 0 by an exponent that is not whole: the
// kernel may round the base to -0, whose pow is 0 or +inf, where the exact base's is NaN (the fp64 gradient of
// mean(pow(-log1p(pow(2, u)), 0.001)) at u = -2664: pow(2, u) is 2^-2664, 0 in fp64, and
// pow(-0, -0.999) * 0 is 0 in the kernel, NaN here).
enum class Bound : std::uint8_t { emulated, class_only, none };

// The sum of the magnitudes of the K terms of a sum, mean or dot node n, from values v.
inline long double terms_magnitude(const Node& n, const std::vector<Value>& v, std::size_t K) {
    const Value& a = v[static_cast<std::size_t>(n.a)];
    long double mag = 0;
    for (std::size_t j = 0; j < K; ++j)
        mag += std::fabs(n.op == Op::dot ? ref::mul(a[j], v[static_cast<std::size_t>(n.b)][j]) : a[j]);
    return mag;
}

inline std::vector<Bound> unsampled(const Graph& g, const std::vector<Value>& v, const std::array<std::vector<Value>, emulations>& emu,
                                    Precision pr) {
    std::vector<Bound> dep(static_cast<std::size_t>(g.size()), Bound::emulated);
    // the elements of a binary node (one where both operands are scalars)
    auto elements = [&](const Node& n) {
        const Value &a = v[static_cast<std::size_t>(n.a)], &b = v[static_cast<std::size_t>(n.b)];
        return a.is_vector || b.is_vector ? std::max(a.v.size(), b.v.size()) : std::size_t{1};
    };
    // nonzero and within a few subnormal units of 0 (2^-149 in fp32), which the kernel may round to 0
    auto below_subnormals = [&](long double y) { return y != 0 && std::fabs(y) < 2 * subnormal_units * pr.subnormal_unit(); };
    auto ties_beyond_tolerance = [&](const Node& n, const Value& x) {
        if ((n.op != Op::step && n.op != Op::sign) || !x.is_vector || (g[n.a].op != Op::add && g[n.a].op != Op::sub)) return false;
        std::size_t ties = 0;
        const Value& a = v[static_cast<std::size_t>(n.a)];
        for (std::size_t j = 0; j < x.v.size(); ++j) ties += a[j] != 0 && is_tie(g, v, n, j, x.v[j], pr);
        return ties > static_cast<std::size_t>(spread_factor);
    };
    auto moved_beyond_one = [&](const Node& n) {
        if (n.op != Op::softmax && n.op != Op::log_softmax && n.op != Op::logsumexp) return false;
        const Value& a = v[static_cast<std::size_t>(n.a)];
        for (const auto& e : emu)
            for (std::size_t j = 0; j < (a.is_vector ? a.v.size() : 1); ++j) {
                const long double d = e[static_cast<std::size_t>(n.a)][j] - a[j];
                if (std::isfinite(d) && std::fabs(d) > 1) return true;
            }
        return false;
    };
    auto exponent_ties = [&](const Node& n) {
        if (n.op != Op::pow) return false;
        const Value &a = v[static_cast<std::size_t>(n.a)], &b = v[static_cast<std::size_t>(n.b)];
        std::size_t ties = 0;
        for (std::size_t j = 0; j < elements(n); ++j) ties += a[j] < 0 && near_whole(b[j], pr);
        return ties > 1;
    };
    auto partial_sums_overflow = [&](const Node& n) {
        if (n.op != Op::sum && n.op != Op::mean && n.op != Op::dot) return false;
        const long double top = pr.f32 ? std::numeric_limits<float>::max() : std::numeric_limits<double>::max();
        const Value& a = v[static_cast<std::size_t>(n.a)];
        return terms_magnitude(n, v, a.is_vector ? a.v.size() : 1) > top;
    };
    auto subnormal_divisor = [&](const Node& n) {
        if (n.op != Op::div) return false;
        const Value &a = v[static_cast<std::size_t>(n.a)], &b = v[static_cast<std::size_t>(n.b)];
        for (std::size_t j = 0; j < elements(n); ++j) {
            if (below_subnormals(b[j]) || (b[j] == 0 && below_subnormals(a[j]))) return true;
            for (const auto& e : emu)
                if (below_subnormals(e[static_cast<std::size_t>(n.b)][j])) return true;
        }
        return false;
    };
    auto subnormal_negative_base = [&](const Node& n) {
        if (n.op != Op::pow) return false;
        auto tiny_negative = [&](long double y) { return y < 0 && below_subnormals(y); };
        const Value &a = v[static_cast<std::size_t>(n.a)], &b = v[static_cast<std::size_t>(n.b)];
        for (std::size_t j = 0; j < elements(n); ++j) {
            if (std::isfinite(b[j]) && std::floor(b[j]) == b[j]) continue;
            if (tiny_negative(a[j])) return true;
            for (const auto& e : emu)
                if (tiny_negative(e[static_cast<std::size_t>(n.a)][j])) return true;
        }
        return false;
    };
    for (int i = 0; i < g.size(); ++i) {
        const Node& n = g[i];
        auto d = [&](int k) { return k >= 0 ? dep[static_cast<std::size_t>(k)] : Bound::emulated; };
        Bound& out = dep[static_cast<std::size_t>(i)];
        out = std::max(d(n.a), d(n.b));
        if (exponent_ties(n) || partial_sums_overflow(n) || subnormal_divisor(n) || subnormal_negative_base(n)) out = Bound::none;
        else if (out == Bound::emulated && (ties_beyond_tolerance(n, v[static_cast<std::size_t>(i)]) || moved_beyond_one(n))) out = Bound::class_only;
    }
    return dep;
}

// Every node's value for one row with the errors described above, drawn as `noise` says.
inline std::vector<Value> emulate(const Graph& g, const std::vector<Value>& exact, std::size_t K, Precision pr, Rng& rng,
                                  Noise noise, Ties ties) {
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
            const Value& a = v[static_cast<std::size_t>(n.a)];
            if (n.op == Op::pow) {
                const Value b = whole_exponent_ties(a, v[static_cast<std::size_t>(n.b)], pr, rng, ties);
                x = apply_op(n.op, a, &b, K);
            } else {
                x = apply_op(n.op, a, n.b >= 0 ? &v[static_cast<std::size_t>(n.b)] : nullptr, K);
            }
        }
        // the absolute error a row reduction adds
        long double abs_err = 0, rel_err = 0;
        if (n.op == Op::sum || n.op == Op::mean || n.op == Op::dot) {
            const long double mag = terms_magnitude(n, v, K);
            abs_err = row_ulps * (n.op == Op::mean ? mag / static_cast<long double>(K) : mag);
        } else if (n.op == Op::logsumexp || n.op == Op::log_softmax) {
            abs_err = row_ulps;
        } else if (n.op == Op::softmax) {
            rel_err = row_ulps;
        }
        if (n.op == Op::step || n.op == Op::sign) break_ties(g, v, n, x, pr, rng, ties);
        const bool pow_node = n.op == Op::pow;
        // exact in any precision: selections and sign changes; noise there would break ties
        // (amax of equal values) that the kernel keeps
        if (n.op == Op::neg || n.op == Op::abs || n.op == Op::sign || n.op == Op::step || n.op == Op::min || n.op == Op::max ||
            n.op == Op::amax || n.op == Op::at || n.op == Op::onehot)
            continue;
        if (!std::isfinite(abs_err)) abs_err = 0;  // the value itself is then inf or NaN
        const bool sum_node = n.op == Op::add || n.op == Op::sub;
        // Noise keeps a value inside its function's range, as the kernel's functions do:
        // expm1(-76) is -1 + 1e-33, which noise took below -1, and log1p of it to NaN where the
        // kernel has log1p(-1) = -inf (amax(log1p(expm1(u))) in fp32).
        auto in_range = [&](long double y) {
            if (n.op == Op::expm1) return std::max(y, -1.0L);
            if (n.op == Op::tanh) return std::clamp(y, -1.0L, 1.0L);
            if (n.op == Op::sigmoid) return std::clamp(y, 0.0L, 1.0L);
            return y;
        };
        auto perturb = [&](long double y, std::size_t j) {
            // A sum or difference of nonzero operands that cancels exactly here: their emulated
            // values rounded alike, by chance (two paths to one exact value, each off by a few
            // units: t1 - t2 of step(..) / 2u and u step(..) / (2 u^2) gave 0 in all four
            // emulations of one element of a fuzz case, an ulp of t1 in the kernel). What the
            // kernel's operands may differ by is their error: units of the operands, not of 0.
            if (sum_node && y == 0 && v[static_cast<std::size_t>(n.a)][j] != 0)
                return pr.round(err(j) * std::fabs(v[static_cast<std::size_t>(n.a)][j]));
            // pow is exp(b log|a|): the rounding of b log|a| is a relative error of |log y| units,
            // and log|a|'s own error of up to 4 units grows by as much. The kernel reaches that
            // size with exact inputs, while here the noise of the arguments moves y by as much
            // again (4 units of b are 4 |log y| units of y) and can cancel it: pow(2, u) of
            // 7.8e-81 in fp64 was 158 units off in the kernel, every emulation within 32;
            // pow(p, u) of 5.7e-29, 95 and 19. So pow's own error is drawn at full size, away from
            // the exact value in the direction its arguments' noise already moved it.
            const long double rel = pow_node && y != 0 && std::isfinite(y) ? rel_err + std::fabs(std::log(std::fabs(y))) : rel_err;
            const long double moved = pow_node ? y - exact[static_cast<std::size_t>(i)][j] : 0;
            const long double own = !pow_node ? err(j) : moved != 0 && std::isfinite(moved) ? std::copysign(e, moved) : std::copysign(e, err(j));
            const long double absolute = err(j);  // drawn after `own`: one order with every compiler
            // A result in the compute type's subnormal range has absolute units (2^-149 in fp32),
            // where the kernel's may be off by more than one (an exp scaled into that range rounds
            // twice in the scalar and SSE paths) and noise of relative units rounds away: it gets
            // up to subnormal_units of those (pow(log1p(u), 8) of u = -8e-6 is 1.9e-41 in fp32,
            // and s / p^4 - p^4 s / p^8 magnifies its last bits 10^20 times: 1.7 in the kernel,
            // the exact value 0, the emulations -0.27 to 0 without this noise).
            const long double subnormal = y != 0 && std::fabs(y) < pr.min_normal() ? err(j) / e * subnormal_units * pr.subnormal_unit() : 0;
            return in_range(pr.round(y * (1 + own * (1 + rel)) + abs_err * absolute + subnormal));
        };
        // whole numbers added, subtracted or multiplied are exact while they (operands and
        // result) fit the significand (K - 1 must stay an integer: pow(-2, K - 1) depends on it;
        // every float from 2^24 up is whole, but carries its rounding); so are whole inputs, which
        // the kernel reads as they are (bf16 stores every value from 256 up as a whole number,
        // and pow(-0.25, u) of u = -72 is 4^72, of its noisy neighbours NaN)
        const bool integer_op = n.op == Op::add || n.op == Op::sub || n.op == Op::mul;
        auto small_whole = [&](long double y) { return std::isfinite(y) && std::floor(y) == y && std::fabs(y) <= 1 / pr.unit(); };
        auto exact_int = [&](long double y, std::size_t j) {
            if (n.op == Op::input) return std::isfinite(y) && std::floor(y) == y;
            return integer_op && small_whole(y) && small_whole(v[static_cast<std::size_t>(n.a)][j]) &&
                   small_whole(v[static_cast<std::size_t>(n.b)][j]);
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

// How an output element is stored: in the compute type (`roundings` 0), or rounded to bf16 from
// the compute type's fp32 value, once at the store (1), or twice when a mean's rows were
// rescaled after the store (2: Kernel::run's pass over the stored gradients when fully masked
// rows change the denominator reads the bf16 values back, scales them and rounds again).
struct Storage {
    int roundings = 0;
    long double round(long double x) const {
        return roundings == 0 ? x : static_cast<long double>(bf16::from_float(static_cast<float>(x)).to_float());
    }
};

// One rounding of an fp32 value v to bf16 (8 significant bits, round to nearest even) moves it
// by at most half a bf16 ulp: for |v| in [2^e, 2^(e+1)) that is 2^(e-8) <= 2^-8 |v|; below
// bf16's smallest normal (fp32's, 2^-126) the spacing is that of its subnormals, 2^-133, so at
// most 2^-134 there. With |v - want| <= T (the compute type's tolerance), one rounding adds
//     2^-8 (|want| + T) + 2^-134,
// and a value with |v| >= 0x1.ffp127 (halfway between bf16's largest, 0x1.fep127, and 2^128)
// rounds to +-inf.
inline constexpr long double bf16_unit = 0x1p-8L, bf16_half_subnormal = 0x1p-134L, bf16_overflow = 0x1.ffp127L;

inline Verdict judge(long double got, long double want, const std::array<long double, emulations>& emu, Precision pr,
                     Storage st = {}, Bound bound = Bound::emulated) {
    Verdict v;
    v.strict = bound == Bound::emulated;
    if (bound == Bound::none) return v;  // ok, not strict
    long double spread = 0;
    for (long double x : emu) {  // classes as stored (bf16 overflows sooner), the spread in the compute type
        if (classify(st.round(x)) != classify(want)) v.strict = false;
        else if (std::isfinite(x)) spread = std::max(spread, std::fabs(x - want));
    }
    if (!v.strict) {
        v.ok = classify(got) == classify(want);
        for (long double x : emu) v.ok = v.ok || classify(got) == classify(st.round(x));
        return v;
    }
    if (classify(want) != Cls::finite) {
        v.ok = classify(got) == classify(want);
        return v;
    }
    v.tolerance = spread_factor * spread + rel_floor_ulps * pr.unit() * std::fabs(want) + 2 * pr.min_normal();
    long double reach = std::fabs(want) + v.tolerance;  // the largest |v| the compute type may give
    for (int i = 0; i < st.roundings; ++i) {
        v.tolerance += bf16_unit * reach + bf16_half_subnormal;
        reach = std::fabs(want) + v.tolerance;
    }
    const bool may_overflow = st.roundings > 0 && reach >= bf16_overflow && std::isinf(got) && (got > 0) == (want > 0);
    v.ok = may_overflow || (std::isfinite(got) && std::fabs(got - want) <= v.tolerance);
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
