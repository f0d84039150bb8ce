// Batch semantics of Kernel::run (kernel.hpp): reduction none / sum / mean with the gradient
// scaled as PyTorch's backward, ignore_index (default -100), the class-weighted mean, every row
// ignored (0, not NaN), fully masked rows (all -inf: skipped inside the kernel, the mean's
// gradients rescaled), a target class at -inf, NaN inputs kept NaN, errors raised before
// anything is written, and the bf16 gradient of a confident true class.
#include <lossjit/compile.hpp>
#include <lossjit/losses.hpp>

#include "common.hpp"

using namespace lossjit;
using Catch::Matchers::Contains;
namespace L = lossjit::losses;

namespace {

constexpr auto u = dsl::logits<"u">;
constexpr double inf = std::numeric_limits<double>::infinity();
const float qnan = std::numeric_limits<float>::quiet_NaN();

// N rows of K logits with labels; outputs poisoned with NaN (an unwritten element shows).
struct Rows {
    std::size_t N, K;
    std::vector<float> u, g, loss, w;
    std::vector<std::int64_t> y;
    Rows(std::size_t n, std::size_t k, std::uint32_t seed = 1) : N(n), K(k), u(n * k), g(n * k, qnan), loss(n, qnan), w(k), y(n) {
        std::mt19937 rng(seed);
        std::normal_distribution<float> nd(0, 2);
        std::uniform_real_distribution<float> ud(0.25f, 2.0f);
        for (float& x : u) x = nd(rng);
        for (float& x : w) x = ud(rng);
        for (auto& l : y) l = static_cast<std::int64_t>(rng() % k);
    }
    Batch batch(bool weights = false) {
        Batch b;
        b.bind("u", matrix(u.data(), N, K)).bind("y", column(y.data(), N)).bind("grad.u", matrix(g.data(), N, K)).bind("loss", column(loss.data(), N));
        if (weights) b.bind("w", shared_row(w.data(), K));
        return b;
    }
    void poison() {
        std::fill(g.begin(), g.end(), qnan);
        std::fill(loss.begin(), loss.end(), qnan);
    }
    const float* row(std::size_t r) const { return u.data() + r * K; }
    float grad(std::size_t r, std::size_t j) const { return g[r * K + j]; }
};

long double lse(const float* x, std::size_t K) {
    long double m = -INFINITY;
    for (std::size_t j = 0; j < K; ++j) m = std::max<long double>(m, x[j]);
    if (std::isinf(m) && m < 0) return m;
    long double s = 0;
    for (std::size_t j = 0; j < K; ++j) s += std::exp(static_cast<long double>(x[j]) - m);
    return m + std::log(s);
}
// cross-entropy of one row and its gradient (softmax - onehot)
long double ce(const float* x, std::size_t K, std::int64_t y) { return lse(x, K) - x[y]; }
long double ce_grad(const float* x, std::size_t K, std::int64_t y, std::size_t j) {
    return std::exp(static_cast<long double>(x[j]) - lse(x, K)) - (static_cast<std::int64_t>(j) == y ? 1 : 0);
}

bool near(long double got, long double want, double rel = 3e-5, double abs = 1e-6) {
    if (std::isnan(want)) return std::isnan(got);
    if (std::isinf(want)) return got == want;
    return std::isfinite(got) && std::fabs(got - want) <= rel * std::fabs(want) + abs;
}

// Every gradient row equals f_r * (softmax - onehot); the row's loss column equals l_r * CE.
void check_ce_rows(const Rows& d, const std::function<long double(std::size_t)>& f, const std::function<long double(std::size_t)>& l,
                   double rel = 3e-5) {
    for (std::size_t r = 0; r < d.N; ++r) {
        INFO("row " << r);
        const long double fr = f(r), lr = l(r);
        CHECK(near(d.loss[r], lr == 0 ? 0.0L : lr * ce(d.row(r), d.K, d.y[r]), rel));
        for (std::size_t j = 0; j < d.K; ++j) {
            INFO("element " << j);
            const long double want = fr == 0 ? 0.0L : fr * ce_grad(d.row(r), d.K, d.y[r], j);
            REQUIRE(near(d.grad(r, j), want, rel, 1e-7 * static_cast<double>(std::fabs(fr))));
        }
    }
}

Kernel ce_kernel(std::size_t K = 0, CompileOptions o = {}) {
    o.row_length = K;
    return compile(L::cross_entropy(), wrt(u), o);
}

}  // namespace

