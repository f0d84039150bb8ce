// Shared by the core tests: the usual inputs, random rows, and evaluation of DSL expressions.
#pragma once

#include <lossjit/lossjit.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace testing {

using namespace lossjit::dsl;

inline constexpr auto u = logits<"u">;
inline constexpr auto v = logits<"v">;
inline constexpr auto p = probs<"p">;
inline constexpr auto q = probs<"q">;
inline constexpr auto y = label<"y">;
inline constexpr auto w = weights<"w">;
inline constexpr auto s = scalar<"s">;
inline constexpr auto eps = param<"eps">;

using Row = std::vector<long double>;

inline Row random_logits(std::mt19937_64& rng, std::size_t k, long double scale = 3) {
    std::normal_distribution<double> n(0, 1);
    Row r(k);
    for (auto& x : r) x = scale * n(rng);
    return r;
}

inline Row random_simplex(std::mt19937_64& rng, std::size_t k) {
    std::exponential_distribution<double> e(1);
    Row r(k);
    long double t = 0;
    for (auto& x : r) t += (x = e(rng));
    for (auto& x : r) x /= t;
    return r;
}

// A row of values for every input the tests use; `k` classes.
inline lossjit::RowValues random_row(std::mt19937_64& rng, std::size_t k) {
    std::uniform_int_distribution<std::size_t> label(0, k - 1);
    std::uniform_real_distribution<double> unit(0.5, 2.0);
    lossjit::RowValues row;
    Row wts(k);
    for (auto& x : wts) x = unit(rng);
    row.set("u", random_logits(rng, k)).set("v", random_logits(rng, k)).set("p", random_simplex(rng, k))
        .set("q", random_simplex(rng, k)).set("w", wts).set("y", static_cast<long double>(label(rng)))
        .set("s", static_cast<long double>(unit(rng))).set("eps", 0.1L);
    return row;
}

inline long double value_of(const lossjit::Term& t, const lossjit::RowValues& row) {
    return lossjit::evaluate(t.graph, t.root, row).s;
}

inline bool close(long double a, long double b, long double rel = 1e-9L, long double abs = 1e-12L) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    if (std::isinf(a) || std::isinf(b)) return a == b;
    return std::fabs(a - b) <= abs + rel * std::max(std::fabs(a), std::fabs(b));
}

}  // namespace testing
