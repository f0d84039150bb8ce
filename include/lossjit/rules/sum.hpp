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
};

inline constexpr Rule at_rules[] = {
    rule("at-onehot", at(onehot(_y), _y), 1),
    rule("at-scalar", at(_s, _y), _s),
    rule("at-add", at(_x + _z, _y), at(_x, _y) + at(_z, _y)),
    rule("at-sub", at(_x - _z, _y), at(_x, _y) - at(_z, _y)),
    rule("at-neg", at(-_x, _y), -at(_x, _y)),
    rule("at-scale", at(_s * _x, _y), _s * at(_x, _y)),
};

}  // namespace lossjit::rules::family
