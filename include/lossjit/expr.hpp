// The loss DSL: expressions are constexpr values of small types. Named inputs are empty types
// carrying their name and kind; ops are `node<Op, Args...>` holding their arguments by value in a
// hana::tuple (never references, so an expression outlives the temporaries it was built from);
// plain numbers become `literal` nodes holding their value. Shapes are checked here, at the door,
// with one plain static_assert message per misuse.
#pragma once

#include <boost/hana.hpp>
#include <cstddef>
#include <string_view>
#include <type_traits>

#include "lossjit/graph.hpp"
#include "lossjit/ops.hpp"

namespace lossjit {

namespace hana = boost::hana;

// A string usable as a template argument: the names of inputs (`logits<"u">`).
template <std::size_t N>
struct fixed_string {
    char text[N]{};
    constexpr fixed_string(const char (&s)[N]) {  // NOLINT: implicit, so that logits<"u"> works
        for (std::size_t i = 0; i < N; ++i) text[i] = s[i];
    }
    constexpr std::string_view view() const { return {text, N - 1}; }
};

template <fixed_string Name, InputKind Kind>
struct input {
    static constexpr Shape shape = shape_of(Kind);
    static constexpr std::string_view name() { return Name.view(); }
    static constexpr InputKind kind = Kind;
};

struct literal {
    double value;
    static constexpr Shape shape = Shape::scalar;
};

struct row_length_t {
    static constexpr Shape shape = Shape::scalar;
};

// A pattern variable, for rule tables: `I` numbers it within a rule, `S` restricts its shape.
template <int I, Shape S>
struct wildcard {
    static constexpr Shape shape = S;
    static constexpr int index = I;
};

// An op applied to one or two argument expressions, held by value. (Plain members rather
// than a hana::tuple: rule tables instantiate hundreds of these in every translation unit.)
template <Op O, class... Args>
struct node;
template <Op O, class A>
struct node<O, A> {
    A a;
    static constexpr Shape shape = result_shape(O, A::shape, Shape::scalar);
};
template <Op O, class A, class B>
struct node<O, A, B> {
    A a;
    B b;
    static constexpr Shape shape = result_shape(O, A::shape, B::shape);
};

template <class T> struct is_expr_impl : std::false_type {};
template <fixed_string N, InputKind K> struct is_expr_impl<input<N, K>> : std::true_type {};
template <> struct is_expr_impl<literal> : std::true_type {};
template <> struct is_expr_impl<row_length_t> : std::true_type {};
template <int I, Shape S> struct is_expr_impl<wildcard<I, S>> : std::true_type {};
template <Op O, class... A> struct is_expr_impl<node<O, A...>> : std::true_type {};

template <class T>
inline constexpr bool is_expr = is_expr_impl<std::remove_cvref_t<T>>::value;

template <class T>
concept Expr = is_expr<T>;

// An operand of the DSL's operators: an expression or a plain number.
template <class T>
concept Operand = is_expr<T> || std::is_arithmetic_v<std::remove_cvref_t<T>>;

template <class T> struct is_label_impl : std::false_type {};
template <fixed_string N> struct is_label_impl<input<N, InputKind::label>> : std::true_type {};
template <class T>
inline constexpr bool is_label = is_label_impl<std::remove_cvref_t<T>>::value;

template <class T> struct is_wildcard_impl : std::false_type {};
template <int I, Shape S> struct is_wildcard_impl<wildcard<I, S>> : std::true_type {};
// Where a label is needed, a rule's pattern variable may stand for one.
template <class T>
inline constexpr bool may_be_label = is_label<T> || is_wildcard_impl<std::remove_cvref_t<T>>::value;

template <class T>
constexpr auto as_expr(const T& x) {
    if constexpr (is_expr<T>) return x;
    else return literal{static_cast<double>(x)};
}
template <class T>
using expr_of = decltype(as_expr(std::declval<T>()));

template <class T>
constexpr Shape shape_v = expr_of<T>::shape;

template <Op O, class... A>
constexpr auto make(const A&... a) {
    return node<O, expr_of<A>...>{as_expr(a)...};
}

// ---- lowering a DSL expression into a Graph (constexpr) ----

template <fixed_string N, InputKind K>
constexpr int emit(Graph& g, const input<N, K>&) { return g.input(N.view(), K); }
constexpr int emit(Graph& g, const literal& l) { return g.constant(l.value); }
constexpr int emit(Graph& g, const row_length_t&) { return g.row_length(); }
template <int I, Shape S>
constexpr int emit(Graph& g, const wildcard<I, S>&) {
    constexpr std::string_view names[] = {"x", "y", "z", "s", "t", "v", "w", "c"};
    return g.wildcard(I, names[I % 8], S);
}
template <Op O, class A>
constexpr int emit(Graph& g, const node<O, A>& n) {
    return g.apply(O, emit(g, n.a));
}
template <Op O, class A, class B>
constexpr int emit(Graph& g, const node<O, A, B>& n) {
    const int a = emit(g, n.a);  // first argument first: graphs are built in one order
    return g.apply(O, a, emit(g, n.b));
}

// The whole expression as a Graph with one output, "value".
template <Expr E>
constexpr Graph to_graph(const E& e) {
    Graph g;
    const int root = emit(g, e);
    g.add_output("value", root);
    return g;
}

// The named inputs an expression reads, as a hana::tuple of hana::type, each once.
template <class E>
constexpr auto inputs_tuple(const E&) {
    if constexpr (requires { E::kind; }) return hana::make_tuple(hana::type_c<E>);
    else return hana::make_tuple();
}
template <Op O, class... A>
constexpr auto inputs_tuple(const node<O, A...>&) {
    auto all = hana::flatten(hana::make_tuple(inputs_tuple(A{})...));
    return hana::fold_left(all, hana::make_tuple(), [](auto acc, auto t) {
        if constexpr (decltype(hana::contains(acc, t))::value) return acc;
        else return hana::append(acc, t);
    });
}

// Whether an expression reads an input called `name`.
template <class E>
constexpr bool has_input(std::string_view name) {
    return hana::any_of(inputs_tuple(E{}), [name](auto t) {
        return decltype(t)::type::name() == name;
    });
}

// ---- elementwise arithmetic, in namespace lossjit so that argument-dependent lookup finds
// them for every expression type ----
#define LOSSJIT_NO_LABEL(arg, fn)                                                              \
    static_assert(!::lossjit::is_label<arg>,                                                   \
                  "lossjit: " fn ": a label<> is a class index; use it only in onehot(y) or at(v, y)")

// An elementwise op of two operands, at least one of them an expression: `decl` is the
// function's name (operator+ or min), `shown` how messages name it.
#define LOSSJIT_ELEMENTWISE_BINARY(decl, op_name, shown)                                        \
    template <Operand A, Operand B>                                                            \
        requires(is_expr<A> || is_expr<B>)                                                     \
    constexpr auto decl(const A& a, const B& b) {                                              \
        LOSSJIT_NO_LABEL(A, shown);                                                            \
        LOSSJIT_NO_LABEL(B, shown);                                                            \
        return make<Op::op_name>(a, b);                                                        \
    }
LOSSJIT_ELEMENTWISE_BINARY(operator+, add, "operator +")
LOSSJIT_ELEMENTWISE_BINARY(operator-, sub, "operator -")
LOSSJIT_ELEMENTWISE_BINARY(operator*, mul, "operator *")
LOSSJIT_ELEMENTWISE_BINARY(operator/, div, "operator /")

template <Expr A>
constexpr auto operator-(const A& a) {
    LOSSJIT_NO_LABEL(A, "unary -");
    return make<Op::neg>(a);
}

}  // namespace lossjit

