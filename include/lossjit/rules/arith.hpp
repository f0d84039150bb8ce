// Arithmetic identities. The term collector (simplify.hpp) also folds constants and collects
// like terms; these are the cases it leaves to rules because they need a guard (IEEE honesty:
// 0 * x and x - x are 0 only where x is known finite) or because they remove an op.
#pragma once

#include "lossjit/rules/rule.hpp"

namespace lossjit::rules::family {
using namespace lossjit::dsl;

inline constexpr Rule arith_rules[] = {
    rule("add-zero", _x + 0, _x),
    rule("sub-zero", _x - 0, _x),
    rule("mul-one", _x * 1, _x),
    rule("div-one", _x / 1, _x),
    rule("mul-zero", _x * 0, 0, finite(_x)),
    rule("sub-self", _x - _x, 0, finite(_x)),
    rule("div-self", _x / _x, 1, finite(_x), nonzero(_x)),
    rule("neg-neg", -(-_x), _x),
    rule("sub-neg", _x - (-_y), _x + _y),
    rule("add-neg", _x + (-_y), _x - _y),
    rule("mul-minus-one", _x * -1, -_x),
    rule("pow-zero", pow(_x, 0), 1),  // as C's pow: pow(inf, 0) = pow(0, 0) = 1
    rule("pow-one", pow(_x, 1), _x),
    rule("abs-nonneg", abs(_x), _x, nonneg(_x)),
    rule("min-self", min(_x, _x), _x),
    rule("max-self", max(_x, _x), _x),
};

}  // namespace lossjit::rules::family
