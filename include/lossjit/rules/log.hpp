// Rules whose head is log or exp: fold inverse pairs and turn unstable spellings into the stable
// functions (log1p, expm1, softplus, logsumexp). Each rule is true for every value its guards
// allow, +-inf included; the rule tester (tests/core/test_rules.cpp) checks each numerically.
#pragma once

#include "lossjit/rules/rule.hpp"

namespace lossjit::rules::family {
using namespace lossjit::dsl;

inline constexpr Rule log_exp[] = {
    rule("log-exp", log(exp(_x)), _x),
    // exp(log(x)) = x needs x >= 0 (for x = 0 both sides are 0; for x < 0 the left is NaN)
    rule("exp-log", exp(log(_x)), _x, nonneg(_x)),
    rule("log-1p-exp", log(1 + exp(_x)), softplus(_x)),
    rule("log1p-exp", log1p(exp(_x)), softplus(_x)),
    rule("log-1p", log(1 + _x), log1p(_x)),
    rule("exp-m1", exp(_x) - 1, expm1(_x)),
    rule("1m-exp", 1 - exp(_x), -expm1(_x)),  // 1 - p for p = e^x near 1 keeps its digits
    rule("log-sum-exp", log(sum(exp(_x))), logsumexp(_x)),
    rule("log-one", log(literal{1}), 0),
    rule("exp-zero", exp(literal{0}), 1),
};

}  // namespace lossjit::rules::family
