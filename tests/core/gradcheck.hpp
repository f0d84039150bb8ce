// Gradient checking against central finite differences of the *unsimplified* loss, in long
// double, on random rows, rows of +-80 logits, and rows with -inf logits where the target is 0.
#pragma once

#include <catch2/catch.hpp>

#include "common.hpp"

namespace testing {


enum class Rows { random, large, masked };

// Finite differences of `loss` (unsimplified) against grad(loss, u) on one row.
template <class E, class X = decltype(u)>
void check_gradient(const E& loss, std::size_t k, Rows kind, std::mt19937_64& rng, X x = u) {
    const std::string name(X::name());
    lossjit::RowValues row = random_row(rng, k);
    row.set("s", random_logits(rng, k)).set("t", random_logits(rng, k)).set("targets", random_simplex(rng, k))
        .set("pos_weight", random_simplex(rng, k)).set("temperature", 2.0L).set("softcap", 5.0L)
        .set("label_smoothing", 0.1L).set("z_loss", 1e-3L).set("gamma", 2.0L).set("poly_epsilon", 1.0L);
    Row uu = *row.vector(name);
    if (kind == Rows::large)
        for (auto& x : uu) x = x > 0 ? 80 : -80;
    if (kind == Rows::masked && k > 1) {
        // mask some classes with -inf and give them zero target probability
        Row pp = *row.vector("p");
        const std::size_t label = static_cast<std::size_t>(*row.scalar("y"));
        long double kept = 0;
        for (std::size_t j = 0; j < k; ++j) {
            if (j != label && j % 2 == 1) {
                uu[j] = -std::numeric_limits<long double>::infinity();
                pp[j] = 0;
            }
            kept += pp[j];
        }
        for (auto& x : pp) x /= kept;
        row.set("p", pp);
    }
    row.set(name, uu);

    const lossjit::Term unsimplified = lossjit::as_term(loss);
    const lossjit::Term simplified = lossjit::simplify(loss);
    const lossjit::Term g = lossjit::grad(loss, x);
    const lossjit::Value analytic = lossjit::evaluate(g.graph, g.root, row, k);
    INFO("loss: " << lossjit::to_string(loss));
    INFO("gradient: " << lossjit::to_string(g));
    INFO("K = " << k << ", rows: " << (kind == Rows::random ? "random" : kind == Rows::large ? "+-80" : "-inf masked"));
    for (std::size_t j = 0; j < k; ++j) {
        long double fd = 0;
        if (!std::isinf(uu[j])) {
            const long double h = 1e-6L * std::max<long double>(1, std::fabs(uu[j]));
            Row up = uu, down = uu;
            up[j] += h;
            down[j] -= h;
            long double lp = value_of(unsimplified, lossjit::RowValues(row).set(name, up));
            long double lm = value_of(unsimplified, lossjit::RowValues(row).set(name, down));
            if (!std::isfinite(static_cast<double>(lp - lm))) {
                // The unsimplified loss overflows even in long double here (log(1 - sigmoid(80))
                // is log(0)): that instability is what the simplifier removes, so the
                // simplified loss stands in for it at this point.
                UNSCOPED_INFO("class " << j << ": unsimplified loss not finite, finite differences of the simplified loss");
                lp = value_of(simplified, lossjit::RowValues(row).set(name, up));
                lm = value_of(simplified, lossjit::RowValues(row).set(name, down));
            }
            fd = (lp - lm) / (2 * h);
        }
        INFO("class " << j << ": logit " << static_cast<double>(uu[j]) << ", finite difference "
                      << static_cast<double>(fd) << ", gradient " << static_cast<double>(analytic[j]));
        CHECK(std::isfinite(static_cast<double>(analytic[j])));
        CHECK(close(analytic[j], fd, 1e-6L, 1e-7L));
    }
}

template <class E, class X = decltype(u)>
void check_all(const E& loss, bool maskable, bool large = true, X x = u) {
    std::mt19937_64 rng(42);
    for (std::size_t k : {1u, 2u, 7u, 64u}) {
        for (int rep = 0; rep < 3; ++rep) check_gradient(loss, k, Rows::random, rng, x);
        if (large) check_gradient(loss, k, Rows::large, rng, x);
        if (maskable) check_gradient(loss, k, Rows::masked, rng, x);
    }
}


}  // namespace testing