TEST_CASE("batch: reduction none, sum and mean; the gradient scaled as PyTorch's backward") {
    Rows d(7, 5, 11);
    d.y[4] = -100;  // ignored by default
    const Kernel k = ce_kernel();
    long double tot = 0;
    for (std::size_t r = 0; r < d.N; ++r)
        if (d.y[r] != -100) tot += ce(d.row(r), d.K, d.y[r]);
    auto counted = [&](std::size_t r) -> long double { return d.y[r] == -100 ? 0 : 1; };

    for (Reduction red : {Reduction::none, Reduction::sum}) {
        INFO("reduction " << to_string(red));
        d.poison();
        Batch b = d.batch();
        const Result res = k.run(b.reduction(red));
        CHECK(res.reduction == red);
        CHECK(res.rows == 7);
        CHECK(res.ignored == 1);
        CHECK(res.masked == 0);
        CHECK(res.counted == 6);
        CHECK(res.loss() == Approx(static_cast<double>(tot)).epsilon(1e-5));
        CHECK(res.sum("loss") == Approx(static_cast<double>(tot)).epsilon(1e-5));
        CHECK(res.mean("loss") == Approx(static_cast<double>(tot / 6)).epsilon(1e-5));
        check_ce_rows(d, counted, counted);
    }
    d.poison();
    Batch b = d.batch();
    const Result res = k.run(b.reduction(Reduction::mean));
    CHECK(res.denominator == 6);
    CHECK(res.loss() == Approx(static_cast<double>(tot / 6)).epsilon(1e-5));
    CHECK(res.reduced("loss") == res.loss());
    // the per-row loss column holds the unreduced values; the gradients carry 1/6
    check_ce_rows(d, [&](std::size_t r) { return counted(r) / 6; }, counted);

    // a user scale multiplies the reduction's
    d.poison();
    Batch c = d.batch();
    k.run(c.reduction(Reduction::mean).scale("grad.u", 3.0));
    check_ce_rows(d, [&](std::size_t r) { return counted(r) * 3 / 6; }, counted);
}

