#include "ce_measure.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <tuple>

namespace bench {

// ---- results -----------------------------------------------------------------------------------

bool Key::operator<(const Key& o) const {
    return std::tie(contender, shape, pass, dtype, threads) < std::tie(o.contender, o.shape, o.pass, o.dtype, o.threads);
}

static Key key_of(const std::string& contender, const Row& r) { return {contender, r.shape.name(), r.pass, r.dtype, r.threads}; }

void Results::record(const std::string& contender, const Row& r, double gbps, const std::string& failure) {
    if (!failure.empty())
        failures_.push_back("FAILED: " + contender + " " + r.shape.name() + " " + r.pass + " " + r.dtype + " " +
                            std::to_string(r.threads) + " thread(s): " + failure);
    const Key k = key_of(contender, r);
    gbps_[k] = gbps;
    order_.push_back(k);
}

void Results::skip(const std::string& contender, const Row& r) { skipped_.insert(key_of(contender, r)); }

double Results::get(const Key& k) const {
    auto it = gbps_.find(k);
    return it == gbps_.end() ? nan_v : it->second;
}

bool Results::ran(const std::string& c, const Row& r) const { return gbps_.count(key_of(c, r)) != 0; }
bool Results::skipped(const std::string& c, const Row& r) const { return skipped_.count(key_of(c, r)) != 0; }

// ---- data and reference ------------------------------------------------------------------------

void make_data(Data& d, const Shape& s, std::uint64_t seed) {
    d.N = s.N;
    d.K = s.K;
    const std::size_t n = s.N * s.K;
    d.x.assign(n, 0.0f);
    d.xb.assign(n, lossjit::bf16{});
    d.g.assign(n, 0.0f);
    d.out.assign(n, 0.0f);
    d.gb.assign(n, lossjit::bf16{});
    d.outb.assign(n, lossjit::bf16{});
    d.p.assign(n, 0.0f);
    d.y.assign(s.N, 0);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (std::size_t i = 0; i < n; ++i) {
        d.xb[i] = lossjit::bf16::from_float(normal(rng));
        d.x[i] = d.xb[i].to_float();
    }
    for (auto& l : d.y) l = static_cast<std::int64_t>(rng() % s.K);
    // the reference: a careful double-precision loop
    double loss = 0, sx = 0, sa = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, sx, sa)
    for (std::size_t r = 0; r < s.N; ++r) {
        const float* xr = &d.x[r * s.K];
        double m = -INFINITY;
        for (std::size_t j = 0; j < s.K; ++j) m = std::max(m, static_cast<double>(xr[j]));
        double z = 0;
        for (std::size_t j = 0; j < s.K; ++j) {
            z += std::exp(xr[j] - m);
            sx += xr[j];
            sa += std::fabs(xr[j]);
        }
        const double lse = m + std::log(z);
        loss += lse - xr[d.y[r]];
        for (std::size_t j = 0; j < s.K; ++j) d.p[r * s.K + j] = static_cast<float>(std::exp(xr[j] - lse));
    }
    d.loss = loss / static_cast<double>(s.N);
    d.sum_x = sx;
    d.sum_abs_x = sa;
}

// Tolerances. Loss: relative 1e-4 of the mean (fp32 math; the bf16 inputs hold the same values).
// Gradient, compared as N * grad against p - onehot (p = softmax): the error may be `rtol` of
// max(p, |p - onehot|) plus 1e-9 for entries that underflow. Relative to p, not to p - 1, because
// at the label p - 1 cancels: with p = 0.995 an fp32 logsumexp off by half an ulp already puts
// p - 1 off by 1e-4 of itself. fp32: 1e-3 (a sequential fp32 sum over K = 256000 terms, the
// naive loop's, is off by ~2e-4 here); bf16 storage: 5e-3 (8 significant bits: rounding is at
// most 2^-9 relative). Wrong results (a missing -1, a wrong scale, rows not written) are off by
// far more.
constexpr double loss_rtol = 1e-4, grad_rtol_f32 = 1e-3, grad_rtol_bf16 = 5e-3, grad_atol = 1e-9;

