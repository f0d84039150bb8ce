// Lowering: a loss expression and the inputs to differentiate it by become one Graph with named
// outputs, "loss" and "grad.<name>" for each, simplified and sharing every common subexpression
// (logsumexp(u) is one node used by the loss and by softmax's normalization alike). The JIT
// starts from this Graph.
#pragma once


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

// An extra per-row output of a kernel, computed alongside the loss: also<"z_loss">(z).
template <fixed_string Name, class E>
struct also_t {
    E expr;
};
template <fixed_string Name, class E>
constexpr also_t<Name, expr_of<E>> also(const E& e) {
    static_assert(is_expr<E>, "lossjit: also<\"name\">(e): e must be a lossjit expression");
    static_assert(!is_expr<E> || expr_of<E>::shape == Shape::scalar,
                  "lossjit: also<\"name\">(e): an extra output is one value per row, so e must be a scalar");
    return {as_expr(e)};
}

namespace detail {
constexpr void add_output(Graph& g, const Name& name, const Term& t) {
    std::vector<int> memo(static_cast<std::size_t>(t.graph.size()), -1);
    g.add_output(name, copy_into(g, t.graph, t.root, memo));
}
}  // namespace detail

// The simplified loss, its gradients and any extra outputs as one compacted Graph: outputs
// "loss", "grad.<name>" for each input of wrt(...), and the name of each also<"name">(e).
template <class E, class... X, fixed_string... Names, class... A>
constexpr Graph lower(const E& loss, wrt_t<X...> = {}, const also_t<Names, A>&... extra) {
    static_assert(is_expr<E>, "lossjit: lower(loss, ...): loss must be a lossjit expression");
    static_assert(!is_expr<E> || expr_of<E>::shape == Shape::scalar,
                  "lossjit: a loss must be a scalar; this expression is a vector (reduce it with sum, mean, dot, logsumexp or at)");
    const Term t = simplify(loss);
    Graph g;
    detail::add_output(g, Name("loss"), t);
    auto add_grad = [&](std::string_view name, InputKind kind) {
        const Term d = gradient(t, name);
        detail::add_output(g, Name("grad.", name), d);
        Output& out = g.last_output();
        // a gradient that simplified to one value per row (0, say) still has the input's shape
        if (g[out.root].shape != shape_of(kind))
            out.root = g.apply(Op::add, out.root, g.apply(Op::mul, g.constant(0), g.input(name, kind)));
    };
    (add_grad(X::name(), X::kind), ...);
    (detail::add_output(g, Name(Names.view()), simplify(extra.expr)), ...);
    (void)add_grad;  // a loss without wrt(...) has no gradients
    return compact(g);
}

}  // namespace lossjit
