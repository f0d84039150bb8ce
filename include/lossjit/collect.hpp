// The term collector: the simplifier's canonical form for elementwise arithmetic. A tree of
// + - * / and unary minus becomes a list of terms `coef * f1^p1 * f2^p2 ...`; constants fold into
// the coefficients, products distribute over sums (where that pays), like terms and like
// factors combine, two-term rules from the tables apply to any pair of terms that share the rest
// of their product (c*p*sigmoid(x) + c*p*sigmoid(-x) -> c*p), and the result is rebuilt in one
// order: positive terms first, then the subtracted ones; in a product the coefficient, then
// scalars, then vectors. This is where commutative operand order is decided, once.
//
// IEEE honesty: terms cancel to nothing (x - x), and x^a * x^-b combine, only where x is known
// finite (and, for powers, positive); otherwise they stay, so inf and NaN propagate as written.
#pragma once

#include <string_view>
#include <vector>

#include "lossjit/match.hpp"
#include "lossjit/rules/all.hpp"

namespace lossjit {

struct Factor {
    int base;
    double power;
    constexpr bool operator==(const Factor&) const = default;
};

struct Monomial {
    double coef = 1;
    std::vector<Factor> factors;
};

constexpr bool is_sum_node(Op o) { return o == Op::add || o == Op::sub || o == Op::neg; }
constexpr bool is_arith_node(Op o) { return is_sum_node(o) || o == Op::mul || o == Op::div; }

class Collector {
public:
    static constexpr std::size_t max_terms = 32;  // distribute only while the sum stays this small

    constexpr Collector(Graph& g, FactTable& facts) : g_(g), facts_(facts) {}

    // The canonical form of arithmetic node `id`; `fired` receives the two-term rules applied.
    // Products are distributed over sums only where that pays: fewer terms, or a two-term rule
    // that fires. Otherwise a factor such as (logsumexp(u) - at(u, y)) stays whole, which also
    // keeps its cancellation inside one subtraction instead of between two large products.
    constexpr int collect(int id, std::vector<std::string_view>& fired) {
        const bool outer_distribute = distribute_;
        std::vector<std::string_view>* const outer_fired = fired_;
        std::vector<std::string_view> fired_kept, fired_expanded;
        std::vector<Monomial> kept = terms_of(id, false, fired_kept);
        std::vector<Monomial> expanded = terms_of(id, true, fired_expanded);
        distribute_ = outer_distribute;
        fired_ = outer_fired;
        const int cost_kept = cost(kept), cost_expanded = cost(expanded);
        const bool expand = cost_expanded < cost_kept ||
                            (cost_expanded == cost_kept && fired_expanded.size() > fired_kept.size());
        for (std::string_view f : expand ? fired_expanded : fired_kept) fired.push_back(f);
        return rebuild(expand ? expanded : kept);
    }

private:
    Graph& g_;
    FactTable& facts_;
    bool distribute_ = true;
    std::vector<std::string_view>* fired_ = nullptr;  // where the current collection's rules go

    constexpr std::vector<Monomial> terms_of(int id, bool distribute, std::vector<std::string_view>& fired) {
        distribute_ = distribute;
        fired_ = &fired;
        std::vector<Monomial> terms;
        expand_sum(id, 1.0, terms);
        normalize(terms);
        while (apply_pair_rule(terms, fired)) normalize(terms);
        return terms;
    }

    // How much a list of terms costs to compute: each factor counts once, a sum that is a
    // factor counts its terms. Distributing pays when it lowers this, e.g. when terms cancel.
    constexpr int sum_size(int id) const {
        const Node& n = g_[id];
        if (n.op == Op::add || n.op == Op::sub) return sum_size(n.a) + sum_size(n.b);
        if (n.op == Op::neg) return sum_size(n.a);
        return 1;
    }
    constexpr int cost(const std::vector<Monomial>& terms) const {
        int c = 0;
        for (const Monomial& m : terms) {
            c += m.factors.empty() ? 1 : 0;
            for (const Factor& f : m.factors) c += sum_size(f.base);
        }
        return c;
    }

    // A sum that stays a factor, (a + b) * x or a / (b + c), is collected in its own right, so
    // that factors are canonical too.
    constexpr int factor_base(int id) {
        if (!is_sum_node(g_[id].op)) return id;
        const bool outer_distribute = distribute_;
        std::vector<std::string_view>* const outer_fired = fired_;
        std::vector<std::string_view> nested;
        const int c = collect(id, nested);
        distribute_ = outer_distribute;
        fired_ = outer_fired;
        for (std::string_view f : nested) fired_->push_back(f);
        return c;
    }

