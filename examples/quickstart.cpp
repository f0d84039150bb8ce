// The quickstart: cross-entropy written as mathematics, its rule trace, its simplified form and
// its simplified gradient, all computed at compile time (the static_asserts prove it).
#include <lossjit/lossjit.hpp>

#include <iostream>

using namespace lossjit::dsl;

constexpr auto u = logits<"u">;  // one row of K real logits
constexpr auto p = probs<"p">;   // one row of K probabilities (>= 0, sums to 1)
constexpr auto ce = -sum(p * log(softmax(u)));

static_assert(lossjit::same(lossjit::simplify(ce), logsumexp(u) - dot(p, u)));
static_assert(lossjit::same(lossjit::grad(ce, u), softmax(u) - p));

int main() {
    const lossjit::Term loss = lossjit::simplify(ce);
    std::cout << "expression:  " << ce << "\n"
              << "rule trace:\n" << lossjit::trace_to_string(loss)
              << "simplified:  " << loss << "\n"
              << "gradient:    " << lossjit::grad(ce, u) << "\n"
              << "LaTeX:       " << lossjit::to_latex(loss) << "\n";
}
