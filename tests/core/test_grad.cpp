// Every gradient against central finite differences of the *unsimplified* loss, evaluated in
// long double by the reference evaluator, on random rows with K in {1, 2, 7, 64}, with logits
// of +-80, and with -inf logits where the target probability is 0.
#include <catch2/catch.hpp>

#include "gradcheck.hpp"

using namespace testing;


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