    constexpr bool finite(int id) { return facts_.of(g_, id).has(Fact::finite); }

    constexpr void expand_sum(int id, double coef, std::vector<Monomial>& out) {
        const Node n = g_[id];
        switch (n.op) {
        case Op::add: expand_sum(n.a, coef, out); expand_sum(n.b, coef, out); return;
        case Op::sub: expand_sum(n.a, coef, out); expand_sum(n.b, -coef, out); return;
        case Op::neg: expand_sum(n.a, -coef, out); return;
        default: break;
        }
        Monomial m{coef, {}};
        add_factors(id, 1.0, m);
        distribute(std::move(m), out);
    }

    static constexpr bool exact_reciprocal(double c) {
        // 1/c is exact for powers of two; other divisions by constants stay visible
        if (c == 0 || c != c || c - c != 0) return false;
        double a = c < 0 ? -c : c;
        while (a >= 2) a /= 2;
        while (a < 1) a *= 2;
        return a == 1;
    }

    // 6 / 3: whole numbers that divide without remainder (the coefficient so far is known
    // here only for factors that come after it; 3 * x / 3 folds, x / 3 stays).
    static constexpr bool divides_exactly(double a, double b) {
        const auto whole = [](double x) { return x == x && x - x == 0 && x == static_cast<double>(static_cast<long long>(x)) && x < 9e15 && x > -9e15; };
        return whole(a) && whole(b) && b != 0 && static_cast<long long>(a) % static_cast<long long>(b) == 0;
    }

    constexpr void add_factors(int id, double power, Monomial& m) {
        const Node n = g_[id];
        const bool unit = power == 1 || power == -1;
        switch (n.op) {
        case Op::mul: add_factors(n.a, power, m); add_factors(n.b, power, m); return;
        case Op::div: add_factors(n.a, power, m); add_factors(n.b, -power, m); return;
        case Op::neg:
            if (unit) {
                m.coef = -m.coef;
                add_factors(n.a, power, m);
                return;
            }
            break;
        case Op::constant:
            if (power == 1) {
                m.coef *= n.value;
                return;
            }
            if (power == -1 && (exact_reciprocal(n.value) || divides_exactly(m.coef, n.value))) {
                m.coef /= n.value;
                return;
            }
            break;
        case Op::pow:
            if (g_[n.b].op == Op::constant) {
                const double c = g_[n.b].value;
                int base = factor_base(n.a);
                // (-x)^n = (-1)^n x^n for whole n: the sign leaves the power
                if (g_[base].op == Op::neg && c == static_cast<double>(static_cast<long long>(c))) {
                    if (static_cast<long long>(c) % 2 != 0) m.coef = -m.coef;
                    base = g_[base].a;
                }
                m.factors.push_back(Factor{base, power * c});
                return;
            }
            break;
        default: break;
        }
        m.factors.push_back(Factor{factor_base(id), power});
    }

    constexpr void distribute(Monomial m, std::vector<Monomial>& out) {
        for (std::size_t i = 0; distribute_ && i < m.factors.size(); ++i) {
            const Factor f = m.factors[i];
            if (f.power != 1 || !is_sum_node(g_[f.base].op)) continue;
            std::vector<Monomial> inner;
            expand_sum(f.base, 1.0, inner);
            if (out.size() + inner.size() > max_terms) break;
            m.factors.erase(m.factors.begin() + static_cast<std::ptrdiff_t>(i));
            for (Monomial& t : inner) {
                Monomial r{m.coef * t.coef, m.factors};
                for (const Factor& x : t.factors) r.factors.push_back(x);
                distribute(std::move(r), out);
            }
            return;
        }
        out.push_back(std::move(m));
    }

    constexpr void sort_factors(std::vector<Factor>& fs) {
        std::sort(fs.begin(), fs.end(), [this](const Factor& x, const Factor& y) {
            const int c = compare_nodes(g_, x.base, y.base);
            return c != 0 ? c < 0 : x.power < y.power;
        });
    }

    // Combine like factors and like terms; drop cancelled terms where that is honest.
    // Like factors and like terms are found by node id (cheap and canonical: equal subterms
    // are one node); the printed order is decided later, in monomial_node and rebuild.
    static constexpr bool factor_id_less(const Factor& x, const Factor& y) {
        return x.base != y.base ? x.base < y.base : x.power < y.power;
    }
    static constexpr bool factors_id_less(const Monomial& x, const Monomial& y) {
        return std::lexicographical_compare(x.factors.begin(), x.factors.end(), y.factors.begin(), y.factors.end(), factor_id_less);
    }

