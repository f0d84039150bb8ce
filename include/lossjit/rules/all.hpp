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

// The tables indexed by the op at the head of each pattern, in table order, so that the
// simplifier tries at a node only the rules that can match it (this matters most in constant
// evaluation, where every step is expensive); and the two-term rules the term collector uses.
struct RuleIndex {
    static constexpr int per_op = 24;
    std::array<std::array<const Rule*, per_op>, op_count> by_head{};
    std::array<int, op_count> count{};
    std::array<const Rule*, 8> two_term{};
    int two_term_count = 0;

    constexpr std::span<const Rule* const> rules_for(Op o) const {
        return {by_head[static_cast<std::size_t>(o)].data(), static_cast<std::size_t>(count[static_cast<std::size_t>(o)])};
    }
    constexpr std::span<const Rule* const> two_term_rules() const {
        return {two_term.data(), static_cast<std::size_t>(two_term_count)};
    }
};

constexpr RuleIndex make_rule_index() {
    RuleIndex ix;
    for (const RuleTable& table : all_tables)
        for (const Rule& r : table.rules) {
            const auto head = static_cast<std::size_t>(r.lhs.nodes[static_cast<std::size_t>(r.lhs.root)].op);
            if (ix.count[head] == RuleIndex::per_op) throw error("rule index: too many rules for one op");
            ix.by_head[head][static_cast<std::size_t>(ix.count[head]++)] = &r;
            if (is_two_term_rule(r)) {
                if (ix.two_term_count == 8) throw error("rule index: too many two-term rules");
                ix.two_term[static_cast<std::size_t>(ix.two_term_count++)] = &r;
            }
        }
    return ix;
}

inline constexpr RuleIndex rule_index = make_rule_index();

}  // namespace lossjit::rules
