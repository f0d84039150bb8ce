// Lowering: a loss expression and the inputs to differentiate it by become one Graph with named
// outputs, "loss" and "grad.<name>" for each, simplified and sharing every common subexpression
// (logsumexp(u) is one node used by the loss and by softmax's normalization alike). The JIT
// starts from this Graph.
#pragma once

#include <string>

#include "lossjit/grad.hpp"

namespace lossjit {

// The inputs to differentiate by: wrt(u) or wrt(u, v).
template <class... X>
struct wrt_t {};

template <class... X>
constexpr wrt_t<X...> wrt(const X&...) {
    static_assert((is_input<X>::value && ...), "lossjit: wrt(x...) takes inputs such as logits<\"u\">");
    static_assert(((!is_input<X>::value || differentiable(X::kind)) && ...),
                  "lossjit: wrt(x...): only logits<> and scalar<> inputs are differentiated");
    return {};
}

// The simplified loss and its gradients as one compacted Graph.
template <class E, class... X>
constexpr Graph lower(const E& loss, wrt_t<X...> = {}) {
    static_assert(is_expr<E>, "lossjit: lower(loss, ...): loss must be a lossjit expression");
    static_assert(!is_expr<E> || expr_of<E>::shape == Shape::scalar,
                  "lossjit: a loss must be a scalar; this expression is a vector (reduce it with sum, mean, dot, logsumexp or at)");
    Term t = simplify(loss);
    Graph g;
    std::vector<int> memo(static_cast<std::size_t>(t.graph.size()), -1);
    g.add_output("loss", copy_into(g, t.graph, t.root, memo));
    auto add_grad = [&](std::string_view name) {
        const Term d = gradient(t, name);
        std::vector<int> m(static_cast<std::size_t>(d.graph.size()), -1);
        g.add_output(std::string("grad.") + std::string(name), copy_into(g, d.graph, d.root, m));
    };
    (add_grad(X::name()), ...);
    (void)add_grad;  // a loss without wrt(...) has no gradients
    return compact(g);
}

}  // namespace lossjit