TEST_CASE("batch: ignore_index: the default -100, another value, none; ignored rows are 0 and not read") {
    Rows d(9, 6, 3);
    d.y[1] = -100;
    d.y[6] = -100;
    for (std::size_t j = 0; j < d.K; ++j) d.u[6 * d.K + j] = qnan;  // an ignored row is not read
    const Kernel k = ce_kernel(6);
    Batch b = d.batch();
    Result res = k.run(b.reduction(Reduction::mean));
    CHECK(res.ignored == 2);
    CHECK(res.counted == 7);
    auto counted = [&](std::size_t r) -> long double { return d.y[r] == -100 ? 0 : 1; };
    check_ce_rows(d, [&](std::size_t r) { return counted(r) / 7; }, counted);
    CHECK(std::isfinite(res.loss()));

    // i32 labels
    CompileOptions o;
    o.label_dtype = DType::i32;
    const Kernel k32 = ce_kernel(6, o);
    std::vector<std::int32_t> y32(d.y.begin(), d.y.end());
    d.poison();
    Batch b32 = d.batch();
    b32.bind("y", column(y32.data(), d.N));
    res = k32.run(b32.reduction(Reduction::mean));
    CHECK(res.ignored == 2);
    check_ce_rows(d, [&](std::size_t r) { return counted(r) / 7; }, counted);

    // another ignore_index (a valid class, as PyTorch allows); -100 is then out of range
    d.y[1] = d.y[6] = 0;
    for (std::size_t j = 0; j < d.K; ++j) d.u[6 * d.K + j] = 0.5f;
    d.y[3] = 2;
    d.poison();
    Batch c = d.batch();
    res = k.run(c.ignore_index(2).reduction(Reduction::sum));
    std::size_t twos = 0;
    for (auto y : d.y) twos += y == 2;
    CHECK(res.ignored == twos);
    check_ce_rows(d, [&](std::size_t r) -> long double { return d.y[r] == 2 ? 0 : 1; }, [&](std::size_t r) -> long double { return d.y[r] == 2 ? 0 : 1; });
    d.y[0] = -100;
    Batch e = d.batch();
    CHECK_THROWS_WITH(k.run(e.ignore_index(2)), Contains("label 'y' at row 0 is -100, outside [0, 6) and not ignore_index 2"));
    // none ignored
    Batch f = d.batch();
    CHECK_THROWS_WITH(k.run(f.no_ignore_index()), Contains("label 'y' at row 0 is -100, outside [0, 6)"));
    d.y[0] = 1;
    d.poison();
    Batch h = d.batch();
    res = k.run(h.no_ignore_index());
    CHECK(res.ignored == 0);
    check_ce_rows(d, [](std::size_t) { return 1.0L; }, [](std::size_t) { return 1.0L; });

    // a kernel without a label input: the default does not apply, an explicit value is an error
    const Kernel soft = compile(L::soft_cross_entropy(), wrt(u), CompileOptions{});
    std::vector<float> p(d.N * d.K, 1.0f / static_cast<float>(d.K));
    Batch s;
    s.bind("u", matrix(d.u.data(), d.N, d.K)).bind("p", matrix(p.data(), d.N, d.K)).bind("grad.u", matrix(d.g.data(), d.N, d.K));
    CHECK(soft.run(s).counted == d.N);
    CHECK_THROWS_WITH(soft.run(s.ignore_index(-100)), Contains("ignore_index is set, but the kernel has no label input"));
}

TEST_CASE("batch: every row ignored gives loss 0 and gradient 0, not NaN (a deliberate difference: PyTorch gives NaN)") {
    Rows d(5, 7, 5);
    for (auto& y : d.y) y = -100;
    const Kernel k = ce_kernel();
    for (Reduction red : {Reduction::none, Reduction::sum, Reduction::mean}) {
        d.poison();
        Batch b = d.batch();
        const Result res = k.run(b.reduction(red));
        CHECK(res.loss() == 0);
        CHECK(res.mean("loss") == 0);
        CHECK(res.counted == 0);
        CHECK(res.ignored == 5);
        for (float x : d.g) REQUIRE(x == 0);
        for (float x : d.loss) REQUIRE(x == 0);
    }
    // and with class weights
    const Kernel kw = compile(L::weighted_cross_entropy(), wrt(u), CompileOptions{});
    d.poison();
    Batch b = d.batch(true);
    const Result res = kw.run(b.weighted_mean("w"));
    CHECK(res.loss() == 0);
    CHECK(res.denominator == 0);
    for (float x : d.g) REQUIRE(x == 0);
}

