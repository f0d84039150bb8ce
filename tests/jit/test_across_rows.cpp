// The across-rows kernel of short rows (K <= 32 known: Plan::rows, jit/codegen_rows.cpp): every
// expression against the reference evaluator, strided rows, in place and threads, and the rows
// it skips and the labels' columns against the one-row-at-a-time kernel.
#include "common.hpp"

#include <cmath>
#include <random>

using namespace lossjit;

// Generic K's kernel runs them too, in chunks of VW columns (a loop, each chunk's mask from K):
// K = 16 and 17, 31 and 32 on either side of a chunk's end.
TEST_CASE("short rows run across rows: every expression, partial row blocks, masks, +-80, specialized and generic") {
    for (const std::size_t K : {1, 2, 10, 16, 17, 31, 32}) for (const bool generic : {false, true}) {
        INFO("K = " << K << (generic ? ", generic" : ", specialized"));
        CompileOptions o;
        o.row_length = generic ? 0 : K;
        for (const jt::Case& c : jt::cases()) {
            // K = 1: label smoothing's loss is x - 0.9 x - 0.1 x = 0, an fp32 cancellation of a few
            // ulp of x (the one-row-at-a-time kernel gives the same values): a looser bound
            const double loose = K == 1 ? 4 : 1;
            const Kernel k = jt::check_case(c, 37, K, o, jt::Mode::normal, 31, loose);  // 37 rows: 2 blocks of 16 and 5
            INFO(k.schedule());
            CHECK(k.schedule().find("rows at once") != std::string::npos);
            jt::check_case(c, 5, K, o, jt::Mode::neg_inf, 32, loose);
            if (K > 1) jt::check_case(c, 19, K, o, jt::Mode::big, 33);  // K = 1 and +-80: the same cancellation, larger
        }
        o.dtype = DType::f64;
        jt::check_case({"ce_hard", jt::ce_hard(), {}}, 21, K, o, jt::Mode::normal, 34);
        o.dtype = DType::bf16;
        jt::check_case({"ce_soft", jt::ce_soft(), {}}, 21, K, o, jt::Mode::normal, 35);
    }
    CompileOptions o;
    o.row_length = 33;  // longer rows: one row at a time
    CHECK(compile(jt::ce_hard(), o).schedule().find("rows at once") == std::string::npos);
    o.row_length = 0;  // generic K: a kernel for each range of lengths, the first across rows
    const std::string all = compile(jt::ce_hard(), o).schedule();
    const std::size_t longer = all.find("rows of 33 to ");
    CHECK(all.rfind("rows of 1 to 32 elements:\n", 0) == 0);
    REQUIRE(longer != std::string::npos);
    CHECK(all.find("rows at once") < longer);
    CHECK(all.find("rows at once", longer) == std::string::npos);
    CHECK(all.find("over a row of K = (generic, 1 to 32 elements)") < longer);
    CHECK(all.find("over a row of K = (generic),", longer) != std::string::npos);
}

TEST_CASE("across rows: strided rows, i32 labels, in place, threads") {
    CompileOptions o;
    o.row_length = 10;
    o.label_dtype = DType::i32;
    Kernel k = compile(jt::ce_hard(), o);
    const std::size_t N = 45, K = 10, stride = 13;
    std::vector<float> x(N * stride, 7.0f), g(N * stride, -1.0f);
    std::vector<std::int32_t> y(N);
    std::vector<float> loss(N * 2, -5.0f);
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0, 3);
    for (std::size_t r = 0; r < N; ++r) {
        for (std::size_t j = 0; j < K; ++j) x[r * stride + j] = nd(rng);
        y[r] = static_cast<std::int32_t>(rng() % K);
    }
    Batch b;
    b.bind("u", matrix(static_cast<const float*>(x.data()), N, K, stride)).bind("y", column(static_cast<const std::int32_t*>(y.data()), N));
    b.bind("grad.u", matrix(g.data(), N, K, stride)).bind("loss", column(loss.data(), N, 2)).scale("grad.u", 0.5);
    const Result r = k.run(b);
    long double tot = 0;
    for (std::size_t row = 0; row < N; ++row) {
        std::vector<long double> xr(x.begin() + static_cast<std::ptrdiff_t>(row * stride), x.begin() + static_cast<std::ptrdiff_t>(row * stride + K));
        const long double lse = lossjit::detail::logsumexp(xr);
        const long double l = lse - xr[static_cast<std::size_t>(y[row])];
        tot += l;
        CHECK(loss[row * 2] == Approx(static_cast<double>(l)).epsilon(3e-5));
        CHECK(loss[row * 2 + 1] == -5.0f);  // between the strided losses: untouched
        for (std::size_t j = 0; j < K; ++j) {
            const long double want = 0.5L * (std::exp(xr[j] - lse) - (j == static_cast<std::size_t>(y[row]) ? 1 : 0));
            REQUIRE(g[row * stride + j] == Approx(static_cast<double>(want)).margin(3e-6).epsilon(3e-5));
        }
        for (std::size_t j = K; j < stride; ++j) REQUIRE(g[row * stride + j] == -1.0f);  // padding untouched
    }
    CHECK(r.sum("loss") == Approx(static_cast<double>(tot)).epsilon(1e-6));
    // in place over contiguous logits, on 2 threads: the same gradient
    std::vector<float> xc(N * K), gc(N * K);
    for (std::size_t row = 0; row < N; ++row)
        for (std::size_t j = 0; j < K; ++j) xc[row * K + j] = x[row * stride + j];
    Batch c;
    c.bind("u", matrix(static_cast<const float*>(xc.data()), N, K)).bind("y", column(static_cast<const std::int32_t*>(y.data()), N));
    c.bind("grad.u", matrix(gc.data(), N, K)).scale("grad.u", 0.5).threads(2);
    const Result rc = k.run(c);
    CHECK(rc.sum("loss") == Approx(r.sum("loss")).epsilon(1e-6));
    c.bind("grad.u", matrix(xc.data(), N, K)).bind("u", matrix(static_cast<const float*>(xc.data()), N, K));
    (void)k.run(c);
    for (std::size_t i = 0; i < N * K; ++i) REQUIRE(xc[i] == gc[i]);
}

