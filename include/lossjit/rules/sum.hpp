// Reductions: linearity of sum, dot and at, the facts about probability vectors, and mean in
// terms of sum. Together they turn -sum(p * (u - logsumexp(u))) into logsumexp(u) - dot(p, u).
#pragma once

#include "lossjit/rules/rule.hpp"

namespace lossjit::rules::family {
using namespace lossjit::dsl;

inline constexpr Rule sum_rules[] = {
    rule("sum-prob", sum(_x), 1, prob(_x)),  // probs, onehot(y) and softmax(x) sum to 1
    rule("sum-add", sum(_x + _y), sum(_x) + sum(_y)),
    rule("sum-sub", sum(_x - _y), sum(_x) - sum(_y)),
    rule("sum-neg", sum(-_x), -sum(_x)),
    rule("sum-scale", sum(_s * _x), _s * sum(_x)),
    rule("sum-divide", sum(_x / _s), sum(_x) / _s),
    rule("sum-scalar", sum(_s), K * _s),
    rule("sum-onehot", sum(onehot(_y) * _x), at(_x, _y)),
    rule("sum-product", sum(_v * _w), dot(_v, _w)),
    rule("mean", mean(_x), sum(_x) / K),
};

inline constexpr Rule dot_rules[] = {
    rule("dot-onehot", dot(onehot(_y), _x), at(_x, _y)),
    rule("dot-scalar", dot(_x, _s), _s * sum(_x)),
    rule("dot-add", dot(_x, _y + _z), dot(_x, _y) + dot(_x, _z)),
    rule("dot-sub", dot(_x, _y - _z), dot(_x, _y) - dot(_x, _z)),
    rule("dot-neg", dot(_x, -_y), -dot(_x, _y)),
    rule("dot-scale", dot(_x, _s * _y), _s * dot(_x, _y)),
    rule("dot-divide", dot(_x, _y / _s), dot(_x, _y) / _s),
};

inline constexpr Rule at_rules[] = {
    rule("at-onehot", at(onehot(_y), _y), 1),
    rule("at-scalar", at(_s, _y), _s),
    rule("at-add", at(_x + _z, _y), at(_x, _y) + at(_z, _y)),
    rule("at-sub", at(_x - _z, _y), at(_x, _y) - at(_z, _y)),
    rule("at-neg", at(-_x, _y), -at(_x, _y)),
    rule("at-scale", at(_s * _x, _y), _s * at(_x, _y)),
    // one entry of an elementwise result needs one entry of its arguments
    rule("at-mul", at(_x * _z, _y), at(_x, _y) * at(_z, _y)),
    rule("at-div", at(_x / _z, _y), at(_x, _y) / at(_z, _y)),
    rule("at-exp", at(exp(_x), _y), exp(at(_x, _y))),
    rule("at-log", at(log(_x), _y), log(at(_x, _y))),
    rule("at-log1p", at(log1p(_x), _y), log1p(at(_x, _y))),
    rule("at-expm1", at(expm1(_x), _y), expm1(at(_x, _y))),
    rule("at-sqrt", at(sqrt(_x), _y), sqrt(at(_x, _y))),
    rule("at-tanh", at(tanh(_x), _y), tanh(at(_x, _y))),
    rule("at-sigmoid", at(sigmoid(_x), _y), sigmoid(at(_x, _y))),
    rule("at-softplus", at(softplus(_x), _y), softplus(at(_x, _y))),
    rule("at-abs", at(abs(_x), _y), abs(at(_x, _y))),
    rule("at-pow", at(pow(_x, _s), _y), pow(at(_x, _y), _s)),
    // the probability of one class, without the whole softmax vector
    rule("at-softmax", at(softmax(_x), _y), exp(at(_x, _y) - logsumexp(_x))),
};

}  // namespace lossjit::rules::family
