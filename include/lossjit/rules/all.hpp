// Every rule table, by family. The simplifier and the rule tester walk this one list.
#pragma once

#include <array>

#include "lossjit/rules/arith.hpp"
#include "lossjit/rules/log.hpp"
#include "lossjit/rules/sigmoid.hpp"
#include "lossjit/rules/softmax.hpp"
#include "lossjit/rules/sum.hpp"

namespace lossjit::rules {

// Order matters only where two rules match the same node: the more specific family first
// (log-at-softmax before a plain log rule, sum-onehot before sum-product).
inline constexpr std::array<RuleTable, 7> all_tables{{
    {"softmax", family::softmax_rules},
    {"sigmoid", family::sigmoid_rules},
    {"log-exp", family::log_exp},
    {"sum", family::sum_rules},
    {"dot", family::dot_rules},
    {"at", family::at_rules},
    {"arith", family::arith_rules},
}};

}  // namespace lossjit::rules