    constexpr void normalize(std::vector<Monomial>& terms) {
        for (Monomial& m : terms) {
            std::sort(m.factors.begin(), m.factors.end(), factor_id_less);
            std::vector<Factor> merged;
            for (const Factor& f : m.factors) {
                const Node& base = g_[f.base];
                if (base.op == Op::constant && f.power == -1 && divides_exactly(m.coef, base.value)) {
                    m.coef /= base.value;  // 3 * x / 3, once distributing brought them together
                    continue;
                }
                if (!merged.empty() && merged.back().base == f.base) {
                    Factor& last = merged.back();
                    const bool same_sign = (last.power > 0) == (f.power > 0);
                    const Facts& fx = facts_.of(g_, f.base);
                    if (same_sign || (fx.has(Fact::positive) && fx.has(Fact::finite))) {
                        last.power += f.power;
                        if (last.power == 0) merged.pop_back();
                        continue;
                    }
                }
                merged.push_back(f);
            }
            m.factors = std::move(merged);
        }
        std::sort(terms.begin(), terms.end(), factors_id_less);
        std::vector<Monomial> out;
        for (Monomial& m : terms) {
            if (!out.empty() && out.back().factors == m.factors) out.back().coef += m.coef;
            else out.push_back(std::move(m));
        }
        terms.clear();
        for (Monomial& m : out) {
            bool all_finite = true;
            for (const Factor& f : m.factors) all_finite = all_finite && finite(f.base);
            if (m.coef == 0 && all_finite) continue;
            terms.push_back(std::move(m));
        }
    }

    // Applies one two-term rule (head + or -) to a pair of terms that share all other factors.
    constexpr bool apply_pair_rule(std::vector<Monomial>& terms, std::vector<std::string_view>& fired) {
        for (const Rule* rp : rules::rule_index.two_term_rules()) {
            const Rule& r = *rp;
            const Node& head = r.lhs.nodes[static_cast<std::size_t>(r.lhs.root)];
            const double sign = head.op == Op::add ? 1.0 : -1.0;
            // only terms with a factor of the pattern's head op can take part: for a long
            // sum without sigmoids this skips the quadratic pairing altogether
            const Op first = r.lhs.nodes[static_cast<std::size_t>(head.a)].op;
            const Op second = r.lhs.nodes[static_cast<std::size_t>(head.b)].op;
            std::vector<std::size_t> as, bs;
            for (std::size_t i = 0; i < terms.size(); ++i)
                for (const Factor& f : terms[i].factors) {
                    if (f.power != 1) continue;
                    if (g_[f.base].op == first) as.push_back(i);
                    if (g_[f.base].op == second) bs.push_back(i);
                }
            for (std::size_t i : as)
                for (std::size_t j : bs) {
                    if (i == j || terms[i].coef != sign * terms[j].coef) continue;
                    if (try_pair(r, head, terms, i, j)) {
                        fired.push_back(r.name);
                        return true;
                    }
                }
        }
        return false;
    }

    // Whether a and b are equal but for factor ia of a and factor ib of b.
    static constexpr bool same_but(const std::vector<Factor>& a, std::size_t ia, const std::vector<Factor>& b, std::size_t ib) {
        if (a.size() != b.size()) return false;
        for (std::size_t x = 0, y = 0; x < a.size(); ++x, ++y) {
            if (x == ia) ++x;
            if (y == ib) ++y;
            if (x >= a.size() || y >= b.size()) break;
            if (!(a[x] == b[y])) return false;
        }
        return true;
    }

    constexpr bool try_pair(const Rule& r, const Node& head, std::vector<Monomial>& terms, std::size_t i, std::size_t j) {
        const Monomial& ti = terms[i];
        const Monomial& tj = terms[j];
        if (ti.factors.size() != tj.factors.size()) return false;
        for (std::size_t fi = 0; fi < ti.factors.size(); ++fi) {
            if (ti.factors[fi].power != 1) continue;
            Bindings first;
            if (!match(r.lhs, head.a, g_, ti.factors[fi].base, first)) continue;  // cheap: fails on the op
            for (std::size_t fj = 0; fj < tj.factors.size(); ++fj) {
                if (tj.factors[fj].power != 1) continue;
                Bindings b = first;
                if (!match(r.lhs, head.b, g_, tj.factors[fj].base, b) || !same_but(ti.factors, fi, tj.factors, fj) ||
                    !guards_hold(r, g_, b, facts_))
                    continue;
                Monomial m{ti.coef, ti.factors};
                m.factors.erase(m.factors.begin() + static_cast<std::ptrdiff_t>(fi));
                add_factors(instantiate(r.rhs, r.rhs.root, g_, b), 1.0, m);
                std::vector<Monomial> replaced;
                distribute(std::move(m), replaced);
                std::vector<Monomial> next;
                for (std::size_t k = 0; k < terms.size(); ++k)
                    if (k != i && k != j) next.push_back(std::move(terms[k]));
                for (Monomial& x : replaced) next.push_back(std::move(x));
                terms = std::move(next);
                return true;
            }
        }
        return false;
    }

