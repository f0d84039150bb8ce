// Symbolic gradients: one local derivative (vector-Jacobian product) per op argument, written as
// a DSL pattern over `_x` (first argument), `_y` (second argument), `_z` (the op's own value)
// and `_c` (the adjoint flowing in); then reverse accumulation over the simplified loss, and the
// sum simplified by the same engine. Differentiating the *simplified* loss is what keeps the
// gradient stable: d/du logsumexp(u) = softmax(u), never 1/softmax(u) * ...
#pragma once

#include "lossjit/simplify.hpp"

namespace lossjit {

struct Derivative {
    Op op;
    int arg;  // which argument this is the derivative with respect to
    Pattern vjp;
};

namespace rules {
template <class E>
constexpr Derivative d(Op op, int arg, const E& vjp) {
    return Derivative{op, arg, to_pattern(as_expr(vjp))};
}
}  // namespace rules

namespace rules::family {
using namespace lossjit::dsl;

inline constexpr Derivative derivatives[] = {
    d(Op::neg, 0, -_c),
    d(Op::exp, 0, _c * _z),                          // d e^x = e^x
    d(Op::log, 0, _c / _x),                          // d log x = 1/x
    d(Op::log1p, 0, _c / (1 + _x)),                  // d log(1+x) = 1/(1+x)
    d(Op::expm1, 0, _c * exp(_x)),                   // d (e^x - 1) = e^x
    d(Op::sqrt, 0, _c / (2 * _z)),                   // d sqrt x = 1/(2 sqrt x)
    d(Op::tanh, 0, _c * (1 - _z * _z)),              // d tanh x = 1 - tanh^2 x
    d(Op::sigmoid, 0, _c * _z * sigmoid(-_x)),       // d s(x) = s(x) s(-x), no cancellation
    d(Op::softplus, 0, _c * sigmoid(_x)),            // d log(1+e^x) = s(x)
    d(Op::abs, 0, _c * sign(_x)),                    // d |x| = sign x
    d(Op::sign, 0, 0),                               // piecewise constant
    d(Op::step, 0, 0),                               // piecewise constant
    d(Op::add, 0, _c), d(Op::add, 1, _c),
    d(Op::sub, 0, _c), d(Op::sub, 1, -_c),
    d(Op::mul, 0, _c * _y), d(Op::mul, 1, _c * _x),
    d(Op::div, 0, _c / _y), d(Op::div, 1, -(_c * _z) / _y),          // d(a/b)/db = -(a/b)/b
    d(Op::pow, 0, _c * _y * pow(_x, _y - 1)), d(Op::pow, 1, _c * _z * log(_x)),
    d(Op::min, 0, _c * step(_y - _x)), d(Op::min, 1, _c * (1 - step(_y - _x))),
    d(Op::max, 0, _c * step(_x - _y)), d(Op::max, 1, _c * (1 - step(_x - _y))),
    d(Op::softmax, 0, _z * (_c - dot(_c, _z))),      // J^T c for J = diag(s) - s s^T
    d(Op::log_softmax, 0, _c - softmax(_x) * sum(_c)),
    d(Op::sum, 0, _c),                               // the adjoint broadcasts over the row
    d(Op::mean, 0, _c / K),
    d(Op::dot, 0, _c * _y), d(Op::dot, 1, _c * _x),
    d(Op::logsumexp, 0, _c * softmax(_x)),           // d logsumexp u = softmax u
    d(Op::amax, 0, _c * step(_x - _z)),              // every maximal entry gets the adjoint
    d(Op::at, 0, _c * onehot(_y)),                   // d u_y = onehot(y)
};

}  // namespace rules::family

// The derivative of `op` with respect to argument `arg`: its index in the table, or -1. (An index,
// not a pointer: g++ with -fsanitize=undefined cannot compare a table's address with null in
// constant evaluation.)
constexpr int find_derivative(Op op, int arg) {
    int i = 0;
    for (const Derivative& d : rules::family::derivatives) {
        if (d.op == op && d.arg == arg) return i;
        ++i;
    }
    return -1;
}

// Every op that has arguments must have a derivative for each differentiable argument:
// labels (onehot's and at's second) are indices, not differentiable.
constexpr bool every_op_has_derivatives() {
    for (const OpInfo& d : op_table) {
        if (d.arity == 0 || d.op == Op::onehot) continue;
        const int args = d.op == Op::at ? 1 : d.arity;
        for (int a = 0; a < args; ++a)
            if (find_derivative(d.op, a) < 0) return false;
    }
    return true;
}
static_assert(every_op_has_derivatives(), "lossjit: an op lacks a derivative in grad.hpp");

// The gradient of `loss.root` with respect to the input named `wrt`, simplified; the result is
// a Term sharing the loss's graph. Constexpr, and usable at run time on any Graph.
constexpr Term gradient(Term loss, std::string_view wrt) {
    simplify_in_place(loss);
    Term t;
    std::vector<int> memo(static_cast<std::size_t>(loss.graph.size()), -1);
    const int root = copy_into(t.graph, loss.graph, loss.root, memo);
    Graph& g = t.graph;
    const int count = g.size();  // the loss's nodes, in topological order

    // which nodes depend on the input: only those carry adjoints
    std::vector<char> depends(static_cast<std::size_t>(count), 0);  // not vector<bool>: clang 14 cannot evaluate it
    for (int i = 0; i < count; ++i) {
        const Node& n = g[i];
        depends[static_cast<std::size_t>(i)] = (n.op == Op::input && n.name.view() == wrt) ||
                                               (n.a >= 0 && depends[static_cast<std::size_t>(n.a)]) ||
                                               (n.b >= 0 && depends[static_cast<std::size_t>(n.b)]);
    }
    std::vector<int> adjoint(static_cast<std::size_t>(count), -1);
    adjoint[static_cast<std::size_t>(root)] = g.constant(1);
    int result = -1;
    for (int i = root; i >= 0; --i) {
        const int c = adjoint[static_cast<std::size_t>(i)];
        if (c < 0 || !depends[static_cast<std::size_t>(i)]) continue;
        const Node n = g[i];
        if (n.op == Op::input) {
            result = c;
            continue;
        }
        for (int arg = 0; arg < 2; ++arg) {
            const int child = arg == 0 ? n.a : n.b;
            if (child < 0 || !depends[static_cast<std::size_t>(child)]) continue;
            const int index = find_derivative(n.op, arg);
            if (index < 0) throw error("grad: no derivative for " + std::string(info(n.op).name));
            const Derivative* d = &rules::family::derivatives[index];
            Bindings b;
            b.id[0] = n.a;
            b.id[1] = n.b;
            b.id[2] = i;
            b.id[7] = c;
            int contribution = instantiate(d->vjp, d->vjp.root, g, b);
            // a scalar argument used against a vector receives the sum of the vector adjoint
            if (g[child].shape == Shape::scalar && g[contribution].shape == Shape::vector)
                contribution = g.apply(Op::sum, contribution);
            int& slot = adjoint[static_cast<std::size_t>(child)];
            slot = slot < 0 ? contribution : g.apply(Op::add, slot, contribution);
        }
    }
    t.root = result >= 0 ? result : g.constant(0);
    simplify_in_place(t);
    return t;
}

template <class T> struct is_input : std::false_type {};
template <fixed_string N, InputKind K> struct is_input<input<N, K>> : std::true_type {};

// grad(loss, u): the simplified gradient of a scalar loss with respect to an input.
template <class E, class X>
constexpr Term grad(const E& loss, const X&) {
    static_assert(is_expr<E>, "lossjit: grad(loss, x): loss must be a lossjit expression");
    static_assert(!is_expr<E> || expr_of<E>::shape == Shape::scalar,
                  "lossjit: grad(loss, x) needs a scalar loss; this expression is a vector (reduce it with sum, mean, dot, logsumexp or at)");
    static_assert(is_input<X>::value, "lossjit: grad(loss, x): x must be an input such as logits<\"u\">");
    if constexpr (is_input<X>::value) {
        static_assert(differentiable(X::kind),
                      "lossjit: grad(loss, x): x must be logits<> or scalar<>; probs, label, weights and param inputs are not differentiated");
        return gradient(as_term(loss), X::name());
    } else {
        return Term{};
    }
}

}  // namespace lossjit