namespace {
// One row at a time for reference: the rows padded with -inf to kPadded elements, past the
// across-rows kernels' longest.
constexpr std::size_t kPadded = 40;
Kernel one_row_at_a_time(const Graph& g) {
    CompileOptions o;
    o.row_length = kPadded;
    Kernel k = compile(g, o);
    REQUIRE(k.schedule().find("rows at once") == std::string::npos);
    return k;
}
}  // namespace

TEST_CASE("across rows: ignored and fully masked rows as one row at a time, mean reduction") {
    const std::size_t N = 40, K = 7;
    std::vector<float> x(N * K);
    std::vector<std::int64_t> y(N);
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0, 2);
    for (auto& v : x) v = nd(rng);
    for (std::size_t r = 0; r < N; ++r) y[r] = static_cast<std::int64_t>(rng() % K);
    for (std::size_t r : {3, 17, 18, 39}) y[r] = -100;                                    // ignored
    for (std::size_t r : {5, 16, 33}) std::fill(x.begin() + static_cast<std::ptrdiff_t>(r * K), x.begin() + static_cast<std::ptrdiff_t>(r * K + K), -INFINITY);  // masked
    x[20 * K + 2] = -INFINITY;  // a partly masked row counts
    CompileOptions spec;
    spec.row_length = K;
    const Kernel across = compile(jt::ce_hard(), spec), generic = compile(jt::ce_hard(), CompileOptions{});
    const Kernel one = one_row_at_a_time(jt::ce_hard());
    REQUIRE(across.schedule().find("rows at once") != std::string::npos);
    const std::vector<float> xp = jt::padded_rows(x, N, K, kPadded);
    auto run = [&](const Kernel& k, const std::vector<float>& u, std::size_t Ku, std::vector<float>& g, std::vector<float>& l) {
        g.assign(N * Ku, NAN);
        l.assign(N, NAN);
        Batch b;
        b.bind("u", matrix(static_cast<const float*>(u.data()), N, Ku)).bind("y", column(static_cast<const std::int64_t*>(y.data()), N));
        b.bind("grad.u", matrix(g.data(), N, Ku)).bind("loss", column(l.data(), N)).reduction(Reduction::mean);
        return k.run(b);
    };
    std::vector<float> ga, la, go, lo, gg, lg;
    const Result ra = run(across, x, K, ga, la), ro = run(one, xp, kPadded, go, lo), rg = run(generic, x, K, gg, lg);
    CHECK(ra.ignored == 4);
    CHECK(ra.masked == 3);
    CHECK(ra.ignored == ro.ignored);
    CHECK(ra.masked == ro.masked);
    CHECK(ra.counted == ro.counted);
    CHECK(ra.loss() == Approx(ro.loss()).epsilon(1e-6));
    CHECK((rg.ignored == ra.ignored && rg.masked == ra.masked && rg.counted == ra.counted));
    CHECK(rg.loss() == ra.loss());  // the generic kernel's short rows: the same arithmetic
    for (std::size_t r = 0; r < N; ++r) {
        INFO("row " << r);
        CHECK(la[r] == Approx(lo[r]).epsilon(3e-6).margin(1e-7));
        CHECK(lg[r] == la[r]);
        for (std::size_t j = 0; j < K; ++j) {
            REQUIRE(ga[r * K + j] == Approx(go[r * kPadded + j]).epsilon(3e-5).margin(3e-7));
            REQUIRE(gg[r * K + j] == ga[r * K + j]);
        }
        for (std::size_t j = K; j < kPadded; ++j) REQUIRE(go[r * kPadded + j] == 0.0f);
    }
}

