// The rewrite engine: at each node the rule tables (rules/all.hpp) are tried on the node as
// written, then its arguments are simplified, then the rules again and the term collector
// (collect.hpp) for arithmetic, until nothing changes; each replacement is simplified in turn,
// under a depth cap. Every step is recorded by name in the trace.
// It is constexpr throughout, so `static_assert(same(simplify(ce), logsumexp(u) - dot(p, u)))`
// runs it at compile time, and the same code simplifies a Graph at run time.
#pragma once

#include <string_view>
#include <vector>

#include "lossjit/collect.hpp"
#include "lossjit/expr.hpp"

namespace lossjit {

struct TraceStep {
    std::string_view rule;  // a rule's name, or "collect-terms" / "operand-order"
    int before = -1;        // nodes of the Term's graph
    int after = -1;
};

// An expression as the simplifier sees it: a Graph and the node that is its value. The graph
// keeps every intermediate node, so the trace can show what each step rewrote.
struct Term {
    Graph graph;
    int root = -1;
    std::vector<TraceStep> steps;
    bool simplified = false;  // root is in simplified form: simplifying again changes nothing

    constexpr Shape shape() const { return graph[root].shape; }
};

template <class T> struct is_term : std::false_type {};
template <> struct is_term<Term> : std::true_type {};

// A Term from a DSL expression, or a Term as it is.
template <class E>
constexpr Term as_term(const E& e) {
    if constexpr (std::is_same_v<E, Term>) return e;
    else {
        Term t;
        t.root = emit(t.graph, e);
        return t;
    }
}

struct SimplifyOptions {
    bool use_rules = true;  // false: only the canonical form (collect terms, order operands)
    int depth_cap = 40;     // nested rewrites; also keeps constant evaluation within its limits
};

class Simplifier {
public:
    constexpr Simplifier(Term& t, SimplifyOptions o) : t_(t), opt_(o) {}

    // The simplified form of node `id`. `in_sum` says the parent is arithmetic too: then the
    // term collector waits for the top of the arithmetic tree, which flattens it once, instead
    // of re-collecting every prefix of a long sum (quadratic in its length).
    constexpr int run(int id, int depth = 0, bool in_sum = false) {
        if (int m = memo(id, in_sum); m >= 0) return m;
        const Node n = t_.graph[id];
        int cur = id;
        // Rules first on the node as written, so that a specific pattern such as
        // log(1 - sigmoid(x)) wins over the rewrites its arguments would get on their own.
        // Not for reductions: their linearity rules want the argument's final, collected form.
        if (n.a >= 0 && !is_reduction(n.op) && opt_.use_rules && depth < opt_.depth_cap)
            if (const int r = apply_rules(id); r >= 0) {
                cur = run(r, depth + 1, in_sum);
                set_memo(id, cur, in_sum);
                return cur;
            }
        if (n.a >= 0) {
            const bool arith = is_arith_node(n.op);
            const int a = run(n.a, depth, arith);
            const int b = n.b >= 0 ? run(n.b, depth, arith) : -1;
            if (a != n.a || b != n.b) cur = t_.graph.apply(n.op, a, b);
            cur = rewrite(cur, depth, in_sum);
        }
        set_memo(id, cur, in_sum);
        set_memo(cur, cur, in_sum);
        return cur;
    }

private:
    Term& t_;
    SimplifyOptions opt_;
    FactTable facts_;
    std::vector<int> memo_[2];  // [in_sum]: node -> its simplified form, -1 not yet

    constexpr int memo(int id, bool in_sum) const {
        const auto& m = memo_[in_sum];
        return static_cast<std::size_t>(id) < m.size() ? m[static_cast<std::size_t>(id)] : -1;
    }
    constexpr void set_memo(int id, int v, bool in_sum) {
        auto& m = memo_[in_sum];
        if (m.size() <= static_cast<std::size_t>(id)) m.resize(static_cast<std::size_t>(id) + 1, -1);
        m[static_cast<std::size_t>(id)] = v;
    }
    constexpr void record(std::string_view name, int before, int after) { t_.steps.push_back(TraceStep{name, before, after}); }

    // One node whose arguments are already simplified.
    constexpr int rewrite(int cur, int depth, bool in_sum) {
        Graph& g = t_.graph;
        for (int iteration = 0; iteration < 64 && depth < opt_.depth_cap; ++iteration) {
            const Node n = g[cur];
            if (opt_.use_rules)
                if (const int r = apply_rules(cur); r >= 0) {
                    cur = run(r, depth + 1, in_sum);
                    continue;
                }
            if (is_arith_node(n.op)) {
                if (in_sum) break;  // the top of this arithmetic tree collects it
                std::vector<std::string_view> fired;
                const int c = Collector(g, facts_).collect(cur, fired);
                if (c != cur) {
                    for (std::string_view f : fired) record(f, cur, c);
                    record("collect-terms", cur, c);
                    // The collector builds canonical sums and products from simplified parts;
                    // only a two-term rule's replacement is new and needs simplifying. Without
                    // one, looking again at c itself (rules such as exp(x) - 1) is enough.
                    cur = fired.empty() ? c : run(c, depth + 1);
                    continue;
                }
            } else if (info(n.op).commutative && compare_nodes(g, n.b, n.a) < 0) {
                cur = g.apply(n.op, n.b, n.a);  // canonical operand order, e.g. dot(p, u)
                continue;
            }
            break;
        }
        return cur;
    }

    // The first rule whose pattern matches node `cur`: its replacement, or -1.
    constexpr int apply_rules(int cur) {
        Graph& g = t_.graph;
        for (const Rule* rp : rules::rule_index.rules_for(g[cur].op)) {
            const Rule& r = *rp;
            Bindings b;
            if (!match(r.lhs, r.lhs.root, g, cur, b) || !guards_hold(r, g, b, facts_)) continue;
            const int out = instantiate(r.rhs, r.rhs.root, g, b);
            record(r.name, cur, out);
            return out;
        }
        return -1;
    }
};

// Simplifies a Term in place. One bottom-up run is a fixpoint: every replacement is itself
// simplified before it is used.
constexpr void simplify_in_place(Term& t, SimplifyOptions o = {}) {
    if (t.simplified && o.use_rules) return;
    t.root = Simplifier(t, o).run(t.root);
    t.simplified = o.use_rules;
}

// simplify(e): the simplified form of a DSL expression (or of a Term), with its trace.
template <class E>
    requires(is_expr<E> || is_term<E>::value)
constexpr Term simplify(const E& e, SimplifyOptions o = {}) {
    Term t = as_term(e);
    simplify_in_place(t, o);
    return t;
}

// trace(e): the names of the rules that fired while simplifying e, in order.
template <class E>
constexpr std::vector<std::string_view> trace(const E& e) {
    std::vector<std::string_view> names;
    for (const TraceStep& s : simplify(e).steps)
        if (s.rule != "collect-terms") names.push_back(s.rule);
    return names;
}

// same(a, b): a and b are equal up to the canonical form (like terms collected, operands in the
// canonical order); no rules are applied. Usable in static_assert.
template <class A, class B>
constexpr bool same(const A& a, const B& b) {
    Term t = as_term(a);
    const int ra = t.root;
    Term other = as_term(b);
    std::vector<int> memo(static_cast<std::size_t>(other.graph.size()), -1);
    const int rb = copy_into(t.graph, other.graph, other.root, memo);
    const SimplifyOptions canonical{.use_rules = false};
    Simplifier s(t, canonical);
    return s.run(ra) == s.run(rb);
}

}  // namespace lossjit