std::string check_loss(double got, const Data& d) {
    const double err = std::fabs(got - d.loss);
    if (std::isfinite(got) && err <= loss_rtol * std::max(1.0, std::fabs(d.loss))) return "";
    char buf[160];
    std::snprintf(buf, sizeof buf, "mean loss %.9g, reference %.9g (error %.3g)", got, d.loss, err);
    return buf;
}

static float value_of(float v) { return v; }
static float value_of(lossjit::bf16 v) { return v.to_float(); }

template <class G>
static std::string check_grad(const G* g, const Data& d, double rtol) {
    const double n = static_cast<double>(d.N);
    double worst = 0;
    std::size_t wr = 0, wj = 0;
    double wgot = 0, wwant = 0;
    for (std::size_t r = 0; r < d.N; ++r)
        for (std::size_t j = 0; j < d.K; ++j) {
            const std::size_t i = r * d.K + j;
            const double want = static_cast<double>(d.p[i]) - (static_cast<std::size_t>(d.y[r]) == j ? 1.0 : 0.0);
            const double got = static_cast<double>(value_of(g[i])) * n;
            const double e = std::fabs(got - want) / (rtol * std::max(static_cast<double>(d.p[i]), std::fabs(want)) + grad_atol);
            if (!(e <= worst)) {  // NaN counts as worst
                worst = std::isnan(e) ? INFINITY : e;
                wr = r, wj = j, wgot = got, wwant = want;
                if (std::isinf(worst)) goto done;
            }
        }
done:
    if (worst <= 1.0) return "";
    char buf[200];
    std::snprintf(buf, sizeof buf, "gradient at row %zu, column %zu: N * grad = %.9g, reference %.9g (%.3g x tolerance)", wr, wj, wgot,
                  wwant, worst);
    return buf;
}

std::string check_grad(const float* g, const Data& d) { return check_grad(g, d, grad_rtol_f32); }
std::string check_grad(const lossjit::bf16* g, const Data& d) { return check_grad(g, d, grad_rtol_bf16); }

// ---- timing ------------------------------------------------------------------------------------

std::vector<double> measure(const Settings& st, const std::vector<Cell>& cells, std::vector<std::string>& failures) {
    using clk = std::chrono::steady_clock;
    const std::size_t n = cells.size();
    std::vector<double> median(n, nan_v);
    failures.assign(n, "");
    std::vector<int> per_round(n, 0);  // 0: not timed (failed)
    const int rounds = std::max(1, st.min_reps);
    auto once = [](const Contender& c) {
        const auto t0 = clk::now();
        (void)c.run();
        return std::chrono::duration<double>(clk::now() - t0).count();
    };
    for (std::size_t i = 0; i < n; ++i) {
        const Contender& c = cells[i].c;
        try {
            if (c.enter) c.enter();
            if (c.poison) c.poison();
            failures[i] = c.verify(c.run());
            if (!failures[i].empty()) continue;
            double spent = 0, last = 0;
            do {
                last = once(c);
                spent += last;
            } while (spent < st.warmup_s);
            const double reps = std::clamp(st.target_s / std::max(last, 1e-9), static_cast<double>(st.min_reps), static_cast<double>(st.max_reps));
            per_round[i] = static_cast<int>(std::ceil(reps / rounds));
        } catch (const std::exception& e) {
            failures[i] = std::string("threw: ") + e.what();
        }
    }
    std::vector<std::vector<double>> t(n);
    for (int r = 0; r < rounds; ++r)
        for (std::size_t i = 0; i < n; ++i) {
            if (per_round[i] == 0) continue;
            const Contender& c = cells[i].c;
            try {
                if (c.enter) c.enter();
                for (int k = 0; k < per_round[i]; ++k) t[i].push_back(once(c));
            } catch (const std::exception& e) {
                failures[i] = std::string("threw: ") + e.what();
                per_round[i] = 0;
                t[i].clear();
            }
        }
    for (std::size_t i = 0; i < n; ++i) {
        if (t[i].empty()) continue;
        std::nth_element(t[i].begin(), t[i].begin() + static_cast<std::ptrdiff_t>(t[i].size() / 2), t[i].end());
        median[i] = t[i][t[i].size() / 2];
    }
    return median;
}

}  // namespace bench