TEST_CASE("batch: the class-weighted mean divides by the sum of w[y] over the counted rows") {
    Rows d(8, 5, 7);
    d.y[2] = -100;
    auto wy = [&](std::size_t r) -> long double { return d.y[r] == -100 ? 0 : d.w[static_cast<std::size_t>(d.y[r])]; };
    long double W = 0, tot = 0;
    for (std::size_t r = 0; r < d.N; ++r) {
        W += wy(r);
        if (d.y[r] != -100) tot += wy(r) * ce(d.row(r), d.K, d.y[r]);
    }
    const Kernel k = compile(L::weighted_cross_entropy(), wrt(u), CompileOptions{});
    Batch b = d.batch(true);
    Result res = k.run(b.weighted_mean("w"));
    CHECK(res.reduction == Reduction::mean);
    CHECK(res.denominator == Approx(static_cast<double>(W)).epsilon(1e-6));
    CHECK(res.loss() == Approx(static_cast<double>(tot / W)).epsilon(1e-5));
    CHECK(res.counted == 7);
    check_ce_rows(d, [&](std::size_t r) { return wy(r) / W; }, wy);

    // weights given per row (a matrix) select the row's own weights
    std::vector<float> wm(d.N * d.K);
    for (std::size_t r = 0; r < d.N; ++r)
        for (std::size_t j = 0; j < d.K; ++j) wm[r * d.K + j] = d.w[j];
    d.poison();
    Batch m = d.batch();
    m.bind("w", matrix(wm.data(), d.N, d.K));
    res = k.run(m.weighted_mean("w", "y"));
    CHECK(res.denominator == Approx(static_cast<double>(W)).epsilon(1e-6));
    check_ce_rows(d, [&](std::size_t r) { return wy(r) / W; }, wy);

    // label smoothing with weights and ignore_index (PyTorch: the same denominator, sum of w[y])
    CompileOptions o;
    o.params = {{"label_smoothing", 0.2}};
    const Kernel ls = compile(L::weighted_label_smoothing_cross_entropy(), wrt(u), o);
    d.poison();
    Batch l = d.batch(true);
    res = ls.run(l.weighted_mean("w"));
    long double want = 0;
    long double sw = 0;
    for (float x : d.w) sw += x;
    for (std::size_t r = 0; r < d.N; ++r) {
        if (d.y[r] == -100) continue;
        const float* x = d.row(r);
        const long double z = lse(x, d.K);
        long double smooth = 0;
        for (std::size_t j = 0; j < d.K; ++j) smooth -= d.w[j] * (x[j] - z);
        want += 0.8L * wy(r) * (z - x[d.y[r]]) + 0.2L / static_cast<long double>(d.K) * smooth;
        for (std::size_t j = 0; j < d.K; ++j) {
            const long double pj = std::exp(x[j] - z);
            // d/du_j of -(1-e) w_y ls_y - e/K sum_k w_k ls_k
            const long double gj = 0.8L * wy(r) * (pj - (static_cast<std::int64_t>(j) == d.y[r])) +
                                   0.2L / static_cast<long double>(d.K) * (sw * pj - d.w[j]);
            REQUIRE(near(d.grad(r, j), gj / W));
        }
    }
    CHECK(res.loss() == Approx(static_cast<double>(want / W)).epsilon(1e-5));
    for (std::size_t j = 0; j < d.K; ++j) CHECK(d.grad(2, j) == 0);

    // misuse
    Batch x = d.batch(true);
    CHECK_THROWS_WITH(k.run(x.weighted_mean("v")), Contains("weighted_mean(\"v\")") && Contains("no weights input"));
    Batch z = d.batch(true);
    CHECK_THROWS_WITH(k.run(z.weighted_mean("w", "t")), Contains("no label input named 't'"));
}

