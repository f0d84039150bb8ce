// The rule tester: walks every rule of every table (rules/all.hpp), binds each wildcard to a
// fresh input of the right shape and kind (so guards about facts hold), then
//  - checks that simplify() fires the rule when given its own pattern ("Rule never fires"),
//  - evaluates both sides with the reference evaluator on random in-domain rows and fails
//    with the rule's name and text if they differ ("Incorrect rule").
#include <catch2/catch.hpp>

#include <algorithm>

#include "common.hpp"

using namespace testing;

namespace {

struct Instance {
    lossjit::Graph graph;
    int lhs = -1, rhs = -1;
};

bool used_as_label(const lossjit::Pattern& p, int wildcard) {
    for (int i = 0; i < p.count; ++i) {
        const lossjit::Node& n = p.nodes[static_cast<std::size_t>(i)];
        auto is_w = [&](int id) {
            return id >= 0 && p.nodes[static_cast<std::size_t>(id)].op == lossjit::Op::wildcard &&
                   p.nodes[static_cast<std::size_t>(id)].value == wildcard;
        };
        if ((n.op == lossjit::Op::at && is_w(n.b)) || (n.op == lossjit::Op::onehot && is_w(n.a))) return true;
    }
    return false;
}

// An input for wildcard `i` of rule `r` whose kind gives it every fact the guards ask for.
int bind_wildcard(lossjit::Graph& g, const lossjit::Rule& r, int i, lossjit::Shape shape) {
    using lossjit::Fact;
    using lossjit::InputKind;
    bool need[lossjit::fact_count] = {};
    for (int k = 0; k < r.guard_count; ++k)
        if (r.guards[static_cast<std::size_t>(k)].wildcard == i) need[static_cast<int>(r.guards[static_cast<std::size_t>(k)].fact)] = true;
    const std::string name = "x" + std::to_string(i);
    if (used_as_label(r.lhs, i)) return g.input("y", InputKind::label);
    if (need[static_cast<int>(Fact::nonzero)]) return g.row_length();  // K: finite and nonzero
    if (shape == lossjit::Shape::scalar)
        return g.input(name, need[static_cast<int>(Fact::finite)] ? InputKind::param : InputKind::scalar);
    const bool constrained = need[static_cast<int>(Fact::prob)] || need[static_cast<int>(Fact::nonneg)] ||
                             need[static_cast<int>(Fact::finite)] || need[static_cast<int>(Fact::positive)];
    return g.input(name, constrained ? InputKind::probs : InputKind::logits);
}

Instance instantiate(const lossjit::Rule& r) {
    Instance in;
    lossjit::Bindings b;
    for (int i = 0; i < r.lhs.count; ++i) {
        const lossjit::Node& n = r.lhs.nodes[static_cast<std::size_t>(i)];
        if (n.op == lossjit::Op::wildcard && b.id[static_cast<std::size_t>(n.value)] < 0)
            b.id[static_cast<std::size_t>(n.value)] = bind_wildcard(in.graph, r, static_cast<int>(n.value), n.shape);
    }
    in.lhs = lossjit::instantiate(r.lhs, r.lhs.root, in.graph, b);
    in.rhs = lossjit::instantiate(r.rhs, r.rhs.root, in.graph, b);
    return in;
}

lossjit::RowValues random_bindings(const lossjit::Graph& g, std::size_t k, std::mt19937_64& rng) {
    lossjit::RowValues row;
    std::uniform_real_distribution<double> unit(0.25, 4.0);
    std::uniform_int_distribution<std::size_t> label(0, k - 1);
    for (const lossjit::Node& n : g.nodes()) {
        if (n.op != lossjit::Op::input) continue;
        const std::string name(n.name.view());
        switch (n.kind) {
        case lossjit::InputKind::logits: row.set(name, random_logits(rng, k)); break;
        case lossjit::InputKind::probs: row.set(name, random_simplex(rng, k)); break;
        case lossjit::InputKind::label: row.set(name, static_cast<long double>(label(rng))); break;
        default: row.set(name, static_cast<long double>(unit(rng))); break;
        }
    }
    return row;
}

}  // namespace

