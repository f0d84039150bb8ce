// The sigmoid family: the logs of sigmoid and of its complement are softplus, which is finite
// where the naive spelling overflows or takes log(0).
#pragma once

#include "lossjit/rules/rule.hpp"

namespace lossjit::rules::family {
using namespace lossjit::dsl;

inline constexpr Rule sigmoid_rules[] = {
    rule("log-sigmoid", log(sigmoid(_x)), -softplus(-_x)),
    rule("log-1m-sigmoid", log(1 - sigmoid(_x)), -softplus(_x)),
    rule("1m-sigmoid", 1 - sigmoid(_x), sigmoid(-_x)),
    // Sums of two terms. The term collector also applies these to any pair of terms that
    // share the rest of their product: c*p*sigmoid(x) + c*p*sigmoid(-x) -> c*p.
    rule("sigmoid-complement", sigmoid(_x) + sigmoid(-_x), 1),
    rule("softplus-difference", softplus(_x) - softplus(-_x), _x),
};

}  // namespace lossjit::rules::family
