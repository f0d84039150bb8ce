// Facts the simplifier may assume about a node, derived bottom-up from the inputs' kinds
// (a `probs` vector is >= 0 and sums to 1) and the ops (exp is >= 0, sigmoid is in [0, 1]).
// Guards of IEEE-sensitive rules ask for these: `x - x -> 0` only where x is known finite.
//
// "finite" means: never +-inf or NaN as long as the inputs are not NaN and finite arithmetic
// does not overflow. Logits are not finite (users mask classes with -inf).
#pragma once

#include <cstdint>

#include "lossjit/graph.hpp"

namespace lossjit {

enum class Fact : std::uint8_t {
    finite,    // see above
    positive,  // > 0
    nonneg,    // >= 0
    prob,      // a vector of probabilities: >= 0, sums to 1
    constant,  // a number
    nonzero,   // != 0
};

inline constexpr int fact_count = 6;

struct Facts {
    std::uint8_t bits = 0;
    constexpr bool has(Fact f) const { return (bits >> static_cast<int>(f)) & 1u; }
    constexpr Facts& set(Fact f, bool on = true) {
        if (on) bits = static_cast<std::uint8_t>(bits | (1u << static_cast<int>(f)));
        return *this;
    }
};

constexpr std::string_view to_string(Fact f) {
    switch (f) {
    case Fact::finite: return "finite";
    case Fact::positive: return "positive";
    case Fact::nonneg: return "nonneg";
    case Fact::prob: return "prob";
    case Fact::constant: return "constant";
    case Fact::nonzero: return "nonzero";
    }
    return "?";
}

// The facts of node `i`, given the facts of the nodes before it.
constexpr Facts derive_facts(const Graph& g, int i, const std::vector<Facts>& known) {
    const Node& n = g[i];
    Facts f;
    const Facts a = n.a >= 0 ? known[static_cast<std::size_t>(n.a)] : Facts{};
    const Facts b = n.b >= 0 ? known[static_cast<std::size_t>(n.b)] : Facts{};
    auto both = [&](Fact x) { return a.has(x) && b.has(x); };
    const bool a_pos_fin = a.has(Fact::positive) && a.has(Fact::finite);
    switch (n.op) {
    case Op::constant: {
        const double v = n.value;
        const bool fin = v == v && v - v == 0;  // neither NaN nor inf, in constant evaluation too
        f.set(Fact::constant).set(Fact::finite, fin).set(Fact::positive, v > 0).set(Fact::nonneg, v >= 0)
            .set(Fact::nonzero, v != 0 && v == v);
        break;
    }
    case Op::input:
        switch (n.kind) {
        case InputKind::probs: f.set(Fact::finite).set(Fact::nonneg).set(Fact::prob); break;
        case InputKind::label: f.set(Fact::finite).set(Fact::nonneg); break;
        case InputKind::weights:
        case InputKind::param: f.set(Fact::finite); break;
        default: break;
        }
        break;
    case Op::row_length: f.set(Fact::finite).set(Fact::positive).set(Fact::nonneg).set(Fact::nonzero); break;
    case Op::wildcard: break;
    case Op::neg:
        f.set(Fact::finite, a.has(Fact::finite)).set(Fact::nonzero, a.has(Fact::nonzero));
        break;
    case Op::exp: f.set(Fact::nonneg); break;  // may overflow to inf, may underflow to 0
    case Op::log:
    case Op::log1p:
    case Op::expm1: break;
    case Op::sqrt:
        f.set(Fact::nonneg).set(Fact::finite, a.has(Fact::finite) && a.has(Fact::nonneg)).set(Fact::positive, a_pos_fin);
        break;
    case Op::tanh: f.set(Fact::finite); break;
    case Op::sigmoid: f.set(Fact::finite).set(Fact::nonneg); break;
    case Op::softplus: f.set(Fact::nonneg); break;
    case Op::abs:
        f.set(Fact::nonneg).set(Fact::finite, a.has(Fact::finite)).set(Fact::positive, a.has(Fact::nonzero))
            .set(Fact::nonzero, a.has(Fact::nonzero));
        break;
    case Op::sign: f.set(Fact::finite); break;
    case Op::step: f.set(Fact::finite).set(Fact::nonneg); break;
    case Op::add:
        f.set(Fact::finite, both(Fact::finite)).set(Fact::nonneg, both(Fact::nonneg))
            .set(Fact::positive, (a.has(Fact::positive) && b.has(Fact::nonneg)) || (b.has(Fact::positive) && a.has(Fact::nonneg)));
        break;
    case Op::sub: f.set(Fact::finite, both(Fact::finite)); break;
    case Op::mul:
        f.set(Fact::finite, both(Fact::finite)).set(Fact::nonneg, both(Fact::nonneg)).set(Fact::positive, both(Fact::positive))
            .set(Fact::nonzero, both(Fact::nonzero));
        break;
    case Op::div:
        f.set(Fact::finite, a.has(Fact::finite) && b.has(Fact::finite) && b.has(Fact::nonzero))
            .set(Fact::nonneg, a.has(Fact::nonneg) && b.has(Fact::nonneg)).set(Fact::positive, both(Fact::positive));
        break;
    case Op::pow: f.set(Fact::nonneg, a.has(Fact::nonneg)).set(Fact::positive, a_pos_fin); break;
    case Op::min:
    case Op::max: f.set(Fact::finite, both(Fact::finite)).set(Fact::nonneg, both(Fact::nonneg)); break;
    case Op::softmax: f.set(Fact::finite).set(Fact::nonneg).set(Fact::prob); break;
    case Op::onehot: f.set(Fact::finite).set(Fact::nonneg).set(Fact::prob); break;
    case Op::log_softmax: break;
    case Op::sum:
    case Op::mean:
    case Op::amax:
        f.set(Fact::finite, a.has(Fact::finite)).set(Fact::nonneg, a.has(Fact::nonneg));
        break;
    case Op::dot: f.set(Fact::finite, both(Fact::finite)).set(Fact::nonneg, both(Fact::nonneg)); break;
    case Op::logsumexp: break;
    case Op::at:
        f.set(Fact::finite, a.has(Fact::finite)).set(Fact::nonneg, a.has(Fact::nonneg));
        break;
    }
    if (f.has(Fact::positive)) f.set(Fact::nonneg).set(Fact::nonzero);
    return f;
}

// Facts for every node of a graph, kept in step with it as the simplifier adds nodes.
class FactTable {
public:
    constexpr const Facts& of(const Graph& g, int i) {
        while (static_cast<int>(facts_.size()) < g.size()) facts_.push_back(derive_facts(g, static_cast<int>(facts_.size()), facts_));
        return facts_[static_cast<std::size_t>(i)];
    }

private:
    std::vector<Facts> facts_;
};

}  // namespace lossjit