TEST_CASE("batch: a fully masked row (all -inf) is skipped like an ignored row; the mean is rescaled") {
    using Lse = CompileOptions::Lse;
    struct Variant {
        std::size_t K;
        bool spec;
        Lse lse;
        std::size_t block;
    };
    const Variant vs[] = {{1, true, Lse::automatic, 0},   {5, true, Lse::two_pass, 0},  {5, false, Lse::online, 0},
                          {1000, true, Lse::two_pass, 0}, {1000, false, Lse::online, 0}, {1000, true, Lse::two_pass, 96},
                          {37, true, Lse::two_pass, 16}};
    for (const Variant& v : vs)
        for (bool weighted : {false, true}) {
            INFO("K " << v.K << " specialized " << v.spec << " lse " << static_cast<int>(v.lse) << " block " << v.block << " weighted "
                      << weighted);
            Rows d(9, v.K, static_cast<std::uint32_t>(v.K + weighted));
            d.y[5] = -100;
            for (std::size_t j = 0; j < d.K; ++j) d.u[3 * d.K + j] = -INFINITY;  // row 3: every class masked
            for (std::size_t j = 0; j < d.K; ++j) d.u[7 * d.K + j] = -INFINITY;  // and row 7
            CompileOptions o;
            o.row_length = v.spec ? v.K : 0;
            o.lse = v.lse;
            o.block = v.block;
            const Kernel k = weighted ? compile(L::weighted_cross_entropy(), wrt(u), o) : ce_kernel(o.row_length, o);
            auto skipped = [&](std::size_t r) { return r == 3 || r == 7 || r == 5; };
            auto f = [&](std::size_t r) -> long double {
                return skipped(r) ? 0 : weighted ? d.w[static_cast<std::size_t>(d.y[r])] : 1;
            };
            long double D = 0, tot = 0;
            for (std::size_t r = 0; r < d.N; ++r) {
                D += f(r);
                if (!skipped(r)) tot += f(r) * ce(d.row(r), d.K, d.y[r]);
            }
            for (Reduction red : {Reduction::sum, Reduction::mean}) {
                d.poison();
                Batch b = d.batch(weighted);
                if (weighted && red == Reduction::mean) b.weighted_mean("w");
                else b.reduction(red);
                const Result res = k.run(b);
                CHECK(res.masked == 2);
                CHECK(res.ignored == 1);
                CHECK(res.counted == 6);
                CHECK(d.loss[3] == 0);
                CHECK(d.loss[7] == 0);
                if (red == Reduction::mean) {
                    CHECK(res.denominator == Approx(static_cast<double>(D)).epsilon(1e-6));
                    CHECK(res.loss() == Approx(static_cast<double>(tot / D)).epsilon(1e-5));
                    check_ce_rows(d, [&](std::size_t r) { return f(r) / D; }, f);
                } else {
                    CHECK(res.loss() == Approx(static_cast<double>(tot)).epsilon(1e-5));
                    check_ce_rows(d, f, f);
                }
            }
        }
}

TEST_CASE("batch: masked rows in place, in bf16, over two threads, and every row masked") {
    const std::size_t N = 64, K = 300;
    Rows d(N, K, 9);
    for (std::size_t r : {0u, 17u, 40u, 63u})
        for (std::size_t j = 0; j < K; ++j) d.u[r * K + j] = -INFINITY;
    const Rows orig = d;
    auto f = [&](std::size_t r) -> long double { return r == 0 || r == 17 || r == 40 || r == 63 ? 0 : 1; };
    const Kernel k = ce_kernel();
    // in place over the logits, two threads
    Batch b;
    b.bind("u", matrix(d.u.data(), N, K)).bind("y", column(d.y.data(), N)).bind("grad.u", matrix(d.u.data(), N, K)).bind("loss", column(d.loss.data(), N));
    const Result res = k.run(b.threads(2).reduction(Reduction::mean));
    CHECK(res.masked == 4);
    CHECK(res.counted == 60);
    for (std::size_t r = 0; r < N; ++r)
        for (std::size_t j = 0; j < K; ++j) {
            const long double want = f(r) == 0 ? 0.0L : ce_grad(orig.row(r), K, orig.y[r], j) / 60;
            REQUIRE(near(d.u[r * K + j], want, 3e-5, 1e-9));
        }
    // bf16 logits and gradient
    CompileOptions o;
    o.dtype = DType::bf16;
    const Kernel kb = ce_kernel(0, o);
    std::vector<bf16> ub(N * K), gb(N * K, bf16{0x7fc1});
    for (std::size_t i = 0; i < N * K; ++i) ub[i] = bf16::from_float(orig.u[i]);
    Batch c;
    c.bind("u", matrix(ub.data(), N, K)).bind("y", column(d.y.data(), N)).bind("grad.u", matrix(gb.data(), N, K));
    const Result rb = kb.run(c.reduction(Reduction::mean));
    CHECK(rb.masked == 4);
    for (std::size_t r = 0; r < N; ++r) {
        std::vector<float> row(K);
        for (std::size_t j = 0; j < K; ++j) row[j] = ub[r * K + j].to_float();
        for (std::size_t j = 0; j < K; ++j) {
            const long double want = f(r) == 0 ? 0.0L : ce_grad(row.data(), K, d.y[r], j) / 60;
            REQUIRE(near(gb[r * K + j].to_float(), want, 1.0 / 128, 1e-9));
        }
    }
    // every row masked: loss 0, gradient 0, nothing counted
    std::fill(d.u.begin(), d.u.end(), -INFINITY);
    d.poison();
    Batch e = d.batch();
    const Result all = k.run(e.reduction(Reduction::mean));
    CHECK(all.masked == N);
    CHECK(all.counted == 0);
    CHECK(all.loss() == 0);
    for (float x : d.g) REQUIRE(x == 0);
    for (float x : d.loss) REQUIRE(x == 0);
}

