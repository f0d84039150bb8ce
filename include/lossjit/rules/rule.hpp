// A rule is a line of data: a name, a pattern, a replacement and optional guards on facts.
//
//     rule("log-softmax", log(softmax(_x)), _x - logsumexp(_x))
//     rule("exp-log", exp(log(_x)), _x, nonneg(_x))
//
// Patterns are written in the DSL itself, with wildcards `_x _y _z` (any shape), `_s _t` (scalars)
// and `_v _w` (vectors), and stored as small fixed arrays of Graph nodes, so a table is a
// constexpr array that the simplifier (at compile time and at run time over a Graph) and the
// rule tester walk alike. A wildcard on the right that the left does not bind is a compile error.
#pragma once

#include <array>
#include <span>
#include <string_view>

#include "lossjit/expr.hpp"
#include "lossjit/facts.hpp"

namespace lossjit {

struct Pattern {
    static constexpr int capacity = 12;
    std::array<Node, capacity> nodes{};
    int count = 0;
    int root = -1;
};

template <Expr E>
constexpr Pattern to_pattern(const E& e) {
    Graph g;
    const int root = emit(g, e);
    if (g.size() > Pattern::capacity) throw error("rule pattern has more than 12 nodes");
    Pattern p;
    for (int i = 0; i < g.size(); ++i) p.nodes[static_cast<std::size_t>(i)] = g[i];
    p.count = g.size();
    p.root = root;
    return p;
}

struct Guard {
    int wildcard = -1;
    Fact fact = Fact::finite;
};

struct Rule {
    std::string_view name;
    Pattern lhs, rhs;
    std::array<Guard, 3> guards{};
    int guard_count = 0;
    static constexpr int max_wildcards = 8;
};

template <int I, Shape S>
constexpr Guard guard(Fact f, wildcard<I, S>) {
    return Guard{I, f};
}

namespace rules {
inline constexpr wildcard<0, Shape::any> _x{};
inline constexpr wildcard<1, Shape::any> _y{};
inline constexpr wildcard<2, Shape::any> _z{};
inline constexpr wildcard<3, Shape::scalar> _s{};
inline constexpr wildcard<4, Shape::scalar> _t{};
inline constexpr wildcard<5, Shape::vector> _v{};
inline constexpr wildcard<6, Shape::vector> _w{};
inline constexpr wildcard<7, Shape::any> _c{};

template <class W> constexpr Guard finite(W w) { return guard(Fact::finite, w); }
template <class W> constexpr Guard positive(W w) { return guard(Fact::positive, w); }
template <class W> constexpr Guard nonneg(W w) { return guard(Fact::nonneg, w); }
template <class W> constexpr Guard nonzero(W w) { return guard(Fact::nonzero, w); }
template <class W> constexpr Guard prob(W w) { return guard(Fact::prob, w); }
template <class W> constexpr Guard constant(W w) { return guard(Fact::constant, w); }
}  // namespace rules

constexpr bool binds_wildcard(const Pattern& p, int index) {
    for (int i = 0; i < p.count; ++i)
        if (p.nodes[static_cast<std::size_t>(i)].op == Op::wildcard && p.nodes[static_cast<std::size_t>(i)].value == index)
            return true;
    return false;
}

template <Expr L, class R, class... G>
constexpr Rule rule(std::string_view name, const L& lhs, const R& rhs, G... guards) {
    Rule r;
    r.name = name;
    r.lhs = to_pattern(lhs);
    r.rhs = to_pattern(as_expr(rhs));
    const Guard gs[] = {guards..., Guard{}};
    static_assert(sizeof...(G) <= 3, "lossjit: a rule has at most three guards");
    for (std::size_t i = 0; i < sizeof...(G); ++i) r.guards[i] = gs[i];
    r.guard_count = static_cast<int>(sizeof...(G));
    // every wildcard the replacement or a guard uses must be bound by the pattern
    for (int i = 0; i < r.rhs.count; ++i) {
        const Node& n = r.rhs.nodes[static_cast<std::size_t>(i)];
        if (n.op == Op::wildcard && !binds_wildcard(r.lhs, static_cast<int>(n.value)))
            throw error("rule " + std::string(name) + ": a wildcard on the right is not bound on the left");
    }
    for (int i = 0; i < r.guard_count; ++i)
        if (!binds_wildcard(r.lhs, r.guards[static_cast<std::size_t>(i)].wildcard))
            throw error("rule " + std::string(name) + ": a guard names a wildcard the pattern does not bind");
    if (r.lhs.nodes[static_cast<std::size_t>(r.lhs.root)].op == Op::wildcard)
        throw error("rule " + std::string(name) + ": a pattern must start with an op, not a wildcard");
    return r;
}

// A rule about two terms: + or - of two op patterns, such as sigmoid(x) + sigmoid(-x). The
// term collector applies these to any two terms that share the rest of their product. (Not
// x + 0 or x - x: those are about one term.)
constexpr bool is_two_term_rule(const Rule& r) {
    const Node& head = r.lhs.nodes[static_cast<std::size_t>(r.lhs.root)];
    auto is_op = [&r](int i) { return info(r.lhs.nodes[static_cast<std::size_t>(i)].op).arity > 0; };
    return (head.op == Op::add || head.op == Op::sub) && is_op(head.a) && is_op(head.b);
}

// A named table of rules, one per op family (rules/*.hpp).
struct RuleTable {
    std::string_view family;
    std::span<const Rule> rules;
};

}  // namespace lossjit
