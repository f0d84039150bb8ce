// Printing: infix with the fewest parentheses, LaTeX, the tree, the Graph listing, the trace.
#include <catch2/catch.hpp>

#include <sstream>

#include "common.hpp"

using namespace testing;

TEST_CASE("infix printing keeps the user's names and only the parentheses it needs") {
    CHECK(lossjit::to_string(-sum(p * log(softmax(u)))) == "-sum(p * log(softmax(u)))");
    CHECK(lossjit::to_string(u - (v - p)) == "u - (v - p)");
    CHECK(lossjit::to_string((u - v) - p) == "u - v - p");
    CHECK(lossjit::to_string(u + (v + p)) == "u + v + p");
    CHECK(lossjit::to_string(u / (v * p)) == "u / (v * p)");
    CHECK(lossjit::to_string((u + v) * p) == "(u + v) * p");
    CHECK(lossjit::to_string(-(-u)) == "-(-u)");
    CHECK(lossjit::to_string(-(u + v)) == "-(u + v)");
    CHECK(lossjit::to_string(0.5 * u) == "0.5 * u");
    CHECK(lossjit::to_string(pow(u, 2) / K) == "pow(u, 2) / K");
    CHECK(lossjit::to_string(at(u, y) + eps) == "at(u, y) + eps");
    std::ostringstream os;
    os << lossjit::simplify(-sum(p * log(softmax(u))));
    CHECK(os.str() == "logsumexp(u) - dot(p, u)");
}

TEST_CASE("LaTeX") {
    CHECK(lossjit::to_latex(logsumexp(u) - dot(p, u)) ==
          "\\operatorname{logsumexp}\\left(u\\right) - \\operatorname{dot}\\left(p, u\\right)");
    CHECK(lossjit::to_latex(exp(u) / sum(exp(u))) == "\\frac{e^{u}}{\\sum\\left(e^{u}\\right)}");
    CHECK(lossjit::to_latex(at(u, y)) == "{u}_{y}");
}

TEST_CASE("tree and listing") {
    const auto t = lossjit::to_tree(lossjit::as_term(log(softmax(u))));
    CHECK(t == "log  [vector]\n  softmax  [vector]\n    u : logits  [vector]\n");
    lossjit::Graph g = lossjit::lower(-sum(p * log(softmax(u))), lossjit::wrt(u));
    const std::string listing = lossjit::to_listing(g);
    INFO(listing);
    CHECK(listing.find("logsumexp(%") != std::string::npos);
    CHECK(listing.find("loss = %") != std::string::npos);
    CHECK(listing.find("grad.u = %") != std::string::npos);
}

TEST_CASE("the trace names each rule with what it rewrote") {
    const auto t = lossjit::simplify(-sum(p * log(softmax(u))));
    const std::string text = lossjit::trace_to_string(t);
    INFO(text);
    CHECK(text.find("log-softmax:  log(softmax(u))  ->  u - logsumexp(u)\n") != std::string::npos);
    CHECK(text.find("sum-prob:  sum(p)  ->  1\n") != std::string::npos);
    const auto names = lossjit::trace(-sum(p * log(softmax(u))));
    REQUIRE(!names.empty());
    CHECK(names.front() == "log-softmax");
    CHECK(std::find(names.begin(), names.end(), "sum-product") != names.end());
}