    constexpr int chain(Op op, const std::vector<int>& ids) {
        int acc = ids.front();
        for (std::size_t i = 1; i < ids.size(); ++i) acc = g_.apply(op, acc, ids[i]);
        return acc;
    }

    // coef * factors, for coef >= 0: coefficient, then scalar factors, then vector factors,
    // then one division by the factors with negative powers.
    constexpr int monomial_node(double coef, std::vector<Factor> factors) {
        sort_factors(factors);
        std::vector<int> scalars, vectors, den;
        if (coef != 1) scalars.push_back(g_.constant(coef));
        auto power_node = [this](const Factor& f, double p) {
            return p == 1 ? f.base : g_.apply(Op::pow, f.base, g_.constant(p));
        };
        for (const Factor& f : factors) {
            if (f.power < 0) den.push_back(power_node(f, -f.power));
            else (g_[f.base].shape == Shape::vector ? vectors : scalars).push_back(power_node(f, f.power));
        }
        // a one-hot factor closes the product, where sum(onehot(y) * x) -> at(x, y) finds it
        // (std::stable_partition is not constexpr in C++20)
        std::vector<int> ordered;
        for (int pass = 0; pass < 2; ++pass)
            for (int id : vectors)
                if ((g_[id].op == Op::onehot) == (pass == 1)) ordered.push_back(id);
        vectors = std::move(ordered);
        int num = -1;
        if (!scalars.empty() && !vectors.empty()) num = g_.apply(Op::mul, chain(Op::mul, scalars), chain(Op::mul, vectors));
        else if (!scalars.empty()) num = chain(Op::mul, scalars);
        else if (!vectors.empty()) num = chain(Op::mul, vectors);
        else num = g_.constant(coef);
        return den.empty() ? num : g_.apply(Op::div, num, chain(Op::mul, den));
    }

    // -(a - b) * x reads better, and computes the same, as (b - a) * x: a negative term with a
    // difference among its factors takes the sign into that difference.
    constexpr Monomial absorb_sign(Monomial m) {
        if (m.coef >= 0) return m;
        for (Factor& f : m.factors)
            if (f.power == 1 && g_[f.base].op == Op::sub) {
                const Node d = g_[f.base];
                f.base = g_.apply(Op::sub, d.b, d.a);
                m.coef = -m.coef;
                return m;
            }
        return m;
    }

    constexpr int rebuild(const std::vector<Monomial>& terms) {
        struct Built {
            int id;
            bool constant;
        };
        std::vector<Built> pos, neg;
        for (const Monomial& term : terms) {
            const Monomial m = absorb_sign(term);
            const bool negative = m.coef < 0;
            const int id = monomial_node(negative ? -m.coef : m.coef, m.factors);
            (negative ? neg : pos).push_back(Built{id, m.factors.empty()});
        }
        // constants lead the added terms and close the subtracted ones: 1 - p, exp(x) - 1
        auto order = [this](bool constant_first) {
            return [this, constant_first](const Built& x, const Built& y) {
                if (x.constant != y.constant) return constant_first ? x.constant : y.constant;
                return compare_nodes(g_, x.id, y.id) < 0;
            };
        };
        std::sort(pos.begin(), pos.end(), order(true));
        std::sort(neg.begin(), neg.end(), order(false));
        if (pos.empty() && neg.empty()) return g_.constant(0);
        int acc = pos.empty() ? g_.apply(Op::neg, neg.front().id) : pos.front().id;
        for (std::size_t i = 1; i < pos.size(); ++i) acc = g_.apply(Op::add, acc, pos[i].id);
        for (std::size_t i = pos.empty() ? 1 : 0; i < neg.size(); ++i) acc = g_.apply(Op::sub, acc, neg[i].id);
        return acc;
    }
};

}  // namespace lossjit
