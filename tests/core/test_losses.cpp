// The loss library (losses.hpp): each loss's simplified form and gradient as the simplifier
// prints them, and each gradient against finite differences of the loss as written.
#include <catch2/catch.hpp>

#include <lossjit/losses.hpp>

#include "gradcheck.hpp"

using namespace testing;
namespace L = lossjit::losses;

template <class E, class X = decltype(u)>
static void check_loss(const E& loss, const std::string& simplified, const std::string& gradient, bool maskable, X x = u) {
    INFO("loss: " << lossjit::to_string(loss));
    CHECK(lossjit::to_string(lossjit::simplify(loss)) == simplified);
    CHECK(lossjit::to_string(lossjit::grad(loss, x)) == gradient);
    check_all(loss, maskable, true, x);
}

TEST_CASE("cross-entropy, hard and soft targets") {
    check_loss(L::cross_entropy(), "logsumexp(u) - at(u, y)", "softmax(u) - onehot(y)", true);
    check_loss(L::soft_cross_entropy(), "logsumexp(u) - dot(p, u)", "softmax(u) - p", true);
}

TEST_CASE("class weights") {
    check_loss(L::weighted_cross_entropy(), "(logsumexp(u) - at(u, y)) * at(w, y)",
               "at(w, y) * softmax(u) - at(w, y) * onehot(y)", true);
}

TEST_CASE("label smoothing, PyTorch's convention, with and without class weights") {
    check_loss(L::label_smoothing_cross_entropy(),
               "(label_smoothing - 1) * (at(u, y) - logsumexp(u)) + label_smoothing * (K * logsumexp(u) - sum(u)) / K",
               "(label_smoothing - 1) * onehot(y) + softmax(u) - label_smoothing / K", false);
    check_all(L::weighted_label_smoothing_cross_entropy(), false);
}

TEST_CASE("z-loss, soft-capping, temperature") {
    check_loss(L::z_loss(), "z_loss * pow(logsumexp(u), 2)", "2 * z_loss * logsumexp(u) * softmax(u)", true);
    check_loss(L::cross_entropy_with_z_loss(), "z_loss * pow(logsumexp(u), 2) + logsumexp(u) - at(u, y)",
               "(1 + 2 * z_loss * logsumexp(u)) * softmax(u) - onehot(y)", true);
    check_all(L::softcapped_cross_entropy(), false);
    check_loss(L::tempered_cross_entropy(), "logsumexp(u / temperature) - at(u, y) / temperature",
               "softmax(u / temperature) / temperature - onehot(y) / temperature", true);
}

TEST_CASE("KL divergence and distillation") {
    check_loss(L::kl_divergence(), "dot(p, log(p)) + logsumexp(u) - dot(p, u)", "softmax(u) - p", true);
    const auto student = logits<"s">;
    check_all(L::distillation_kl(), false, true, student);
    CHECK(lossjit::to_string(lossjit::grad(L::distillation_kl(), student)) ==
          "pow(temperature, 2) * softmax(s / temperature) / temperature - pow(temperature, 2) * softmax(t / temperature) / temperature");
}

TEST_CASE("binary cross-entropy with logits") {
    check_loss(L::binary_cross_entropy(), "(sum(softplus(u)) - dot(targets, u)) / K", "sigmoid(u) / K - targets / K", false);
    check_all(L::binary_cross_entropy_with_logits(), false);
}

TEST_CASE("focal loss is finite at gamma = 0 and where p_y reaches 0 or 1") {
    check_all(L::focal(), false);
    const lossjit::Term g = lossjit::grad(L::focal(), u);
    const lossjit::Term l = lossjit::simplify(L::focal());
    for (long double gamma : {0.0L, 0.5L, 2.0L})
        for (long double logit : {0.0L, 60.0L, -60.0L, 800.0L}) {
            lossjit::RowValues row;
            row.set("u", Row{logit, 0, 0}).set("y", 0.0L).set("gamma", gamma);
            INFO("gamma " << static_cast<double>(gamma) << ", true-class logit " << static_cast<double>(logit));
            CHECK(std::isfinite(static_cast<double>(value_of(l, row))));
            const auto gv = lossjit::evaluate(g.graph, g.root, row);
            for (long double e : gv.v) CHECK(std::isfinite(static_cast<double>(e)));
        }
}

TEST_CASE("poly-1 cross-entropy") {
    check_loss(L::poly1_cross_entropy(), "logsumexp(u) - poly_epsilon * expm1(at(u, y) - logsumexp(u)) - at(u, y)",
               "(1 + poly_epsilon * exp(at(u, y) - logsumexp(u))) * softmax(u) + (-poly_epsilon * exp(at(u, y) - logsumexp(u)) - 1) * onehot(y)",
               true);
}