TEST_CASE("batch: a target class at -inf with other classes finite: loss +inf, gradient finite") {
    Rows d(4, 6, 13);
    d.u[1 * d.K + static_cast<std::size_t>(d.y[1])] = -INFINITY;
    d.u[1 * d.K + (static_cast<std::size_t>(d.y[1]) + 1) % d.K] = -INFINITY;
    for (bool spec : {true, false}) {
        const Kernel k = ce_kernel(spec ? 6 : 0);
        d.poison();
        Batch b = d.batch();
        const Result res = k.run(b.reduction(Reduction::mean));
        CHECK(d.loss[1] == inf);
        CHECK(res.loss() == inf);
        CHECK(res.masked == 0);
        check_ce_rows(d, [](std::size_t) { return 0.25L; }, [](std::size_t) { return 1.0L; });
        for (float x : d.g) CHECK(std::isfinite(x));
    }
}

TEST_CASE("batch: NaN in a row's inputs makes that row's loss and gradient NaN, never hidden") {
    for (std::size_t K : {1, 5, 1000}) {
        INFO("K " << K);
        Rows d(6, K, 17);
        d.u[2 * K + K / 2] = qnan;                                          // one NaN logit
        for (std::size_t j = 0; j < K; ++j) d.u[4 * K + j] = -INFINITY;     // NaN among -inf logits:
        d.u[4 * K + K - 1] = qnan;                                          // not a masked row
        for (bool spec : {true, false}) {
            const Kernel k = ce_kernel(spec ? K : 0);
            d.poison();
            Batch b = d.batch();
            const Result res = k.run(b.reduction(Reduction::mean));
            CHECK(res.masked == 0);
            CHECK(std::isnan(res.loss()));
            for (std::size_t r : {2u, 4u}) {
                CHECK(std::isnan(d.loss[r]));
                for (std::size_t j = 0; j < K; ++j) REQUIRE(std::isnan(d.grad(r, j)));
            }
            for (std::size_t r : {0u, 1u, 3u, 5u}) {
                CHECK(std::isfinite(d.loss[r]));
                for (std::size_t j = 0; j < K; ++j) REQUIRE(std::isfinite(d.grad(r, j)));
            }
        }
    }
    // a NaN class weight: the rows of that class are NaN
    Rows d(6, 4, 19);
    d.y = {0, 1, 2, 3, 1, 0};
    d.w[1] = qnan;
    const Kernel kw = compile(L::weighted_cross_entropy(), wrt(u), CompileOptions{});
    Batch b = d.batch(true);
    kw.run(b.reduction(Reduction::sum));
    for (std::size_t r = 0; r < d.N; ++r) CHECK(std::isnan(d.loss[r]) == (d.y[r] == 1));
    for (std::size_t j = 0; j < d.K; ++j) CHECK(std::isnan(d.grad(4, j)));
}

