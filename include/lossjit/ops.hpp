// One descriptor per op: everything the library knows about an operation (its name, arity,
// shape rule, how it prints, how the reference evaluator computes it) is in the table below.
// The expression types (expr.hpp), the Graph (graph.hpp), the printers, the simplifier and the
// JIT's emitter table all key on `Op`; a check in jit/ makes sure no op lacks an emitter.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

namespace lossjit {

enum class Shape : std::uint8_t {
    scalar,  // one value per row (broadcast over the row where a vector is needed)
    vector,  // K values per row
    any,     // patterns only: a wildcard that matches either shape
};

// What a named input is. The kind decides its shape, whether it may be differentiated, and
// which facts the simplifier may assume about it.
enum class InputKind : std::uint8_t {
    logits,   // real vector, differentiable
    probs,    // vector known to be >= 0 and to sum to 1
    label,    // integer class index per row, in [0, K)
    weights,  // real vector, not differentiated (e.g. class weights)
    scalar,   // real value per row
    param,    // named constant whose value is given when a kernel is compiled
};

enum class Op : std::uint8_t {
    // leaves
    constant,    // a number, held in Node::value
    input,       // a named input of some InputKind
    row_length,  // K, the number of classes in a row, as a scalar
    wildcard,    // a pattern variable; only inside rules
    // elementwise, one argument
    neg, exp, log, log1p, expm1, sqrt, tanh, sigmoid, softplus, abs,
    sign,  // -1, 0, 1; appears in the gradient of abs
    step,  // 1 where x >= 0, else 0; appears in the gradients of min, max and amax
    // elementwise, two arguments (a scalar argument broadcasts over a vector one)
    add, sub, mul, div, pow, min, max,
    // vector to vector
    softmax, log_softmax,
    onehot,  // onehot(y): 1 at the label's class, 0 elsewhere
    // reductions: vector to scalar
    sum, mean, dot, logsumexp, amax,
    at,  // at(v, y): element y of v
};

inline constexpr int op_count = static_cast<int>(Op::at) + 1;

enum class OpClass : std::uint8_t { leaf, elementwise, vector_map, reduction };

// How an op prints: as a function call `name(a, b)`, as a binary infix operator with a
// precedence, or as a prefix operator.
enum class Notation : std::uint8_t { call, infix, prefix };

namespace precedence {
inline constexpr int additive = 1, multiplicative = 2, prefix = 3, atom = 4;
}

struct OpInfo {
    Op op;
    std::string_view name;   // the DSL spelling, also used for calls when printing
    int arity;
    OpClass cls;
    bool commutative;
    Notation notation;
    std::string_view symbol;  // infix/prefix symbol ("+", "-"), empty for calls
    int prec;                 // binding strength when printed
    std::string_view latex;   // LaTeX for calls (e.g. "\\log"), or the infix symbol
    // Reference semantics in long double. Elementwise ops give `scalar1`/`scalar2`; the
    // evaluator (eval.hpp) implements vector maps and reductions, whose formulas are here
    // in words so that this table stays the one place that names them.
    long double (*scalar1)(long double);
    long double (*scalar2)(long double, long double);
    std::string_view meaning;
};

namespace ref {
// Numerically careful long double reference functions: the oracle for every test.
inline long double neg(long double x) { return -x; }
inline long double exp(long double x) { return std::exp(x); }
inline long double log(long double x) { return std::log(x); }
inline long double log1p(long double x) { return std::log1p(x); }
inline long double expm1(long double x) { return std::expm1(x); }
inline long double sqrt(long double x) { return std::sqrt(x); }
inline long double tanh(long double x) { return std::tanh(x); }
inline long double sigmoid(long double x) {
    // split by sign so that exp never overflows
    return x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x));
}
inline long double softplus(long double x) {
    // log(1 + e^x) = max(x, 0) + log1p(e^-|x|); exact at +-inf
    if (std::isinf(x)) return x > 0 ? x : 0.0L;
    return (x > 0 ? x : 0.0L) + std::log1p(std::exp(-std::fabs(x)));
}
inline long double abs(long double x) { return std::fabs(x); }
inline long double sign(long double x) { return x > 0 ? 1.0L : x < 0 ? -1.0L : x; }
inline long double step(long double x) { return x >= 0 ? 1.0L : x < 0 ? 0.0L : x; }
inline long double add(long double a, long double b) { return a + b; }
inline long double sub(long double a, long double b) { return a - b; }
// A zero factor gives zero even against +-inf (NaN still propagates): the convention of
// x * log(y) terms, so that a class with target 0 adds nothing even where its logit is -inf.
inline long double mul(long double a, long double b) {
    if ((a == 0 && !std::isnan(b)) || (b == 0 && !std::isnan(a))) return 0.0L;
    return a * b;
}
inline long double div(long double a, long double b) { return a / b; }
inline long double pow(long double a, long double b) { return std::pow(a, b); }
inline long double min(long double a, long double b) {
    return std::isnan(a) || std::isnan(b) ? std::numeric_limits<long double>::quiet_NaN()
                                          : (a < b ? a : b);
}
inline long double max(long double a, long double b) {
    return std::isnan(a) || std::isnan(b) ? std::numeric_limits<long double>::quiet_NaN()
                                          : (a > b ? a : b);
}
}  // namespace ref

