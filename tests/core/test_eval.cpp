// The reference evaluator: the oracle of every other test, so its own edges are tested here.
#include <catch2/catch.hpp>

#include "common.hpp"

using namespace testing;

static long double eval(const lossjit::Graph& g, const lossjit::RowValues& row) {
    return lossjit::evaluate(g, g.outputs().front().root, row).s;
}

TEST_CASE("cross-entropy by hand") {
    lossjit::RowValues row;
    row.set("u", Row{1, 2, 3}).set("p", Row{0.2L, 0.3L, 0.5L}).set("y", 2.0L);
    const long double lse = std::log(std::exp(1.0L) + std::exp(2.0L) + std::exp(3.0L));
    CHECK(close(eval(lossjit::to_graph(-sum(p * log(softmax(u)))), row), lse - (0.2L + 0.6L + 1.5L)));
    CHECK(close(eval(lossjit::to_graph(-log(at(softmax(u), y))), row), lse - 3));
    CHECK(close(eval(lossjit::to_graph(mean(u)), row), 2));
    CHECK(close(eval(lossjit::to_graph(amax(u) * K), row), 9));
}

TEST_CASE("masked logits: 0 * -inf counts as 0, NaN still propagates") {
    const long double inf = std::numeric_limits<long double>::infinity();
    lossjit::RowValues row;
    row.set("u", Row{-inf, 0, 0}).set("p", Row{0, 0.5L, 0.5L});
    CHECK(close(eval(lossjit::to_graph(-sum(p * log(softmax(u)))), row), std::log(2.0L)));
    CHECK(close(eval(lossjit::to_graph(logsumexp(u) - dot(p, u)), row), std::log(2.0L)));
    row.set("u", Row{std::numeric_limits<long double>::quiet_NaN(), 0, 0});
    CHECK(std::isnan(eval(lossjit::to_graph(logsumexp(u) - dot(p, u)), row)));
    row.set("u", Row{-inf, -inf, -inf});
    CHECK(eval(lossjit::to_graph(logsumexp(u)), row) == -inf);
}

TEST_CASE("stable reference functions at the edges") {
    const long double inf = std::numeric_limits<long double>::infinity();
    CHECK(lossjit::ref::softplus(1000) == 1000);
    CHECK(lossjit::ref::softplus(-inf) == 0);
    CHECK(lossjit::ref::sigmoid(-1000) > 0);
    CHECK(lossjit::ref::sigmoid(inf) == 1);
    CHECK(lossjit::ref::mul(0, inf) == 0);
}

TEST_CASE("evaluation errors name what is wrong") {
    lossjit::RowValues row;
    row.set("u", Row{1, 2, 3}).set("y", 3.0L);
    CHECK_THROWS_WITH(eval(lossjit::to_graph(at(u, y)), row), Catch::Contains("label 3") && Catch::Contains("[0, 3)"));
    CHECK_THROWS_WITH(eval(lossjit::to_graph(sum(p)), row), Catch::Contains("'p'"));
    row.set("p", Row{1, 0});
    CHECK_THROWS_WITH(eval(lossjit::to_graph(sum(p) + sum(u)), row), Catch::Contains("elements"));
}

TEST_CASE("evaluate(expression, bindings) with named, checked bindings") {
    const long double l = lossjit::evaluate(-log(at(softmax(u), y)), lossjit::bind<"u">(Row{0, 0}), lossjit::bind<"y">(1));
    CHECK(close(l, std::log(2.0L)));
    const auto sm = lossjit::evaluate(softmax(u), lossjit::bind<"u">(std::vector<double>{0, 0}));
    REQUIRE(sm.size() == 2);
    CHECK(close(sm[0], 0.5L));
}
