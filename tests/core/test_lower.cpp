// Lowering to the Graph the JIT starts from: one hash-consed DAG for loss and gradients.
#include <catch2/catch.hpp>

#include "common.hpp"

using namespace testing;

TEST_CASE("loss and gradient share logsumexp in one graph") {
    const lossjit::Graph g = lossjit::lower(-sum(p * log(softmax(u))), lossjit::wrt(u));
    REQUIRE(g.outputs().size() == 2);
    CHECK(g.outputs()[0].name.view() == "loss");
    CHECK(g.outputs()[1].name.view() == "grad.u");
    CHECK(lossjit::to_string(g, g.outputs()[0].root) == "logsumexp(u) - dot(p, u)");
    CHECK(lossjit::to_string(g, g.outputs()[1].root) == "softmax(u) - p");
    CHECK(g.output_root("grad.u") == g.outputs()[1].root);
    CHECK(g.output_root("loss") == g.outputs()[0].root);
    CHECK(g.output_root("grad.p") == -1);
    int inputs = 0;
    for (const auto& n : g.nodes()) inputs += n.op == lossjit::Op::input;
    CHECK(inputs == 2);  // u and p, each once
}

TEST_CASE("the same loss lowers to the same graph and hash; another does not") {
    const auto a = lossjit::lower(-sum(p * log(softmax(u))), lossjit::wrt(u));
    const auto b = lossjit::lower(-sum(p * log(exp(u) / sum(exp(u)))), lossjit::wrt(u));
    const auto c = lossjit::lower(-log(at(softmax(u), y)), lossjit::wrt(u));
    CHECK(lossjit::hash(a) == lossjit::hash(b));
    CHECK(lossjit::hash(a) != lossjit::hash(c));
}

TEST_CASE("lowering works in constant evaluation") {
    constexpr auto n = [] { return lossjit::lower(-log(at(softmax(u), y)), lossjit::wrt(u)).size(); }();
    STATIC_REQUIRE(n >= 5);
}

TEST_CASE("the simplified graph computes what the expression means") {
    std::mt19937_64 rng(3);
    const auto loss = -sum(p * log(softmax(u))) + 0.1 * pow(logsumexp(u), 2);
    const lossjit::Graph g = lossjit::lower(loss, lossjit::wrt(u));
    const lossjit::Graph plain = lossjit::to_graph(loss);
    for (int rep = 0; rep < 20; ++rep) {
        const auto row = random_row(rng, 13);
        CHECK(close(lossjit::evaluate(g, g.outputs()[0].root, row).s, lossjit::evaluate(plain, plain.outputs()[0].root, row).s));
    }
}

TEST_CASE("extra outputs with also<name>(e), and a gradient that is one value per row") {
    const auto g = lossjit::lower(-at(log_softmax(u), y) + 0.01 * pow(logsumexp(u), 2), lossjit::wrt(u),
                                  lossjit::also<"z">(0.01 * pow(logsumexp(u), 2)));
    REQUIRE(g.outputs().size() == 3);
    CHECK(g.outputs()[2].name.view() == "z");
    CHECK(lossjit::to_string(g, g.outputs()[2].root) == "0.01 * pow(logsumexp(u), 2)");
    // d/du of a loss that does not depend on u is 0, still shaped like u
    const auto h = lossjit::lower(sum(p * log(p)), lossjit::wrt(u));
    const auto& grad = h.nodes()[static_cast<std::size_t>(h.outputs()[1].root)];
    CHECK(grad.shape == lossjit::Shape::vector);
    lossjit::RowValues row;
    row.set("u", Row{1, -std::numeric_limits<long double>::infinity(), 3}).set("p", Row{0.5L, 0, 0.5L});
    const auto value = lossjit::evaluate(h, h.outputs()[1].root, row);
    REQUIRE(value.v.size() == 3);
    for (long double x : value.v) CHECK(x == 0);
}