inline constexpr std::array<OpInfo, op_count> op_table{{
    // op, name, arity, class, commutative, notation, symbol, prec, latex, scalar1, scalar2, meaning
    {Op::constant, "constant", 0, OpClass::leaf, false, Notation::call, "", precedence::atom, "", nullptr, nullptr, "a number"},
    {Op::input, "input", 0, OpClass::leaf, false, Notation::call, "", precedence::atom, "", nullptr, nullptr, "a named input"},
    {Op::row_length, "K", 0, OpClass::leaf, false, Notation::call, "", precedence::atom, "K", nullptr, nullptr, "the row length"},
    {Op::wildcard, "wildcard", 0, OpClass::leaf, false, Notation::call, "", precedence::atom, "", nullptr, nullptr, "a pattern variable"},
    {Op::neg, "neg", 1, OpClass::elementwise, false, Notation::prefix, "-", precedence::prefix, "-", ref::neg, nullptr, "-x"},
    {Op::exp, "exp", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\exp", ref::exp, nullptr, "e^x"},
    {Op::log, "log", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\log", ref::log, nullptr, "natural logarithm"},
    {Op::log1p, "log1p", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\operatorname{log1p}", ref::log1p, nullptr, "log(1 + x)"},
    {Op::expm1, "expm1", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\operatorname{expm1}", ref::expm1, nullptr, "e^x - 1"},
    {Op::sqrt, "sqrt", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\sqrt", ref::sqrt, nullptr, "square root"},
    {Op::tanh, "tanh", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\tanh", ref::tanh, nullptr, "hyperbolic tangent"},
    {Op::sigmoid, "sigmoid", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\sigma", ref::sigmoid, nullptr, "1 / (1 + e^-x)"},
    {Op::softplus, "softplus", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\operatorname{softplus}", ref::softplus, nullptr, "log(1 + e^x)"},
    {Op::abs, "abs", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\operatorname{abs}", ref::abs, nullptr, "|x|"},
    {Op::sign, "sign", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\operatorname{sign}", ref::sign, nullptr, "-1, 0 or 1"},
    {Op::step, "step", 1, OpClass::elementwise, false, Notation::call, "", precedence::atom, "\\operatorname{step}", ref::step, nullptr, "1 where x >= 0, else 0"},
    {Op::add, "add", 2, OpClass::elementwise, true, Notation::infix, "+", precedence::additive, "+", nullptr, ref::add, "a + b"},
    {Op::sub, "sub", 2, OpClass::elementwise, false, Notation::infix, "-", precedence::additive, "-", nullptr, ref::sub, "a - b"},
    {Op::mul, "mul", 2, OpClass::elementwise, true, Notation::infix, "*", precedence::multiplicative, "\\cdot", nullptr, ref::mul, "a * b, with 0 * +-inf = 0"},
    {Op::div, "div", 2, OpClass::elementwise, false, Notation::infix, "/", precedence::multiplicative, "/", nullptr, ref::div, "a / b"},
    {Op::pow, "pow", 2, OpClass::elementwise, false, Notation::call, "", precedence::atom, "^", nullptr, ref::pow, "a to the power b"},
    {Op::min, "min", 2, OpClass::elementwise, true, Notation::call, "", precedence::atom, "\\min", nullptr, ref::min, "smaller of a and b"},
    {Op::max, "max", 2, OpClass::elementwise, true, Notation::call, "", precedence::atom, "\\max", nullptr, ref::max, "larger of a and b"},
    {Op::softmax, "softmax", 1, OpClass::vector_map, false, Notation::call, "", precedence::atom, "\\operatorname{softmax}", nullptr, nullptr, "e^v / sum(e^v)"},
    {Op::log_softmax, "log_softmax", 1, OpClass::vector_map, false, Notation::call, "", precedence::atom, "\\operatorname{log\\_softmax}", nullptr, nullptr, "v - logsumexp(v)"},
    {Op::onehot, "onehot", 1, OpClass::vector_map, false, Notation::call, "", precedence::atom, "\\operatorname{onehot}", nullptr, nullptr, "1 at class y, 0 elsewhere"},
    {Op::sum, "sum", 1, OpClass::reduction, false, Notation::call, "", precedence::atom, "\\sum", nullptr, nullptr, "sum of the row"},
    {Op::mean, "mean", 1, OpClass::reduction, false, Notation::call, "", precedence::atom, "\\operatorname{mean}", nullptr, nullptr, "sum(v) / K"},
    {Op::dot, "dot", 2, OpClass::reduction, true, Notation::call, "", precedence::atom, "\\operatorname{dot}", nullptr, nullptr, "sum(a * b), with 0 * +-inf = 0"},
    {Op::logsumexp, "logsumexp", 1, OpClass::reduction, false, Notation::call, "", precedence::atom, "\\operatorname{logsumexp}", nullptr, nullptr, "log(sum(e^v)), computed stably"},
    {Op::amax, "amax", 1, OpClass::reduction, false, Notation::call, "", precedence::atom, "\\max", nullptr, nullptr, "largest element"},
    {Op::at, "at", 2, OpClass::reduction, false, Notation::call, "", precedence::atom, "\\operatorname{at}", nullptr, nullptr, "element y of v"},
}};

constexpr const OpInfo& info(Op o) { return op_table[static_cast<std::size_t>(o)]; }

// The table is indexed by the enum: check it once, here, rather than trusting its order.
constexpr bool op_table_in_enum_order() {
    for (int i = 0; i < op_count; ++i)
        if (static_cast<int>(op_table[static_cast<std::size_t>(i)].op) != i) return false;
    return true;
}
static_assert(op_table_in_enum_order(), "lossjit: op_table must list the ops in the order of enum Op");

constexpr bool is_elementwise(Op o) { return info(o).cls == OpClass::elementwise; }
constexpr bool is_reduction(Op o) { return info(o).cls == OpClass::reduction; }

// The shape of an op's result from its arguments' shapes: elementwise ops broadcast,
// vector maps give vectors, reductions give scalars.
constexpr Shape result_shape(Op o, Shape a, Shape b) {
    switch (info(o).cls) {
    case OpClass::leaf: return Shape::scalar;
    case OpClass::elementwise:
        if (a == Shape::vector || b == Shape::vector) return Shape::vector;
        return (a == Shape::any || b == Shape::any) ? Shape::any : Shape::scalar;  // patterns
    case OpClass::vector_map: return Shape::vector;
    case OpClass::reduction: return Shape::scalar;
    }
    return Shape::scalar;
}

constexpr std::string_view to_string(InputKind k) {
    switch (k) {
    case InputKind::logits: return "logits";
    case InputKind::probs: return "probs";
    case InputKind::label: return "label";
    case InputKind::weights: return "weights";
    case InputKind::scalar: return "scalar";
    case InputKind::param: return "param";
    }
    return "?";
}

constexpr Shape shape_of(InputKind k) {
    return (k == InputKind::logits || k == InputKind::probs || k == InputKind::weights)
               ? Shape::vector
               : Shape::scalar;
}

constexpr bool differentiable(InputKind k) { return k == InputKind::logits || k == InputKind::scalar; }

}  // namespace lossjit