TEST_CASE("batch: out-of-range labels and negative weights are errors raised before anything is written") {
    Rows d(5, 4, 23);
    const std::vector<float> g0 = d.g, l0 = d.loss;
    auto untouched = [&] {
        for (std::size_t i = 0; i < d.g.size(); ++i)
            if (!std::isnan(d.g[i])) return false;
        for (float x : d.loss)
            if (!std::isnan(x)) return false;
        return true;
    };
    const Kernel k = ce_kernel();
    d.y[3] = 4;
    CHECK_THROWS_WITH(k.run(d.batch()), Contains("label 'y' at row 3 is 4, outside [0, 4) and not ignore_index -100"));
    d.y[3] = -1;
    CHECK_THROWS_WITH(k.run(d.batch()), Contains("label 'y' at row 3 is -1"));
    d.y[3] = 1;
    CHECK(untouched());

    const Kernel kw = compile(L::weighted_cross_entropy(), wrt(u), CompileOptions{});
    d.w[2] = -0.5f;
    CHECK_THROWS_WITH(kw.run(d.batch(true)), Contains("weights 'w' has a negative value, -0.5, at element 2"));
    CHECK(untouched());

    // BCE: targets and pos_weight are weights inputs, bound per row and shared
    const Kernel bce = compile(L::binary_cross_entropy_with_logits(), wrt(u), CompileOptions{});
    std::vector<float> t(d.N * d.K, 0.5f), pw(d.K, 2.0f);
    t[2 * d.K + 3] = -0.25f;
    Batch b;
    b.bind("u", matrix(d.u.data(), d.N, d.K)).bind("targets", matrix(t.data(), d.N, d.K)).bind("pos_weight", shared_row(pw.data(), d.K));
    b.bind("grad.u", matrix(d.g.data(), d.N, d.K)).bind("loss", column(d.loss.data(), d.N));
    CHECK_THROWS_WITH(bce.run(b), Contains("weights 'targets' has a negative value, -0.25, at row 2, element 3"));
    t[2 * d.K + 3] = 0.25f;
    pw[0] = -1;
    CHECK_THROWS_WITH(bce.run(b), Contains("weights 'pos_weight' has a negative value, -1, at element 0"));
    CHECK(untouched());
    pw[0] = 0;  // zero is fine
    bce.run(b);
    CHECK(std::isfinite(d.loss[0]));
}

TEST_CASE("batch: the first negative weight of a large matrix is named whatever the threads and dtype") {
    // rows scanned on several threads: the error names the first bad row, not the first found
    const std::size_t N = 3000, K = 37;
    const Kernel bce = compile(L::binary_cross_entropy(), wrt(u), CompileOptions{});
    CompileOptions o16;
    o16.dtypes = {{"targets", DType::bf16}};
    const Kernel bce16 = compile(L::binary_cross_entropy(), wrt(u), o16);
    std::vector<float> x(N * K, 0.1f), g(N * K, NAN);
    std::vector<float> t32(N * K, 0.5f);
    std::vector<bf16> t16(N * K, bf16::from_float(0.5f));
    for (std::size_t r : {2900, 1700}) {
        t32[r * K + 5] = -1e-30f;  // tiny negatives count; -0 does not
        t16[r * K + 5] = bf16::from_float(-0.5f);
    }
    t32[100 * K] = -0.0f;
    t16[100 * K] = bf16::from_float(-0.0f);
    for (int threads : {1, 2, 7}) {
        INFO("threads " << threads);
        Batch b;
        b.bind("u", matrix(x.data(), N, K)).bind("grad.u", matrix(g.data(), N, K)).threads(threads);
        b.bind("targets", matrix(t32.data(), N, K));
        CHECK_THROWS_WITH(bce.run(b), Contains("weights 'targets' has a negative value, -1e-30, at row 1700, element 5"));
        b.bind("targets", matrix(t16.data(), N, K));
        CHECK_THROWS_WITH(bce16.run(b), Contains("weights 'targets' has a negative value, -0.5, at row 1700, element 5"));
    }
    CHECK(std::all_of(g.begin(), g.end(), [](float v) { return std::isnan(v); }));
}

