// Golden simplifications: the exact string the simplifier prints for each expression. Each
// failure shows the expression as written, what came out, and the rules that fired.
#include <catch2/catch.hpp>

#include "common.hpp"

using namespace testing;

template <class E>
static void golden(const E& e, const std::string& expected) {
    const lossjit::Term t = lossjit::simplify(e);
    INFO("expression: " << lossjit::to_string(e));
    INFO("trace:\n" << lossjit::trace_to_string(t));
    CHECK(lossjit::to_string(t) == expected);
}

template <class E, class X>
static void golden_grad(const E& e, const X& x, const std::string& expected) {
    const lossjit::Term t = lossjit::grad(e, x);
    INFO("gradient of: " << lossjit::to_string(e));
    CHECK(lossjit::to_string(t) == expected);
}

TEST_CASE("the five goldens of cross-entropy") {
    golden(-sum(p * log(softmax(u))), "logsumexp(u) - dot(p, u)");
    golden_grad(-sum(p * log(softmax(u))), u, "softmax(u) - p");
    golden(-log(at(softmax(u), y)), "logsumexp(u) - at(u, y)");
    golden_grad(-log(at(softmax(u), y)), u, "softmax(u) - onehot(y)");
    golden(-sum(p * log(exp(u) / sum(exp(u)))), "logsumexp(u) - dot(p, u)");
    golden_grad(-sum(p * log(exp(u) / sum(exp(u)))), u, "softmax(u) - p");
    golden(-log(at(exp(u) / sum(exp(u)), y)), "logsumexp(u) - at(u, y)");
    golden_grad(-sum(p * log(sigmoid(u)) + (1 - p) * log(1 - sigmoid(u))), u, "sigmoid(u) - p");
}

TEST_CASE("log and exp family") {
    golden(log(exp(u)), "u");
    golden(exp(log(p)), "p");                // p >= 0 is known
    golden(exp(log(u)), "exp(log(u))");      // not for logits: exp(log(-1)) is NaN, not -1
    golden(log(1 + u), "log1p(u)");
    golden(log(u + 1), "log1p(u)");          // either operand order
    golden(exp(u) - 1, "expm1(u)");
    golden(log(1 + exp(u)), "softplus(u)");
    golden(log1p(exp(u)), "softplus(u)");
    golden(log(sum(exp(u))), "logsumexp(u)");
    golden(-sum(p * log_softmax(u)), "logsumexp(u) - dot(p, u)");
    golden(log_softmax(u), "u - logsumexp(u)");
    golden(exp(log_softmax(u)), "softmax(u)");
}

TEST_CASE("sigmoid family") {
    golden(log(sigmoid(u)), "-softplus(-u)");
    golden(log(1 - sigmoid(u)), "-softplus(u)");
    golden(1 - sigmoid(u), "sigmoid(-u)");
    golden(-sum(p * log(sigmoid(u)) + (1 - p) * log(1 - sigmoid(u))), "sum(softplus(u)) - dot(p, u)");
    golden(s * sigmoid(u) + s * sigmoid(-u), "s");
}

TEST_CASE("linearity of reductions") {
    golden(sum(u + v), "sum(u) + sum(v)");
    golden(sum(u - v), "sum(u) - sum(v)");
    golden(sum(-u), "-sum(u)");
    golden(sum(s * u), "s * sum(u)");
    golden(sum(u * v), "dot(u, v)");
    golden(sum(onehot(y) * u), "at(u, y)");
    golden(dot(onehot(y), u), "at(u, y)");
    golden(at(u + v, y), "at(u, y) + at(v, y)");
    golden(at(u + s, y), "s + at(u, y)");
    golden(mean(u), "sum(u) / K");
    golden(dot(p, u - logsumexp(u)), "dot(p, u) - logsumexp(u)");
}

TEST_CASE("facts: probability vectors sum to one") {
    golden(sum(p), "1");
    golden(sum(onehot(y)), "1");
    golden(sum(softmax(u)), "1");
    golden(sum(softmax(u / s)), "1");
    golden(mean(p), "1 / K");
}

TEST_CASE("arithmetic, with IEEE honesty") {
    golden(u + 0, "u");
    golden(u * 1, "u");
    golden(-(-u), "u");
    golden(pow(u, 0), "1");
    golden(pow(u, 1), "u");
    golden(p - p, "0");          // p is finite
    golden(0 * p, "0");
    golden(u - u, "0 * u");      // u may be inf: inf - inf is NaN, so the term stays
    golden(u + u, "2 * u");
    golden(s * s, "pow(s, 2)");
    golden(u / 2, "0.5 * u");    // exact: a power of two
    golden(u / 3, "u / 3");      // 1/3 is not exact, so the division stays
    golden(2 * (p + 1) - 2, "2 * p");
}

TEST_CASE("losses people write") {
    // label smoothing, PyTorch's convention
    golden(-(1 - eps) * at(log_softmax(u), y) - eps / K * sum(log_softmax(u)),
           "(eps - 1) * (at(u, y) - logsumexp(u)) + eps * (K * logsumexp(u) - sum(u)) / K");
    golden_grad(-(1 - eps) * at(log_softmax(u), y) - eps / K * sum(log_softmax(u)), u,
                "(eps - 1) * onehot(y) + softmax(u) - eps / K");
    // KL divergence to target probabilities
    golden(sum(p * (log(p) - log_softmax(u))), "dot(p, log(p)) + logsumexp(u) - dot(p, u)");
    golden_grad(sum(p * (log(p) - log_softmax(u))), u, "softmax(u) - p");
    // z-loss
    golden(-log(at(softmax(u), y)) + 0.1 * pow(logsumexp(u), 2), "0.1 * pow(logsumexp(u), 2) + logsumexp(u) - at(u, y)");
    golden_grad(pow(logsumexp(u), 2), u, "2 * logsumexp(u) * softmax(u)");
    golden_grad(logsumexp(u), u, "softmax(u)");
    golden_grad(sum(softplus(u)), u, "sigmoid(u)");
    golden_grad(mean(u * u), u, "2 * u / K");
    // focal loss: one class's probability, never the whole softmax vector, in the loss
    golden(-sum(onehot(y) * pow(1 - softmax(u), 2) * log_softmax(u)),
           "pow(expm1(at(u, y) - logsumexp(u)), 2) * (logsumexp(u) - at(u, y))");
    golden(-at(log_softmax(u), y) + eps * (1 - at(softmax(u), y)),
           "logsumexp(u) - eps * expm1(at(u, y) - logsumexp(u)) - at(u, y)");
    golden_grad(sum(tanh(u)), u, "1 - pow(tanh(u), 2)");
}
