// Named, checked bindings for the reference evaluator on DSL expressions:
//
//     long double l = lossjit::evaluate(ce, lossjit::bind<"u">(logits), lossjit::bind<"p">(target));
//
// A name the expression does not read, or an input left without a binding, is a compile error.
#pragma once

#include <type_traits>
#include <vector>

#include "lossjit/eval.hpp"
#include "lossjit/expr.hpp"

namespace lossjit {

template <fixed_string Name, class T>
struct binding {
    T value;
    static constexpr std::string_view name() { return Name.view(); }
};

// bind<"u">(values): a vector (any range of numbers) or a scalar (a number, a label, a param).
template <fixed_string Name, class T>
auto bind(const T& value) {
    if constexpr (std::is_arithmetic_v<T>) return binding<Name, long double>{static_cast<long double>(value)};
    else return binding<Name, std::vector<long double>>{std::vector<long double>(std::begin(value), std::end(value))};
}

template <fixed_string Name, class T>
void add_binding(RowValues& row, const binding<Name, T>& b) {
    row.set(Name.view(), b.value);
}

template <class E, class B>
constexpr bool binding_names_input() {
    return hana::any_of(inputs_tuple(E{}), [](auto t) { return decltype(t)::type::name() == B::name(); });
}

template <class E, class... B>
constexpr bool every_input_bound() {
    return hana::all_of(inputs_tuple(E{}), [](auto t) { return ((decltype(t)::type::name() == B::name()) || ...); });
}

// The value of a DSL expression for one row: a long double for a scalar expression, the K
// values of a vector one.
template <Expr E, class... B>
auto evaluate(const E& e, const B&... bindings) {
    static_assert((binding_names_input<E, B>() && ...),
                  "lossjit: evaluate: a bind<\"name\"> names an input the expression does not have (unknown name in a binding)");
    static_assert(every_input_bound<E, B...>(), "lossjit: evaluate: every input of the expression needs a bind<\"name\">(value)");
    RowValues row;
    (add_binding(row, bindings), ...);
    const Graph g = to_graph(e);
    Value v = lossjit::evaluate(g, g.outputs().front().root, row);
    if constexpr (E::shape == Shape::vector) return v.v;
    else return v.s;
}

}  // namespace lossjit
