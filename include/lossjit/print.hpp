// Printing every stage: infix with the fewest parentheses and the user's names (`to_string`),
// LaTeX (`to_latex`), an indented tree (`to_tree`), a Graph listing (`to_listing`), and the
// simplifier's trace (`to_string(trace)`: each rule with what it rewrote). Run time only.
#pragma once

#include <charconv>
#include <ostream>
#include <string>

#include "lossjit/simplify.hpp"

namespace lossjit {

inline std::string number_to_string(double v) {
    if (v != v) return "nan";
    if (v - v != 0) return v > 0 ? "inf" : "-inf";
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form: 0.5, 1e-07
    return std::string(buf, r.ptr);
}

namespace detail {

struct Printer {
    const Graph& g;
    bool latex;

    int prec(int id) const {
        const Node& n = g[id];
        if (n.op == Op::constant && n.value < 0) return precedence::prefix;
        return info(n.op).prec;
    }

    std::string wrap(int id, bool parens) const {
        const std::string s = print(id);
        if (!parens) return s;
        return latex ? "\\left(" + s + "\\right)" : "(" + s + ")";
    }

    std::string call(std::string_view name, const Node& n) const {
        std::string s = std::string(name) + (latex ? "\\left(" : "(") + print(n.a);
        if (n.b >= 0) s += ", " + print(n.b);
        return s + (latex ? "\\right)" : ")");
    }

    std::string print(int id) const {
        const Node& n = g[id];
        const OpInfo& d = info(n.op);
        switch (n.op) {
        case Op::constant: return number_to_string(n.value);
        case Op::input: return std::string(n.name.view());
        case Op::wildcard: return "_" + std::string(n.name.view());
        case Op::row_length: return "K";
        default: break;
        }
        // -(-x) keeps its parentheses: --x would read as a decrement
        if (d.notation == Notation::prefix)
            return std::string(d.symbol) + wrap(n.a, prec(n.a) < precedence::multiplicative || prec(n.a) == precedence::prefix);
        if (d.notation == Notation::infix) {
            if (latex && n.op == Op::div) return "\\frac{" + print(n.a) + "}{" + print(n.b) + "}";
            // a - (b + c) and a / (b * c) need their parentheses; a + (b + c) does not
            const bool right_strict = n.op == Op::sub || n.op == Op::div;
            const std::string sym = latex ? std::string(d.latex) : std::string(d.symbol);
            return wrap(n.a, prec(n.a) < d.prec) + " " + sym + " " + wrap(n.b, prec(n.b) < d.prec || (right_strict && prec(n.b) == d.prec));
        }
        if (latex) {
            if (n.op == Op::pow) return "{" + wrap(n.a, prec(n.a) < precedence::atom) + "}^{" + print(n.b) + "}";
            if (n.op == Op::sqrt) return "\\sqrt{" + print(n.a) + "}";
            if (n.op == Op::exp) return "e^{" + print(n.a) + "}";
            if (n.op == Op::at) return "{" + wrap(n.a, prec(n.a) < precedence::atom) + "}_{" + print(n.b) + "}";
            return call(d.latex, n);
        }
        return call(d.name, n);
    }
};

}  // namespace detail

inline std::string to_string(const Graph& g, int root) { return detail::Printer{g, false}.print(root); }
inline std::string to_latex(const Graph& g, int root) { return detail::Printer{g, true}.print(root); }

inline std::string to_string(const Term& t) { return to_string(t.graph, t.root); }
inline std::string to_latex(const Term& t) { return to_latex(t.graph, t.root); }

template <Expr E>
std::string to_string(const E& e) { return to_string(as_term(e)); }
template <Expr E>
std::string to_latex(const E& e) { return to_latex(as_term(e)); }

// One line per node, children indented under their parent.
inline std::string to_tree(const Graph& g, int root, int indent = 0) {
    const Node& n = g[root];
    std::string s(static_cast<std::size_t>(indent) * 2, ' ');
    switch (n.op) {
    case Op::constant: s += number_to_string(n.value); break;
    case Op::input: s += std::string(n.name.view()) + " : " + std::string(to_string(n.kind)); break;
    case Op::wildcard: s += "_" + std::string(n.name.view()); break;
    default: s += std::string(info(n.op).name); break;
    }
    s += n.shape == Shape::vector ? "  [vector]\n" : "  [scalar]\n";
    if (n.a >= 0) s += to_tree(g, n.a, indent + 1);
    if (n.b >= 0) s += to_tree(g, n.b, indent + 1);
    return s;
}
inline std::string to_tree(const Term& t) { return to_tree(t.graph, t.root); }

// A Graph as a numbered listing, the form the JIT starts from: `%3 = exp(%1)  vector`.
inline std::string to_listing(const Graph& g) {
    std::string s;
    for (int i = 0; i < g.size(); ++i) {
        const Node& n = g[i];
        // (appended piece by piece: g++ 12 at -O2 warned, -Wrestrict, on "%" + std::to_string(i),
        // a false positive of its string inlining that a user's -Werror would stop at)
        s += '%';
        s += std::to_string(i);
        s += " = ";
        switch (n.op) {
        case Op::constant: s += number_to_string(n.value); break;
        case Op::input: s += std::string(to_string(n.kind)) + " " + std::string(n.name.view()); break;
        case Op::row_length: s += "K"; break;
        case Op::wildcard: s += "_" + std::string(n.name.view()); break;
        default:
            s += std::string(info(n.op).name) + "(%" + std::to_string(n.a);
            if (n.b >= 0) s += ", %" + std::to_string(n.b);
            s += ")";
        }
        s += n.shape == Shape::vector ? "    vector\n" : "    scalar\n";
    }
    for (const Output& o : g.outputs()) s += std::string(o.name.view()) + " = %" + std::to_string(o.root) + "\n";
    return s;
}

// The trace: one line per step, `rule: before  ->  after`.
inline std::string trace_to_string(const Term& t) {
    std::string s;
    for (const TraceStep& st : t.steps)
        s += std::string(st.rule) + ":  " + to_string(t.graph, st.before) + "  ->  " + to_string(t.graph, st.after) + "\n";
    return s;
}

inline std::ostream& operator<<(std::ostream& os, const Term& t) { return os << to_string(t); }

// Streams a DSL expression as it was written (found by argument-dependent lookup).
template <Expr E>
std::ostream& operator<<(std::ostream& os, const E& e) {
    return os << to_string(e);
}

}  // namespace lossjit