TEST_CASE("every rule is correct and fires on its own pattern") {
    std::mt19937_64 rng(7);
    int rules = 0;
    for (const lossjit::RuleTable& table : lossjit::rules::all_tables) {
        for (const lossjit::Rule& r : table.rules) {
            ++rules;
            const Instance in = instantiate(r);
            const std::string text = lossjit::to_string(in.graph, in.lhs) + "  ->  " + lossjit::to_string(in.graph, in.rhs);
            INFO("rule " << r.name << " (" << table.family << "): " << text);

            lossjit::Term t{in.graph, in.lhs, {}};
            lossjit::simplify_in_place(t);
            std::vector<std::string_view> fired;
            for (const auto& st : t.steps) fired.push_back(st.rule);
            INFO("simplified to " << lossjit::to_string(t) << "\n" << lossjit::trace_to_string(t));
            if (std::find(fired.begin(), fired.end(), r.name) == fired.end()) FAIL_CHECK("Rule never fires: " << std::string(r.name));

            for (std::size_t k : {1u, 3u, 16u}) {
                for (int rep = 0; rep < 20; ++rep) {
                    const lossjit::RowValues row = random_bindings(in.graph, k, rng);
                    const auto values = lossjit::evaluate_all(in.graph, row, k);
                    const lossjit::Value& l = values[static_cast<std::size_t>(in.lhs)];
                    const lossjit::Value& rv = values[static_cast<std::size_t>(in.rhs)];
                    bool ok = true;
                    for (std::size_t j = 0; j < (l.is_vector || rv.is_vector ? k : 1); ++j) ok = ok && close(l[j], rv[j], 1e-12L, 1e-15L);
                    if (!ok) {
                        FAIL_CHECK("Incorrect rule: " << std::string(r.name) << " at K = " << k << ": left "
                                                      << static_cast<double>(l[0]) << ", right " << static_cast<double>(rv[0]));
                        break;
                    }
                }
            }
        }
    }
    CHECK(rules >= 45);
}

TEST_CASE("every derivative is correct") {
    // Each op's VJP against finite differences: d/dx sum(c * op(x, y)) for random c.
    std::mt19937_64 rng(11);
    for (const lossjit::OpInfo& d : lossjit::op_table) {
        if (d.cls != lossjit::OpClass::elementwise && d.cls != lossjit::OpClass::vector_map && d.cls != lossjit::OpClass::reduction) continue;
        if (d.op == lossjit::Op::onehot || d.op == lossjit::Op::sign || d.op == lossjit::Op::step) continue;
        for (int arg = 0; arg < (d.op == lossjit::Op::at ? 1 : d.arity); ++arg) {
            INFO("derivative of " << d.name << " with respect to argument " << arg);
            lossjit::Term loss;
            lossjit::Graph& g = loss.graph;
            const int x = g.input("u", lossjit::InputKind::logits);
            const int other = d.op == lossjit::Op::at ? g.input("y", lossjit::InputKind::label)
                                                      : g.input("v", lossjit::InputKind::logits);
            const int a = arg == 0 ? x : other, b = arg == 0 ? other : x;
            // keep arguments in domain: log, sqrt and pow need positive bases
            const bool positive = d.op == lossjit::Op::log || d.op == lossjit::Op::log1p || d.op == lossjit::Op::sqrt || d.op == lossjit::Op::pow;
            const int pa = positive ? g.apply(lossjit::Op::exp, a) : a;
            const int node = g.apply(d.op, pa, d.arity == 2 ? b : -1);
            const int c = g.input("c", lossjit::InputKind::weights);
            loss.root = g[node].shape == lossjit::Shape::vector ? g.apply(lossjit::Op::dot, c, node) : node;
            const lossjit::Term grad = lossjit::gradient(loss, "u");
            for (int rep = 0; rep < 10; ++rep) {
                const std::size_t k = 5;
                lossjit::RowValues row;
                row.set("u", random_logits(rng, k, 1)).set("v", random_logits(rng, k, 1)).set("c", random_logits(rng, k, 1))
                    .set("y", 2.0L);
                const lossjit::Value an = lossjit::evaluate(grad.graph, grad.root, row, k);
                for (std::size_t j = 0; j < k; ++j) {
                    Row up = *row.vector("u"), down = up;
                    up[j] += 1e-6L;
                    down[j] -= 1e-6L;
                    const long double fd = (lossjit::evaluate(loss.graph, loss.root, lossjit::RowValues(row).set("u", up), k).s -
                                            lossjit::evaluate(loss.graph, loss.root, lossjit::RowValues(row).set("u", down), k).s) / 2e-6L;
                    INFO("gradient " << lossjit::to_string(grad) << " at class " << j);
                    CHECK(close(an[j], fd, 1e-5L, 1e-6L));
                }
            }
        }
    }
}
