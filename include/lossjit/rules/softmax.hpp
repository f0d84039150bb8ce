// Rules around softmax: recognize it written out, and fold log into it, which is where
// cross-entropy gets its stability (log(softmax(x)) never forms a 0 to take the log of).
#pragma once

#include "lossjit/rules/rule.hpp"

namespace lossjit::rules::family {
using namespace lossjit::dsl;

inline constexpr Rule softmax_rules[] = {
    rule("softmax-written-out", exp(_x) / sum(exp(_x)), softmax(_x)),
    rule("log-softmax", log(softmax(_x)), _x - logsumexp(_x)),
    rule("log_softmax", log_softmax(_x), _x - logsumexp(_x)),
    // the log of one probability needs only that entry, not the whole log-softmax vector
    rule("log-at-softmax", log(at(softmax(_x), _y)), at(_x, _y) - logsumexp(_x)),
    rule("exp-log-softmax", exp(_x - logsumexp(_x)), softmax(_x)),
    // shifting every logit by the same finite amount
    rule("softmax-shift", softmax(_v + _s), softmax(_v), finite(_s)),
    rule("logsumexp-shift", logsumexp(_v + _s), logsumexp(_v) + _s, finite(_s)),
};

}  // namespace lossjit::rules::family
