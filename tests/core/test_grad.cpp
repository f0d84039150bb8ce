// Every gradient against central finite differences of the *unsimplified* loss, evaluated in
// long double by the reference evaluator, on random rows with K in {1, 2, 7, 64}, with logits
// of +-80, and with -inf logits where the target probability is 0.
#include <catch2/catch.hpp>

#include "common.hpp"

using namespace testing;

namespace {

enum class Rows { random, large, masked };

// Finite differences of `loss` (unsimplified) against grad(loss, u) on one row.
template <class E>
void check_gradient(const E& loss, std::size_t k, Rows kind, std::mt19937_64& rng) {
    lossjit::RowValues row = random_row(rng, k);
    Row uu = *row.vector("u");
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
    row.set("u", uu);

    const lossjit::Term unsimplified = lossjit::as_term(loss);
    const lossjit::Term simplified = lossjit::simplify(loss);
    const lossjit::Term g = lossjit::grad(loss, u);
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
            long double lp = value_of(unsimplified, lossjit::RowValues(row).set("u", up));
            long double lm = value_of(unsimplified, lossjit::RowValues(row).set("u", down));
            if (!std::isfinite(static_cast<double>(lp - lm))) {
                // The unsimplified loss overflows even in long double here (log(1 - sigmoid(80))
                // is log(0)): that instability is what the simplifier removes, so the
                // simplified loss stands in for it at this point.
                UNSCOPED_INFO("class " << j << ": unsimplified loss not finite, finite differences of the simplified loss");
                lp = value_of(simplified, lossjit::RowValues(row).set("u", up));
                lm = value_of(simplified, lossjit::RowValues(row).set("u", down));
            }
            fd = (lp - lm) / (2 * h);
        }
        INFO("class " << j << ": logit " << static_cast<double>(uu[j]) << ", finite difference "
                      << static_cast<double>(fd) << ", gradient " << static_cast<double>(analytic[j]));
        CHECK(std::isfinite(static_cast<double>(analytic[j])));
        CHECK(close(analytic[j], fd, 1e-6L, 1e-7L));
    }
}

template <class E>
void check_all(const E& loss, bool maskable, bool large = true) {
    std::mt19937_64 rng(42);
    for (std::size_t k : {1u, 2u, 7u, 64u}) {
        for (int rep = 0; rep < 3; ++rep) check_gradient(loss, k, Rows::random, rng);
        if (large) check_gradient(loss, k, Rows::large, rng);
        if (maskable) check_gradient(loss, k, Rows::masked, rng);
    }
}

}  // namespace

TEST_CASE("cross-entropy with probability targets") { check_all(-sum(p * log(softmax(u))), true); }
TEST_CASE("cross-entropy with a label") { check_all(-log(at(softmax(u), y)), true); }
TEST_CASE("cross-entropy with softmax written out") { check_all(-sum(p * log(exp(u) / sum(exp(u)))), true); }
TEST_CASE("binary cross-entropy") { check_all(-sum(p * log(sigmoid(u)) + (1 - p) * log(1 - sigmoid(u))), true); }
TEST_CASE("KL divergence") { check_all(sum(p * (log(p) - log_softmax(u))), false); }
TEST_CASE("label smoothing") { check_all(-(1 - eps) * at(log_softmax(u), y) - eps / K * sum(log_softmax(u)), false); }
TEST_CASE("z-loss") { check_all(-at(log_softmax(u), y) + 0.01 * pow(logsumexp(u), 2), true); }
TEST_CASE("temperature") { check_all(-sum(p * log_softmax(u / s)), true); }
TEST_CASE("soft-capping") { check_all(-at(log_softmax(30 * tanh(u / 30)), y), false); }
TEST_CASE("focal loss, gamma 2") {
    check_all(-sum(onehot(y) * pow(1 - softmax(u), 2) * log_softmax(u)), false);
}
TEST_CASE("poly-1") { check_all(-at(log_softmax(u), y) + eps * (1 - at(softmax(u), y)), true); }
TEST_CASE("class-weighted cross-entropy") { check_all(-at(w, y) * at(log_softmax(u), y), true); }
TEST_CASE("squared error and friends") {
    check_all(mean((u - p) * (u - p)), false);
    check_all(sum(softplus(u) * w) + sqrt(1 + sum(u * u)), false);
    check_all(sum(exp(u / 10) - 1) + sum(log1p(exp(u / 10))), false);
    // not on +-80 rows: their ties make amax's one-sided derivatives differ
    check_all(amax(u) + sum(min(u, 1) + max(u, -1)), false, false);
}