TEST_CASE("batch: bf16 logits, true class at probability 0.999: the stored gradient keeps one bf16 rounding") {
    // softmax - 1 is computed in fp32 from (u - max) - log(sum) and rounded once to bf16, at the
    // store. Rounding p_y to bf16 first would give 1 - 1 = 0 (a relative error of 1); p_y - 1
    // from a rounded logsumexp would lose ~1e-3 relative before the bf16 rounding.
    const double unit = std::ldexp(1.0, -8);  // bf16's unit roundoff: 8 significant bits
    for (std::size_t K : {2, 5, 1000, 32000}) {
        for (Reduction red : {Reduction::sum, Reduction::mean}) {
            INFO("K " << K << " reduction " << to_string(red));
            const std::size_t N = K >= 32000 ? 4 : 16;
            std::mt19937 rng(static_cast<std::uint32_t>(K));
            std::normal_distribution<float> nd(0, 0.5f);
            std::vector<bf16> ub(N * K), gb(N * K);
            std::vector<float> g32(N * K);
            std::vector<std::int64_t> y(N);
            for (std::size_t r = 0; r < N; ++r) {
                y[r] = static_cast<std::int64_t>(rng() % K);
                for (std::size_t j = 0; j < K; ++j) ub[r * K + j] = bf16::from_float(nd(rng));
                // true logit so that p_y ~ 0.999 (others ~ 0): exp(a) = 0.999 (K - 1) / 0.001, varied by row
                const float a = std::log(0.999f * static_cast<float>(K - 1) / 0.001f) + 0.05f * static_cast<float>(r % 5) - 0.1f;
                ub[r * K + static_cast<std::size_t>(y[r])] = bf16::from_float(a);
            }
            for (bool spec : {false, true}) {
                CompileOptions o;
                o.dtype = DType::bf16;
                o.row_length = spec ? K : 0;  // online and (up to a block) two-pass logsumexp
                const Kernel k = ce_kernel(o.row_length, o);
                o.dtypes = {{"grad.u", DType::f32}};  // the same kernel storing fp32
                const Kernel k32 = ce_kernel(o.row_length, o);
                Batch b, b32;
                b.bind("u", matrix(ub.data(), N, K)).bind("y", column(y.data(), N)).bind("grad.u", matrix(gb.data(), N, K));
                b32.bind("u", matrix(ub.data(), N, K)).bind("y", column(y.data(), N)).bind("grad.u", matrix(g32.data(), N, K));
                k.run(b.reduction(red));
                k32.run(b32.reduction(red));
                const long double scale = red == Reduction::mean ? 1.0L / static_cast<long double>(N) : 1.0L;
                for (std::size_t r = 0; r < N; ++r) {
                    INFO("specialized " << spec << " row " << r);
                    std::vector<float> row(K);
                    for (std::size_t j = 0; j < K; ++j) row[j] = ub[r * K + j].to_float();
                    const std::size_t t = static_cast<std::size_t>(y[r]);
                    const long double want = scale * ce_grad(row.data(), K, y[r], t);
                    const long double p = 1 + want / scale;
                    CHECK(p > 0.99L);
                    CHECK(p < 0.9999L);
                    // the fp32 math before the store: far below bf16's rounding
                    const double rel32 = static_cast<double>(std::fabs((g32[r * K + t] - want) / want));
                    CHECK(rel32 <= std::ldexp(1.0, -13));
                    // the stored bf16 value is that fp32 value rounded once
                    CHECK(gb[r * K + t].bits == bf16::from_float(g32[r * K + t]).bits);
                    const double rel = static_cast<double>(std::fabs((gb[r * K + t].to_float() - want) / want));
                    CHECK(rel <= unit + std::ldexp(1.0, -13));
                }
            }
        }
    }
}

TEST_CASE("batch: the schedule shows which rows are skipped") {
    const std::string s = ce_kernel(10).schedule();
    INFO(s);
    CHECK(s.find("label is ignore_index: skipped") != std::string::npos);
    CHECK(s.find("logsumexp of -inf (fully masked): skipped") != std::string::npos);
}