namespace lossjit::dsl {

// ---- inputs ----
template <fixed_string N> inline constexpr input<N, InputKind::logits> logits{};
template <fixed_string N> inline constexpr input<N, InputKind::probs> probs{};
template <fixed_string N> inline constexpr input<N, InputKind::label> label{};
template <fixed_string N> inline constexpr input<N, InputKind::weights> weights{};
template <fixed_string N> inline constexpr input<N, InputKind::scalar> scalar{};
template <fixed_string N> inline constexpr input<N, InputKind::param> param{};
// The row length K as a scalar, so that mean and its gradient can be written.
inline constexpr row_length_t K{};

// ---- elementwise functions ----
#define LOSSJIT_UNARY_FUNCTION(fn)                                                             \
    template <class A>                                                                         \
    constexpr auto fn(const A& a) {                                                            \
        static_assert(is_expr<A> || std::is_arithmetic_v<A>,                                   \
                      "lossjit: " #fn "(x) needs a lossjit expression or a number");           \
        LOSSJIT_NO_LABEL(A, #fn "(x)");                                                        \
        return make<Op::fn>(a);                                                                \
    }
LOSSJIT_UNARY_FUNCTION(exp)
LOSSJIT_UNARY_FUNCTION(log)
LOSSJIT_UNARY_FUNCTION(log1p)
LOSSJIT_UNARY_FUNCTION(expm1)
LOSSJIT_UNARY_FUNCTION(sqrt)
LOSSJIT_UNARY_FUNCTION(tanh)
LOSSJIT_UNARY_FUNCTION(sigmoid)
LOSSJIT_UNARY_FUNCTION(softplus)
LOSSJIT_UNARY_FUNCTION(abs)
LOSSJIT_UNARY_FUNCTION(sign)
LOSSJIT_UNARY_FUNCTION(step)
#undef LOSSJIT_UNARY_FUNCTION

template <Operand A, Operand B>
constexpr auto pow(const A& x, const B& c) {
    LOSSJIT_NO_LABEL(A, "pow(x, c)");
    LOSSJIT_NO_LABEL(B, "pow(x, c)");
    static_assert(shape_v<B> != Shape::vector, "lossjit: pow(x, c): the exponent c must be a scalar");
    return make<Op::pow>(x, c);
}

LOSSJIT_ELEMENTWISE_BINARY(min, min, "min(a, b)")
LOSSJIT_ELEMENTWISE_BINARY(max, max, "max(a, b)")
#undef LOSSJIT_ELEMENTWISE_BINARY

// ---- vector to vector, and reductions ----
#define LOSSJIT_NEEDS_VECTOR(arg, fn)                                                          \
    static_assert(is_expr<arg>, "lossjit: " fn " needs a vector expression such as logits<\"u\">, not a number"); \
    static_assert(!is_expr<arg> || may_be_label<arg> || expr_of<arg>::shape != Shape::scalar,  \
                  "lossjit: " fn " needs a vector, but this argument is a scalar");            \
    LOSSJIT_NO_LABEL(arg, fn)

#define LOSSJIT_VECTOR_FUNCTION(fn)                                                            \
    template <class V>                                                                         \
    constexpr auto fn(const V& v) {                                                            \
        LOSSJIT_NEEDS_VECTOR(V, #fn "(v)");                                                    \
        return make<Op::fn>(v);                                                                \
    }
LOSSJIT_VECTOR_FUNCTION(softmax)
LOSSJIT_VECTOR_FUNCTION(log_softmax)
LOSSJIT_VECTOR_FUNCTION(sum)
LOSSJIT_VECTOR_FUNCTION(mean)
LOSSJIT_VECTOR_FUNCTION(logsumexp)
LOSSJIT_VECTOR_FUNCTION(amax)
#undef LOSSJIT_VECTOR_FUNCTION

template <class A, class B>
constexpr auto dot(const A& a, const B& b) {
    LOSSJIT_NEEDS_VECTOR(A, "dot(a, b)");
    LOSSJIT_NEEDS_VECTOR(B, "dot(a, b)");
    return make<Op::dot>(a, b);
}

template <class Y>
constexpr auto onehot(const Y& y) {
    static_assert(may_be_label<Y>, "lossjit: onehot(y) needs a label<\"y\"> (an integer class index)");
    return make<Op::onehot>(y);
}

template <class V, class Y>
constexpr auto at(const V& v, const Y& y) {
    LOSSJIT_NEEDS_VECTOR(V, "at(v, y)");
    static_assert(may_be_label<Y>, "lossjit: at(v, y) needs a label<\"y\"> as its second argument");
    return make<Op::at>(v, y);
}

#undef LOSSJIT_NEEDS_VECTOR
#undef LOSSJIT_NO_LABEL

}  // namespace lossjit::dsl
