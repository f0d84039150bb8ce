// Matching a rule's pattern against a Graph node, and building its replacement; plus the one
// total order on nodes that decides the canonical order of commutative operands, so no rule
// has to list permutations. All constexpr: the same code runs at compile time and at run time.
#pragma once

#include <array>

#include "lossjit/facts.hpp"
#include "lossjit/rules/rule.hpp"

namespace lossjit {

// Wildcard index -> bound node id (-1: unbound).
struct Bindings {
    std::array<int, Rule::max_wildcards> id{-1, -1, -1, -1, -1, -1, -1, -1};
};

// A total order on nodes: constants first (by value), then K, then inputs (by name), then ops
// (by enum order, then their arguments). Returns <0, 0, >0.
constexpr int compare_nodes(const Graph& g, int i, int j) {
    if (i == j) return 0;
    const Node& x = g[i];
    const Node& y = g[j];
    auto rank = [](Op o) {
        switch (o) {
        case Op::constant: return 0;
        case Op::row_length: return 1;
        case Op::input: return 2;
        case Op::wildcard: return 3;
        default: return 4 + static_cast<int>(o);
        }
    };
    if (rank(x.op) != rank(y.op)) return rank(x.op) < rank(y.op) ? -1 : 1;
    switch (x.op) {
    case Op::constant: return x.value < y.value ? -1 : x.value > y.value ? 1 : 0;
    case Op::input:
        if (x.name != y.name) return x.name < y.name ? -1 : 1;
        return static_cast<int>(x.kind) - static_cast<int>(y.kind);
    case Op::wildcard: return x.value < y.value ? -1 : x.value > y.value ? 1 : 0;
    case Op::row_length: return 0;
    default: break;
    }
    if (const int c = compare_nodes(g, x.a, y.a); c != 0) return c;
    if (x.b >= 0 && y.b >= 0) return compare_nodes(g, x.b, y.b);
    return (x.b >= 0) - (y.b >= 0);
}

constexpr bool shape_fits(Shape want, Shape have) { return want == Shape::any || want == have; }

// Matches pattern node `pi` of `p` against node `id` of `g`, extending `b`.
constexpr bool match(const Pattern& p, int pi, const Graph& g, int id, Bindings& b) {
    const Node& pn = p.nodes[static_cast<std::size_t>(pi)];
    const Node& n = g[id];
    switch (pn.op) {
    case Op::wildcard: {
        int& slot = b.id[static_cast<std::size_t>(pn.value)];
        if (slot >= 0) return slot == id;  // hash-consed: equal subterms are the same node
        if (!shape_fits(pn.shape, n.shape)) return false;
        slot = id;
        return true;
    }
    case Op::constant: return n.op == Op::constant && n.value == pn.value;
    case Op::row_length: return n.op == Op::row_length;
    case Op::input: return n.op == Op::input && n.name == pn.name && n.kind == pn.kind;
    default: break;
    }
    if (n.op != pn.op) return false;
    const Bindings saved = b;
    if (match(p, pn.a, g, n.a, b) && (pn.b < 0 || match(p, pn.b, g, n.b, b))) return true;
    b = saved;
    if (info(pn.op).commutative && match(p, pn.a, g, n.b, b) && match(p, pn.b, g, n.a, b)) return true;
    b = saved;
    return false;
}

// Builds pattern node `pi` in `g` with the wildcards replaced by their bindings.
constexpr int instantiate(const Pattern& p, int pi, Graph& g, const Bindings& b) {
    const Node& pn = p.nodes[static_cast<std::size_t>(pi)];
    switch (pn.op) {
    case Op::wildcard: return b.id[static_cast<std::size_t>(pn.value)];
    case Op::constant: return g.constant(pn.value);
    case Op::row_length: return g.row_length();
    case Op::input: return g.input(pn.name.view(), pn.kind);
    default: break;
    }
    const int a = instantiate(p, pn.a, g, b);
    const int c = pn.b >= 0 ? instantiate(p, pn.b, g, b) : -1;
    return g.apply(pn.op, a, c);
}

constexpr bool guards_hold(const Rule& r, const Graph& g, const Bindings& b, FactTable& facts) {
    for (int i = 0; i < r.guard_count; ++i) {
        const Guard& gd = r.guards[static_cast<std::size_t>(i)];
        if (!facts.of(g, b.id[static_cast<std::size_t>(gd.wildcard)]).has(gd.fact)) return false;
    }
    return true;
}

}  // namespace lossjit