// The last pass's loop takes onehot as 0 and each label's elements are put in at its column after
// (Plan::labels_after_loop), per label input in turn: where two labels name the same column, the
// element is the whole expression's there, both onehots 1.
TEST_CASE("across rows: a gradient at two labels' columns as one row at a time") {
    Graph g;  // the cross-entropy of u against two labels, and its gradient
    const int u = g.input("u", InputKind::logits), ly = g.input("y", InputKind::label), lt = g.input("t", InputKind::label);
    const int lse = g.apply(Op::logsumexp, u);
    g.add_output("loss", g.apply(Op::add, g.apply(Op::sub, lse, g.apply(Op::at, u, ly)), g.apply(Op::sub, lse, g.apply(Op::at, u, lt))));
    const int twice = g.apply(Op::mul, g.constant(2), g.apply(Op::softmax, u));
    g.add_output("grad.u", g.apply(Op::sub, g.apply(Op::sub, twice, g.apply(Op::onehot, ly)), g.apply(Op::onehot, lt)));
    for (std::size_t K : {10, 20}) {  // one chunk of columns (its loop unrolled), and two
        INFO("K = " << K);
        const std::size_t N = 37;
        std::vector<float> x(N * K);
        std::vector<std::int64_t> y(N), t(N);
        std::mt19937 rng(static_cast<unsigned>(K));
        std::normal_distribution<float> nd(0, 2);
        for (auto& v : x) v = nd(rng);
        for (std::size_t r = 0; r < N; ++r) {
            y[r] = static_cast<std::int64_t>(rng() % K);
            t[r] = r % 3 == 0 ? y[r] : static_cast<std::int64_t>(rng() % K);  // every third row: the same column
        }
        y[4] = t[30] = -100;  // ignored
        CompileOptions spec;
        spec.row_length = K;
        const Kernel across = compile(g, spec), one = one_row_at_a_time(g);
        REQUIRE(across.schedule().find("rows at once") != std::string::npos);
        REQUIRE(across.schedule().find("the element at") != std::string::npos);
        const std::vector<float> xp = jt::padded_rows(x, N, K, kPadded);
        auto run = [&](const Kernel& k, const std::vector<float>& u, std::size_t Ku, std::vector<float>& gr, std::vector<float>& l) {
            gr.assign(N * Ku, NAN);
            l.assign(N, NAN);
            Batch b;
            b.bind("u", matrix(static_cast<const float*>(u.data()), N, Ku)).bind("y", column(static_cast<const std::int64_t*>(y.data()), N));
            b.bind("t", column(static_cast<const std::int64_t*>(t.data()), N));
            b.bind("grad.u", matrix(gr.data(), N, Ku)).bind("loss", column(l.data(), N));
            return k.run(b);
        };
        std::vector<float> ga, la, go, lo;
        const Result ra = run(across, x, K, ga, la), ro = run(one, xp, kPadded, go, lo);
        CHECK(ra.ignored == 2);
        CHECK(ra.counted == ro.counted);
        for (std::size_t r = 0; r < N; ++r) {
            INFO("row " << r << ", labels " << y[r] << " " << t[r]);
            CHECK(la[r] == Approx(lo[r]).epsilon(3e-6).margin(1e-7));
            for (std::size_t j = 0; j < K; ++j) REQUIRE(ga[r * K + j] == Approx(go[r * kPadded + j]).epsilon(3e-5).margin(3e-7));
            if (r % 3 != 0 || y[r] < 0 || t[r] < 0) continue;
            double z = 0;  // the shared column's element: 2 p - 2
            for (std::size_t j = 0; j < K; ++j) z += std::exp(static_cast<double>(x[r * K + j]));
            const double p = std::exp(static_cast<double>(x[r * K + static_cast<std::size_t>(y[r])])) / z;
            CHECK(ga[r * K + static_cast<std::size_t>(y[r])] == Approx(2 * p - 2).epsilon(1e-5));
        }
    }
}

// A gradient row that is part of a cache line, or one line, is prefetched for writing two
// blocks ahead (its store would read the line first); rows of two lines and kernels without a
// vector output have no prefetches.
TEST_CASE("across rows: the gradient's rows two blocks ahead prefetched for writing, where a row is part of a line or one") {
    struct Expect {
        std::size_t K;
        DType dtype;
        bool grad;
        std::size_t writes;  // prefetches for writing: 16 rows, each line a row reaches from its start
    };
    for (const Expect& x : {Expect{10, DType::f32, true, 16}, Expect{24, DType::f32, true, 32}, Expect{10, DType::bf16, true, 16},
                            Expect{16, DType::f32, true, 16}, Expect{32, DType::f32, true, 0}, Expect{32, DType::bf16, true, 16},
                            Expect{10, DType::f32, false, 0}}) {
        INFO("K = " << x.K << ", " << to_string(x.dtype) << (x.grad ? ", with its gradient" : ", the loss alone"));
        CompileOptions o;
        o.row_length = x.K;
        o.dtype = x.dtype;
        const Kernel k = compile(jt::ce_hard(x.grad), o);
        REQUIRE(k.schedule().find("rows at once") != std::string::npos);
        std::size_t writes = 0;
        for (const std::string& line : jt::prefetch_calls(k.llvm_ir(true))) {
            INFO(line);
            CHECK(line.find("i32 1, i32 3, i32 1)") != std::string::npos);  // write, locality 3, data
            ++writes;
        }
        CHECK(writes == x.writes);
        CHECK((k.schedule().find("prefetched for writing") != std::string::npos) == (x.writes > 0));  // the schedule says so
    }
}
