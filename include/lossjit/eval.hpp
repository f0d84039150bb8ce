// The reference evaluator: computes any node of a Graph for one row in long double, from values
// bound by name. It is the oracle of every test (simplifier rules, gradients, the JIT), so it is
// written for clarity and care at the edges (+-inf, NaN), not for speed.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lossjit/error.hpp"
#include "lossjit/graph.hpp"

namespace lossjit {

// One row's inputs, by name: vectors (logits, probs, weights) and scalars (scalar inputs,
// params, labels as whole numbers).
class RowValues {
public:
    RowValues& set(std::string_view name, std::vector<long double> v) {
        for (auto& [n, x] : vectors_)
            if (n == name) {
                x = std::move(v);
                return *this;
            }
        vectors_.emplace_back(std::string(name), std::move(v));
        return *this;
    }
    RowValues& set(std::string_view name, long double s) {
        for (auto& [n, x] : scalars_)
            if (n == name) {
                x = s;
                return *this;
            }
        scalars_.emplace_back(std::string(name), s);
        return *this;
    }
    const std::vector<long double>* vector(std::string_view name) const {
        for (auto& [n, x] : vectors_)
            if (n == name) return &x;
        return nullptr;
    }
    const long double* scalar(std::string_view name) const {
        for (auto& [n, x] : scalars_)
            if (n == name) return &x;
        return nullptr;
    }
    // K: the length of the bound vectors, which must agree; `fallback` when none is bound.
    std::size_t row_length(std::size_t fallback = 0) const {
        std::size_t k = 0;
        for (auto& [n, x] : vectors_) {
            if (k != 0 && x.size() != k)
                throw error("evaluate: vector '" + n + "' has " + std::to_string(x.size()) +
                            " elements, others have " + std::to_string(k));
            k = x.size();
        }
        return k != 0 ? k : fallback;
    }

private:
    std::vector<std::pair<std::string, std::vector<long double>>> vectors_;
    std::vector<std::pair<std::string, long double>> scalars_;
};

// A node's value for one row: a scalar, or a vector of K values.
struct Value {
    bool is_vector = false;
    long double s = 0;
    std::vector<long double> v;

    long double operator[](std::size_t i) const { return is_vector ? v[i] : s; }
};

namespace detail {

inline long double logsumexp(const std::vector<long double>& x) {
    long double m = -std::numeric_limits<long double>::infinity();
    for (long double e : x) {
        if (std::isnan(e)) return e;
        m = e > m ? e : m;
    }
    // an all -inf row has an empty sum: log(0) = -inf; an +inf entry dominates
    if (std::isinf(m)) return m;
    long double s = 0;
    for (long double e : x) s += std::exp(e - m);
    return m + std::log(s);
}

inline std::size_t label_index(long double y, std::size_t k) {
    if (!(y >= 0) || y >= static_cast<long double>(k) || y != std::floor(y))
        throw error("evaluate: label " + std::to_string(static_cast<double>(y)) + " is outside [0, " +
                    std::to_string(k) + ")");
    return static_cast<std::size_t>(y);
}

}  // namespace detail

// Every node of `g` for one row; nodes are in topological order, so one forward sweep suffices.
inline std::vector<Value> evaluate_all(const Graph& g, const RowValues& row, std::size_t k_fallback = 0) {
    const std::size_t k = row.row_length(k_fallback);
    std::vector<Value> val(static_cast<std::size_t>(g.size()));
    auto as_vector = [k](const Value& x) {
        return x.is_vector ? x.v : std::vector<long double>(k, x.s);
    };
    for (int i = 0; i < g.size(); ++i) {
        const Node& n = g[i];
        Value& out = val[static_cast<std::size_t>(i)];
        out.is_vector = n.shape == Shape::vector;
        const OpInfo& d = info(n.op);
        switch (d.cls) {
        case OpClass::leaf:
            if (n.op == Op::constant) out.s = n.value;
            else if (n.op == Op::row_length) out.s = static_cast<long double>(k);
            else if (n.op == Op::wildcard) throw error("evaluate: a pattern wildcard cannot be evaluated");
            else if (out.is_vector) {
                const auto* v = row.vector(n.name.view());
                if (v == nullptr) throw error("evaluate: no value bound for vector input '" + std::string(n.name.view()) + "'");
                out.v = *v;
            } else {
                const auto* s = row.scalar(n.name.view());
                if (s == nullptr) throw error("evaluate: no value bound for input '" + std::string(n.name.view()) + "'");
                out.s = *s;
            }
            break;
        case OpClass::elementwise: {
            const Value& a = val[static_cast<std::size_t>(n.a)];
            if (!out.is_vector) {
                out.s = d.arity == 1 ? d.scalar1(a.s) : d.scalar2(a.s, val[static_cast<std::size_t>(n.b)].s);
                break;
            }
            out.v.resize(k);
            for (std::size_t j = 0; j < k; ++j)
                out.v[j] = d.arity == 1 ? d.scalar1(a[j]) : d.scalar2(a[j], val[static_cast<std::size_t>(n.b)][j]);
            break;
        }
        case OpClass::vector_map: {
            const Value& a = val[static_cast<std::size_t>(n.a)];
            out.v.assign(k, 0.0L);
            if (n.op == Op::onehot) {
                out.v[detail::label_index(a.s, k)] = 1;
                break;
            }
            const std::vector<long double> x = as_vector(a);
            const long double lse = detail::logsumexp(x);
            // (x - max) - log(sum): x - lse would lose log K where |x| is huge (1e30 + 8 = 1e30)
            long double m = -std::numeric_limits<long double>::infinity(), s = 0;
            for (long double e : x) m = e > m ? e : m;
            if (std::isfinite(lse))
                for (long double e : x) s += std::exp(e - m);
            for (std::size_t j = 0; j < k; ++j) {
                // an all -inf row has no distribution: NaN, like the formula e^v / sum(e^v)
                const long double l = std::isinf(lse) && lse < 0 ? std::numeric_limits<long double>::quiet_NaN()
                                      : std::isfinite(lse)       ? (x[j] - m) - std::log(s)
                                                                 : x[j] - lse;
                out.v[j] = n.op == Op::softmax ? std::exp(l) : l;
            }
            break;
        }
        case OpClass::reduction: {
            const std::vector<long double> x = as_vector(val[static_cast<std::size_t>(n.a)]);
            switch (n.op) {
            case Op::sum:
            case Op::mean: {
                long double s = 0;
                for (long double e : x) s += e;
                out.s = n.op == Op::sum ? s : s / static_cast<long double>(k);
                break;
            }
            case Op::dot: {
                const Value& b = val[static_cast<std::size_t>(n.b)];
                long double s = 0;
                for (std::size_t j = 0; j < k; ++j) s += ref::mul(x[j], b[j]);
                out.s = s;
                break;
            }
            case Op::logsumexp: out.s = detail::logsumexp(x); break;
            case Op::amax: {
                long double m = -std::numeric_limits<long double>::infinity();
                for (long double e : x) m = std::isnan(e) || std::isnan(m) ? std::numeric_limits<long double>::quiet_NaN() : (e > m ? e : m);
                out.s = m;
                break;
            }
            case Op::at: out.s = x[detail::label_index(val[static_cast<std::size_t>(n.b)].s, k)]; break;
            default: throw error("evaluate: unhandled reduction " + std::string(d.name));
            }
            break;
        }
        }
    }
    return val;
}

inline Value evaluate(const Graph& g, int root, const RowValues& row, std::size_t k_fallback = 0) {
    return std::move(evaluate_all(g, row, k_fallback)[static_cast<std::size_t>(root)]);
}

}  // namespace lossjit
