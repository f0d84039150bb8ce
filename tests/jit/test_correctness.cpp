// JIT loss and gradient against the reference evaluator (long double): the cross-entropy golden
// graphs and more expressions over the whole op vocabulary, K in {1, 3, 16, 17, 1000, 32005},
// -inf logits where the target is 0, logits of +-80, specialized and generic kernels, fp32,
// fp64 and bf16, both logsumexp strategies and blocked rows.
#include "common.hpp"

#include <cstring>
#include <random>
#include "jit/schedule.hpp"

using namespace lossjit;

namespace {
const std::size_t Ks[] = {1, 3, 16, 17, 1000, 32005};
std::size_t rows_for(std::size_t K) { return K >= 32005 ? 3 : K >= 1000 ? 9 : 37; }

// A row length of at least `at_least` that generic K runs in its kernel for any other length
// (jit::make_plans): past its block (not one block: not pipelined) and odd (not a multiple of the
// vector width), for rows padded with -inf (jt::padded_rows) as a reference.
std::size_t other_length(const Kernel& generic, std::size_t at_least) {
    const std::string plans = generic.schedule(), mark = "in blocks of ";
    const std::size_t at = plans.find(mark, plans.find("rows of any other length:"));
    REQUIRE(at != std::string::npos);
    const std::size_t k = std::max<std::size_t>(at_least, std::stoull(plans.substr(at + mark.size())) + 1);
    return k % 2 ? k : k + 1;
}
}  // namespace

TEST_CASE("every op that can appear in a Graph has an emitter") {
    for (int i = 0; i < op_count; ++i) {
        const Op op = static_cast<Op>(i);
        if (op == Op::wildcard) continue;
        INFO(info(op).name);
        CHECK(jit::has_emitter(op));
    }
}

TEST_CASE("cross-entropy golden graphs for every K specialized and generic") {
    for (const auto& c : jt::cases()) {
        if (c.name != "ce_soft" && c.name != "ce_hard") continue;
        for (std::size_t K : Ks)
            for (bool spec : {true, false}) {
                CompileOptions o;
                o.row_length = spec ? K : 0;
                jt::check_case(c, rows_for(K), K, o, jt::Mode::normal, static_cast<std::uint32_t>(K));
                jt::check_case(c, rows_for(K), K, o, jt::Mode::neg_inf, static_cast<std::uint32_t>(K + 1));
                jt::check_case(c, rows_for(K), K, o, jt::Mode::big, static_cast<std::uint32_t>(K + 2));
            }
    }
}

TEST_CASE("every expression at K = 1 3 17 1000 specialized") {
    for (const auto& c : jt::cases())
        for (std::size_t K : {1, 3, 17, 1000}) {
            CompileOptions o;
            o.row_length = K;
            jt::check_case(c, rows_for(K), K, o, jt::Mode::normal, static_cast<std::uint32_t>(K * 3), 4);
        }
}

// Generic K runs each batch in the kernel for its rows' length (jit::make_plans): across rows to
// 32 elements, with the max ahead to 1024 fp32 elements where a gradient pass follows (to the
// L2 block for a loss alone), pipelined past those where the length is a multiple of the vector
// width (one block, and several past the L2 block) or the row one block (1025, 32005), then
// blocks of any length (33000).
TEST_CASE("every expression with generic K at K = 16, 33, 1024, 1025, 4096, 32005, 32784, 33000 and with logits of +-80") {
    for (const auto& c : jt::cases()) {
        for (std::size_t K : {16, 33, 1024, 1025, 4096, 32005, 32784, 33000}) {
            CompileOptions o;
            jt::check_case(c, rows_for(K), K, o, jt::Mode::normal, static_cast<std::uint32_t>(K * 5), 4);
        }
        CompileOptions o;
        o.row_length = 17;
        jt::check_case(c, 11, 17, o, jt::Mode::big, 99, 4);
    }
}

TEST_CASE("logits of -inf where the target is 0") {
    for (const auto& c : jt::cases()) {
        if (c.name == "zoo" || c.name == "pow_general" || c.name == "bce" || c.name == "scalar_folds" || c.name == "soft_cap" ||
            c.name == "nested_softmax")
            continue;  // expressions whose value at -inf is NaN or 0 * inf by definition
        CompileOptions o;
        o.row_length = 1000;
        jt::check_case(c, 9, 1000, o, jt::Mode::neg_inf, 5, 4);
    }
}

TEST_CASE("specialized and generic kernels agree") {
    const Graph g = jt::ce_hard();
    for (std::size_t K : {3, 17, 1000}) {
        CompileOptions gen, spec;
        spec.row_length = K;
        Kernel a = compile(g, gen), b = compile(g, spec);
        jt::Data da, db;
        jt::make_data(a, da, 20, K, jt::Mode::normal, 3);
        jt::make_data(b, db, 20, K, jt::Mode::normal, 3);
        const Result ra = a.run(da.batch), rb = b.run(db.batch);
        CHECK(ra.sum("loss") == Approx(rb.sum("loss")).epsilon(1e-5));
        for (std::size_t i = 0; i < 20 * K; ++i) REQUIRE(da.f32[3][i] == Approx(db.f32[3][i]).margin(1e-6));
    }
}

TEST_CASE("fp64 path") {
    for (const auto& c : jt::cases())
        for (std::size_t K : {3, 17, 1000}) {
            CompileOptions o;
            o.dtype = DType::f64;
            o.row_length = K == 17 ? 0 : K;
            jt::check_case(c, 7, K, o, jt::Mode::normal, static_cast<std::uint32_t>(K), 4);
        }
}

TEST_CASE("bf16 logits with fp32 math and the gradient rounded once") {
    for (const auto& c : jt::cases())
        for (std::size_t K : {1, 17, 1000, 32005}) {
            if (K == 32005 && c.name != "ce_hard" && c.name != "ce_soft") continue;
            CompileOptions o;
            o.dtype = DType::bf16;
            o.row_length = K == 17 ? 0 : K;
            jt::check_case(c, rows_for(K), K, o, jt::Mode::normal, static_cast<std::uint32_t>(K + 11));
        }
    SECTION("the true-class term softmax - 1 is formed in fp32") {
        // one class at probability ~0.999: grad = p - 1 ~ -1e-3 must be within one bf16 rounding
        CompileOptions o;
        o.dtype = DType::bf16;
        Kernel k = compile(jt::ce_hard(), o);
        const std::size_t K = 100;
        std::vector<bf16> u(K, bf16::from_float(0)), g(K);
        u[5] = bf16::from_float(11.5f);
        std::vector<std::int64_t> y{5};
        Batch b;
        b.bind("u", matrix(u.data(), 1, K)).bind("y", column(y.data(), 1)).bind("grad.u", matrix(g.data(), 1, K));
        k.run(b);
        const long double e = std::exp(11.5L), p = e / (e + 99);
        const long double want = p - 1;
        CHECK(std::fabs((g[5].to_float() - want) / want) <= 1.0 / 256);
    }
}

TEST_CASE("a pass with more reductions than its loops have registers for runs them in groups") {
    // sum over i < 12 of CE(u / (i + 1), y), and mean(u): 12 two-pass logsumexps, 4 vector
    // accumulators each in their max loop, against the 32 registers of AVX-512
    Graph g;
    const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label);
    int loss = g.apply(Op::mean, u), grad = g.apply(Op::div, g.constant(1), g.row_length());
    for (int i = 0; i < 12; ++i) {
        const int c = g.constant(1.0 / (i + 1));
        const int uc = g.apply(Op::mul, u, c);
        loss = g.apply(Op::add, loss, g.apply(Op::sub, g.apply(Op::logsumexp, uc), g.apply(Op::mul, c, g.apply(Op::at, u, y))));
        grad = g.apply(Op::add, grad, g.apply(Op::mul, c, g.apply(Op::sub, g.apply(Op::softmax, uc), g.apply(Op::onehot, y))));
    }
    g.add_output("loss", loss);
    g.add_output("grad.u", grad);
    for (std::size_t K : {0, 1000, 40000})
        for (auto mode : {jt::Mode::normal, jt::Mode::neg_inf}) {
            CompileOptions o;
            o.row_length = K;
            const std::size_t k_run = K ? K : 333;
            const Kernel k = jt::check_case({"twelve_temperatures", g, {}}, K == 40000 ? 3 : 9, k_run, o, mode, static_cast<std::uint32_t>(k_run));
            CHECK(k.schedule().find("its reductions in ") != std::string::npos);
        }
}

// Plan::pipelined: a row's gradient pass runs inside the next row's exp loop, the last row's
// after the rows; rows of one block (K = 5008, and 5003 with part of a vector at its end) and of
// many (blocks of 64 and 1000).
TEST_CASE("pipelined rows: each row's gradient pass inside the next row's exp loop") {
    Graph p_only;  // the probabilities as the only vector output: softmax(u) itself
    {
        const int u = p_only.input("u", InputKind::logits), y = p_only.input("y", InputKind::label);
        p_only.add_output("loss", p_only.apply(Op::sub, p_only.apply(Op::logsumexp, u), p_only.apply(Op::at, u, y)));
        p_only.add_output("p", p_only.apply(Op::softmax, u));
    }
    for (const jt::Case& c : {jt::Case{"ce_hard", jt::ce_hard(), {}}, jt::Case{"softmax", p_only, {}}})
        for (DType dt : {DType::f32, DType::f64})
            for (std::size_t block : {0, 64, 1000})
                for (auto mode : {jt::Mode::normal, jt::Mode::neg_inf, jt::Mode::big})
                    for (bool spec : {true, false})  // generic K: its kernels for long rows
                        for (std::size_t K : {block == 1000 ? 4112 : 5008, 5003}) {
                            if (K % 2 && block) continue;  // rows of part of a vector: pipelined where they are one block
                            CompileOptions o;
                            o.dtype = dt;
                            o.row_length = spec ? K : 0;
                            o.block = block;
                            const Kernel k = jt::check_case(c, 9, K, o, mode, static_cast<std::uint32_t>(K + 3));
                            CHECK(k.schedule().find("pipelined") != std::string::npos);
                        }
    for (std::size_t block : {0, 64}) {
        INFO("block " << block);
        // The kernels pipelined, the specialized one and generic K's for long rows of a multiple
        // of the vector width, against the rows padded in the generic kernel's for any other
        // length (not pipelined): ignored and fully masked rows between
        // pending ones, in place, on one and two threads. Element for element in blocks, as the
        // generic kernels take them; a row of one block (specialized, block 0) takes softmax as
        // the kept exps / their sum instead, rounded differently.
        const std::size_t N = 9, K = 5008;
        CompileOptions o;
        o.block = block;
        const Kernel generic = compile(jt::ce_hard(), o);
        const std::size_t Kp = other_length(generic, K + 1);
        o.row_length = K;
        const Kernel piped = compile(jt::ce_hard(), o);
        REQUIRE(piped.schedule().find("pipelined") != std::string::npos);
        const std::string plans = generic.schedule();
        const std::size_t other = plans.find("rows of any other length:");
        REQUIRE(plans.find("pipelined", plans.find("rows of 1025 elements or more, a multiple of ")) < other);
        REQUIRE(plans.find("pipelined", other) == std::string::npos);
        std::mt19937 rng(5);
        std::normal_distribution<float> nd(0, 3);
        std::vector<float> u(N * K);
        for (float& x : u) x = nd(rng);
        std::vector<std::int64_t> y(N);
        for (auto& v : y) v = static_cast<std::int64_t>(rng() % K);
        y[0] = y[3] = y[4] = y[8] = -100;  // ignored: the first, two in a row, the last
        for (std::size_t j = 0; j < K; ++j) u[6 * K + j] = -INFINITY;  // fully masked
        const std::vector<float> up = jt::padded_rows(u, N, K, Kp);
        // The pending row runs ahead by a skew from the addresses of its gradient and the next
        // row's logits: in place, and gradients at several distances from the logits modulo 4 KB.
        std::vector<float> g_store(N * K + 1024);
        auto gradient_at = [&](std::ptrdiff_t apart, const float* logits) {  // elements past the logits, modulo 4 KB
            const auto bytes = reinterpret_cast<std::uintptr_t>(g_store.data()) - reinterpret_cast<std::uintptr_t>(logits);
            const std::size_t start = ((static_cast<std::uintptr_t>(apart) * sizeof(float) - bytes) % 4096) / sizeof(float);
            std::fill(g_store.begin(), g_store.end(), 7.f);
            return g_store.data() + start;
        };
        for (int threads : {1, 2})
            for (const Kernel* k : {&piped, &generic})
                for (std::ptrdiff_t apart : {-1, 0, 16, 496, 512, 1008}) {  // -1: in place
                    INFO((k == &piped ? "specialized" : "generic") << ", threads " << threads << ", gradient " << apart << " elements from the logits");
                    std::vector<float> g_ref(N * Kp, 7.f), x(u), l_ref(N), l(N);
                    float* g = apart < 0 ? x.data() : gradient_at(apart, x.data());
                    Batch a, b;
                    a.bind("u", matrix(static_cast<const float*>(up.data()), N, Kp)).bind("y", column(static_cast<const std::int64_t*>(y.data()), N));
                    a.bind("grad.u", matrix(g_ref.data(), N, Kp)).bind("loss", column(l_ref.data(), N)).threads(threads);
                    b.bind("u", matrix(static_cast<const float*>(x.data()), N, K)).bind("y", column(static_cast<const std::int64_t*>(y.data()), N));
                    b.bind("grad.u", matrix(g, N, K)).bind("loss", column(l.data(), N)).threads(threads);
                    const Result ra = generic.run(a), rb = k->run(b);
                    CHECK(ra.ignored == 4);
                    CHECK(ra.masked == 1);
                    CHECK(rb.ignored == ra.ignored);
                    CHECK(rb.masked == ra.masked);
                    CHECK(rb.loss() == Approx(ra.loss()).epsilon(1e-12));
                    for (std::size_t i = 0; i < N; ++i) CHECK(l[i] == l_ref[i]);
                    const bool exact = block || k == &generic;
                    std::size_t differ = 0;
                    for (std::size_t r = 0; r < N; ++r)
                        for (std::size_t j = 0; j < K; ++j) {
                            const float want = g_ref[r * Kp + j], got = g[r * K + j];
                            differ += exact ? got != want : std::fabs(got - want) > 1e-6f * std::fabs(want) + 1e-30f;
                        }
                    CHECK(differ == 0);
                }
    }
}

// Plan::max_ahead: a one-pass kernel (fwd), or one with a gradient pass and rows of up to 4 KB,
// takes row r + 1's max in row r's exp loop; the row after a skipped one scans its own. The
// logsumexps' arguments read the row's vector inputs only.
// Plan::batched_tail: the log1p and final stage per batch of VW rows, in a fwd kernel and in one
// whose gradient pass reads the cached softmax of a row that is one block (K known). Against
// the reference: batches full and partial (N = 1, 15, 16, 17, 37), fp32, fp64 (8 lanes) and
// bf16, with a second output and a second reduction. And each row of a batch gives the bits it
// gives alone (a batch of one): ignored rows at a batch's first and last lanes and across its
// end, a fully masked row, a row with a NaN and one of NaNs, one and two threads (a thread's
// range starts mid-batch). Rows of one block and of several (K = 40001), specialized and
// generic. Not batched: gradients that read the logsumexp (z-loss) or log_softmax (focal); a
// loss that gathers the softmax (at(softmax(u), y), before the gradient pass) is, from the sums.
TEST_CASE("batched tail: per batch of rows, each row's outputs as alone") {
    for (bool grad : {false, true}) {
        Graph g;  // loss = CE; z = lse / 2 - sum / 1000: a second output, a second reduction
        {
            const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label);
            const int lse = g.apply(Op::logsumexp, u);
            g.add_output("loss", g.apply(Op::sub, lse, g.apply(Op::at, u, y)));
            g.add_output("z", g.apply(Op::sub, g.apply(Op::mul, g.constant(0.5), lse), g.apply(Op::mul, g.apply(Op::sum, u), g.constant(0.001))));
            if (grad) g.add_output("grad.u", g.apply(Op::sub, g.apply(Op::softmax, u), g.apply(Op::onehot, y)));
        }
        for (DType dt : {DType::f32, DType::f64, DType::bf16})
            for (std::size_t K : {40, 1000, 40001})
                for (bool spec : {true, false})
                    for (std::size_t N : {1, 15, 16, 17, 37}) {
                        if (K > 1000 && N != 17) continue;  // long rows: one batch and a row of the next
                        CompileOptions o;
                        o.dtype = dt;
                        o.row_length = spec ? K : 0;
                        for (auto mode : {jt::Mode::normal, jt::Mode::neg_inf}) {
                            const Kernel k = jt::check_case({"ce_and_z", g, {}}, N, K, o, mode, static_cast<std::uint32_t>(N * 3 + K));
                            CHECK(k.schedule().find("per batch of") != std::string::npos);
                        }
                    }
        for (std::size_t K : {40, 1000, 40001})
            for (bool spec : {true, false}) {
                INFO("K " << K << " specialized " << spec << " gradient " << grad);
                CompileOptions o;
                o.row_length = spec ? K : 0;
                const Kernel k = compile(g, o);
                const std::size_t N = 37;
                std::mt19937 rng(static_cast<std::uint32_t>(K));
                std::normal_distribution<float> nd(0, 3);
                std::vector<float> x(N * K);
                for (auto& v : x) v = nd(rng);
                std::vector<std::int64_t> lab(N);
                for (auto& v : lab) v = static_cast<std::int64_t>(rng() % K);
                for (std::size_t i : {0, 15, 16, 17, 36}) lab[i] = -100;
                for (std::size_t j = 0; j < K; ++j) x[5 * K + j] = -INFINITY;
                x[8 * K + 3] = NAN;
                for (std::size_t j = 0; j < K; ++j) x[9 * K + j] = NAN;  // NaN, not masked: hi + log1p(NaN)
                for (int threads : {1, 2}) {
                    std::vector<float> loss(N, 7.f), z(N, 7.f), gr(N * K, 7.f);
                    Batch b;
                    b.bind("u", matrix(static_cast<const float*>(x.data()), N, K)).bind("y", column(static_cast<const std::int64_t*>(lab.data()), N));
                    b.bind("loss", column(loss.data(), N)).bind("z", column(z.data(), N)).threads(threads);
                    if (grad) b.bind("grad.u", matrix(gr.data(), N, K));
                    const Result r = k.run(b);
                    CHECK(r.ignored == 5);
                    CHECK(r.masked == 1);
                    CHECK(std::isnan(loss[8]));
                    CHECK(std::isnan(loss[9]));
                    for (std::size_t i = 0; i < N; ++i) {
                        INFO("row " << i << ", threads " << threads);
                        float l1 = 7.f, z1 = 7.f;
                        std::vector<float> g1(K, 7.f);
                        Batch one;
                        one.bind("u", matrix(static_cast<const float*>(x.data() + i * K), 1, K)).bind("y", column(static_cast<const std::int64_t*>(&lab[i]), 1));
                        one.bind("loss", column(&l1, 1)).bind("z", column(&z1, 1));
                        if (grad) one.bind("grad.u", matrix(g1.data(), 1, K));
                        k.run(one);
                        CHECK(std::memcmp(&loss[i], &l1, sizeof l1) == 0);
                        CHECK(std::memcmp(&z[i], &z1, sizeof z1) == 0);
                        if (grad) CHECK(std::memcmp(&gr[i * K], g1.data(), K * sizeof(float)) == 0);
                        if (lab[i] == -100 || i == 5) CHECK(loss[i] == 0.f);
                    }
                    CHECK(std::isnan(r.sum("loss")));  // the NaN row counts
                }
            }
    }
    std::vector<jt::Case> cs = jt::cases();
    {  // the loss's gather of the softmax, taken before the gradient pass, from the sums
        Graph g;
        const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label);
        const int sm = g.apply(Op::softmax, u);
        g.add_output("loss", g.apply(Op::neg, g.apply(Op::log, g.apply(Op::at, sm, y))));
        g.add_output("grad.u", g.apply(Op::sub, sm, g.apply(Op::onehot, y)));
        cs.push_back({"at_softmax", g, {}});
    }
    for (const jt::Case& c : cs) {
        CompileOptions o;
        o.row_length = 100;
        const bool batched = jt::check_case(c, 37, 100, o, jt::Mode::neg_inf, 5).schedule().find("per batch of") != std::string::npos;
        INFO(c.name);
        if (c.name.starts_with("ce_") || c.name == "label_smoothing" || c.name == "soft_cap" || c.name == "class_weights" || c.name == "at_softmax")
            CHECK(batched);
        if (c.name == "z_loss" || c.name.starts_with("focal")) CHECK_FALSE(batched);
    }
}

TEST_CASE("max ahead: the next row's max taken in this row's exp loop") {
    std::vector<jt::Case> fwd;
    {
        Graph g;
        const int u = g.input("u", InputKind::logits), y = g.input("y", InputKind::label);
        g.add_output("loss", g.apply(Op::sub, g.apply(Op::logsumexp, u), g.apply(Op::at, u, y)));
        fwd.push_back({"ce_hard_fwd", g, {}});
    }
    {  // two logsumexps, one of a scaled argument, and a dot in the same pass
        Graph g;
        const int u = g.input("u", InputKind::logits), p = g.input("p", InputKind::probs);
        const int half = g.apply(Op::mul, u, g.constant(0.5));
        g.add_output("loss", g.apply(Op::sub, g.apply(Op::add, g.apply(Op::logsumexp, u), g.apply(Op::logsumexp, half)), g.apply(Op::dot, p, u)));
        fwd.push_back({"two_lse_fwd", g, {}});
    }
    {  // an argument of two inputs (the weights a row shared by all)
        Graph g;
        const int u = g.input("u", InputKind::logits), w = g.input("w", InputKind::weights), y = g.input("y", InputKind::label);
        g.add_output("loss", g.apply(Op::sub, g.apply(Op::logsumexp, g.apply(Op::add, u, w)), g.apply(Op::at, u, y)));
        fwd.push_back({"shifted_fwd", g, {}});
    }
    for (const jt::Case& c : fwd)
        for (DType dt : {DType::f32, DType::f64, DType::bf16})
            for (std::size_t K : {40, 1000, 1001, 5008})
                for (auto mode : {jt::Mode::normal, jt::Mode::neg_inf, jt::Mode::big}) {
                    CompileOptions o;
                    o.dtype = dt;
                    o.row_length = K;
                    const Kernel k = jt::check_case(c, 7, K, o, mode, static_cast<std::uint32_t>(K + 5));
                    CHECK(k.schedule().find("previous row's main loop") != std::string::npos);
                }
    for (const jt::Case& c : jt::cases())  // with a gradient pass
        for (DType dt : {DType::f32, DType::bf16})
            for (std::size_t K : {40, 1000, 1001}) {
                CompileOptions o;
                o.dtype = dt;
                o.row_length = K;
                const Kernel k = jt::check_case(c, 7, K, o, jt::Mode::neg_inf, static_cast<std::uint32_t>(K + 6));
                if (c.name == "ce_hard") CHECK(k.schedule().find("previous row's main loop") != std::string::npos);
            }
    {  // a per-row scalar in the argument is row r's: no max ahead
        Graph g;
        const int u = g.input("u", InputKind::logits), t = g.input("t", InputKind::scalar);
        g.add_output("loss", g.apply(Op::logsumexp, g.apply(Op::mul, u, t)));
        CompileOptions o;
        o.row_length = 1000;
        const Kernel k = jt::check_case({"scaled_by_row", g, {}}, 5, 1000, o, jt::Mode::normal, 3);
        CHECK(k.schedule().find("previous row's main loop") == std::string::npos);
    }
    // The kernels with the max ahead, the specialized one and generic K's for one-block rows,
    // against the rows padded with -inf in the generic kernel's for any other length (no max
    // ahead), loss for loss: ignored rows (the first, two in a row, the
    // last), a fully masked row, a row with a NaN, rows whose maxes differ by far; on one and two
    // threads (each thread's last row has no next one), fwd and fwd+bwd with the gradient in place
    // (a row's pass reads the next row before that row's gradient replaces it, and never the next
    // thread's first row).
    const std::size_t N = 11, K = 1000;
    for (const Graph& g : {fwd[0].g, jt::ce_hard()}) {
        const bool grad = g.outputs().size() > 1;
        INFO((grad ? "fwd+bwd" : "fwd"));
        const Kernel generic = compile(g);
        CompileOptions o;
        o.row_length = K;
        const Kernel ahead = compile(g, o);
        REQUIRE(ahead.schedule().find("previous row's main loop") != std::string::npos);
        const std::string plans = generic.schedule();
        const std::size_t Kp = other_length(generic, K + 1);
        REQUIRE(plans.find("previous row's main loop") < plans.find("rows of any other length:"));
        REQUIRE(plans.find("previous row's main loop", plans.find("rows of any other length:")) == std::string::npos);
        std::mt19937 rng(9);
        std::normal_distribution<float> nd(0, 3);
        std::vector<float> u(N * K);
        for (std::size_t i = 0; i < N; ++i)
            for (std::size_t j = 0; j < K; ++j) u[i * K + j] = nd(rng) + static_cast<float>(i % 3) * 1000.f;
        std::vector<std::int64_t> y(N);
        for (auto& v : y) v = static_cast<std::int64_t>(rng() % K);
        y[0] = y[3] = y[4] = y[10] = -100;
        for (std::size_t j = 0; j < K; ++j) u[6 * K + j] = -INFINITY;
        u[8 * K + 17] = NAN;
        const std::vector<float> up = jt::padded_rows(u, N, K, Kp);
        for (int threads : {1, 2})
            for (const Kernel* k : {&ahead, &generic}) {
                INFO((k == &ahead ? "specialized" : "generic") << ", threads " << threads);
                std::vector<float> l_ref(N, 7.f), l(N, 7.f), g_ref(N * Kp, 7.f), g_in(u);
                Batch a, b;
                a.bind("u", matrix(static_cast<const float*>(up.data()), N, Kp)).bind("y", column(static_cast<const std::int64_t*>(y.data()), N));
                a.bind("loss", column(l_ref.data(), N)).threads(threads);
                b.bind("u", matrix(g_in.data(), N, K)).bind("y", column(static_cast<const std::int64_t*>(y.data()), N));
                b.bind("loss", column(l.data(), N)).threads(threads);
                if (grad) {
                    a.bind("grad.u", matrix(g_ref.data(), N, Kp));
                    b.bind("grad.u", matrix(g_in.data(), N, K));  // in place
                }
                const Result ra = generic.run(a), rb = k->run(b);
                CHECK(ra.ignored == 4);
                CHECK(ra.masked == 1);
                CHECK(rb.ignored == ra.ignored);
                CHECK(rb.masked == ra.masked);
                CHECK(std::isnan(l[8]));
                for (std::size_t i = 0; i < N; ++i) {
                    INFO("row " << i);
                    CHECK(std::memcmp(&l[i], &l_ref[i], sizeof(float)) == 0);
                }
                if (!grad) continue;
                // a row of one block takes softmax as the kept exps / their sum, the generic
                // kernel for any length by its block's factor: rounded differently
                std::size_t differ = 0;
                for (std::size_t r = 0; r < N; ++r)
                    for (std::size_t j = 0; j < K; ++j) {
                        const float want = g_ref[r * Kp + j], got = g_in[r * K + j];
                        differ += !(std::fabs(got - want) <= 1e-6f * std::fabs(want) + 1e-30f) && !(std::isnan(got) && std::isnan(want));
                    }
                CHECK(differ == 0);
            }
    }
}

TEST_CASE("logsumexp strategies online and two-pass and blocked rows") {
    const Graph g = jt::ce_soft(), loss = jt::ce_hard(false);
    for (auto lse : {CompileOptions::Lse::online, CompileOptions::Lse::two_pass})
        for (std::size_t block : {0, 64, 1000})
            for (std::size_t K : {17, 1000, 32005}) {
                CompileOptions o;
                o.lse = lse;
                o.block = block;
                o.row_length = K == 1000 ? 0 : K;
                jt::check_case({"ce_soft", g, {}}, 3, K, o, jt::Mode::neg_inf, 17);
                jt::check_case({"ce_soft", g, {}}, 3, K, o, jt::Mode::big, 18);
                jt::check_case({"ce_hard loss", loss, {}}, 3, K, o, jt::Mode::neg_inf, 19);
            }
}

TEST_CASE("unroll factors and narrower vectors agree") {
    for (int unroll : {1, 3, 4}) {
        CompileOptions o;
        o.unroll = unroll;
        for (std::size_t K : {5, 100, 1001}) jt::check_case({"ce_hard", jt::ce_hard(), {}}, 5, K, o, jt::Mode::normal, 21);
    }
}

// Generic K, and K known (Plan::batched_tail: the loss's gather at(u, y) is kept, not read again
// after the gradient has overwritten it).
TEST_CASE("in-place gradient over the logits") {
    for (DType dt : {DType::f32, DType::bf16})
        for (std::size_t row_length : {0, 1003}) {
            CompileOptions o;
            o.dtype = dt;
            o.row_length = row_length;
            Kernel k = compile(jt::ce_hard(), o);
            jt::Data d;
            const std::size_t N = 50, K = 1003;
            jt::make_data(k, d, N, K, jt::Mode::normal, 8);
            const Result ref = k.run(d.batch);  // out of place: the expected gradient
            // now write the gradient over the logits
            const std::size_t us = 0, gs = 3;  // slots: u, y, loss, grad.u (inputs first)
            REQUIRE(k.slots()[us].name == "u");
            REQUIRE(k.slots()[gs].name == "grad.u");
            Batch b = d.batch;
            if (dt == DType::f32) {
                std::vector<float> buf = d.f32[us];
                b.bind("u", matrix(buf.data(), N, K)).bind("grad.u", matrix(buf.data(), N, K));
                const Result r = k.run(b);
                CHECK(r.sum("loss") == Approx(ref.sum("loss")).epsilon(1e-6));
                for (std::size_t i = 0; i < N * K; ++i) REQUIRE(buf[i] == d.f32[gs][i]);
            } else {
                std::vector<bf16> buf = d.b16[us];
                b.bind("u", matrix(buf.data(), N, K)).bind("grad.u", matrix(buf.data(), N, K));
                const Result r = k.run(b);
                CHECK(r.sum("loss") == Approx(ref.sum("loss")).epsilon(1e-6));
                for (std::size_t i = 0; i < N * K; ++i) REQUIRE(buf[i].bits == d.b16[gs][i].bits);
            }
        }
}

TEST_CASE("strided rows with i32 labels and gradient scaling") {
    CompileOptions o;
    o.label_dtype = DType::i32;
    Kernel k = compile(jt::ce_hard(), o);
    const std::size_t N = 6, K = 33, S = 40;
    std::vector<float> u(N * S, 1000.0f), g(N * S, -7.0f);
    std::vector<std::int32_t> y(N);
    for (std::size_t r = 0; r < N; ++r) {
        y[r] = static_cast<std::int32_t>(r * 5 % K);
        for (std::size_t j = 0; j < K; ++j) u[r * S + j] = static_cast<float>(std::sin(r * 7.0 + j));
    }
    Batch b;
    b.bind("u", matrix(u.data(), N, K, S)).bind("y", column(y.data(), N)).bind("grad.u", matrix(g.data(), N, K, S)).scale("grad.u", 0.5);
    const Result r = k.run(b);
    long double tot = 0;
    for (std::size_t row = 0; row < N; ++row) {
        std::vector<long double> x(K);
        for (std::size_t j = 0; j < K; ++j) x[j] = u[row * S + j];
        const long double lse = lossjit::detail::logsumexp(x);
        tot += lse - x[static_cast<std::size_t>(y[row])];
        for (std::size_t j = 0; j < K; ++j) {
            const long double want = 0.5L * (std::exp(x[j] - lse) - (j == static_cast<std::size_t>(y[row]) ? 1 : 0));
            REQUIRE(g[row * S + j] == Approx(static_cast<double>(want)).margin(1e-6));
        }
        for (std::size_t j = K; j < S; ++j) REQUIRE(g[row * S + j] == -7.0f);  // padding untouched
    }
    CHECK(r.sum("loss") == Approx(static_cast<double>(tot)).epsilon(1e-5));
}

TEST_CASE("multi-threaded runs equal one thread") {
    CompileOptions o;
    Kernel k = compile(jt::ce_soft(), o);
    jt::Data d1, d2;
    jt::make_data(k, d1, 300, 1000, jt::Mode::normal, 4);
    jt::make_data(k, d2, 300, 1000, jt::Mode::normal, 4);
    d1.batch.threads(1);
    d2.batch.threads(2);
    const Result r1 = k.run(d1.batch), r2 = k.run(d2.batch);
    CHECK(r1.sum("loss") == Approx(r2.sum("loss")).epsilon(1e-12));
    CHECK(d1.f32[3] == d2.f32[3]);
}

// Several threads run a batch in chunks they take as they come free (kernel.cpp's chunk_ends),
// each chunk with sums of its own. Every row is run once whatever the thread count: the same
// gradient bits, the same counts of ignored and fully masked rows (scattered over the chunks),
// the same loss to rounding; and from run to run the same loss bits. Across rows (K = 10, the
// chunks whole blocks of 16 rows), row by row with a gradient (K = 1000), and a loss alone
// (K = 1000: the logsumexps' tail batched per 16 rows).
TEST_CASE("threads: a batch in chunks runs every row once, the same for any thread count") {
    struct Shape {
        std::size_t K, N;
        bool grad;
    };
    for (const Shape& shape : {Shape{10, 40000, true}, Shape{1000, 2000, true}, Shape{1000, 2000, false}}) {
        const std::size_t K = shape.K, N = shape.N;  // plain variables: clang 14 captures no structured bindings
        const bool grad = shape.grad;
        INFO("K " << K << ", N " << N << (grad ? ", with a gradient" : ", loss alone"));
        CompileOptions o;
        o.row_length = K;
        const Kernel k = compile(jt::ce_hard(grad), o);
        std::vector<float> u(N * K);
        std::vector<std::int64_t> y(N);
        std::mt19937 rng(static_cast<std::uint32_t>(K));
        std::normal_distribution<float> nd(0, 3);
        for (float& x : u) x = nd(rng);
        std::size_t ignored = 0, masked = 0;  // a row both ignored and masked is ignored (skipped unread)
        for (std::size_t r = 0; r < N; ++r) {
            y[r] = r % 89 == 5 ? -100 : static_cast<std::int64_t>(rng() % K);
            if (r % 97 == 3) std::fill_n(u.begin() + static_cast<std::ptrdiff_t>(r * K), K, -std::numeric_limits<float>::infinity());
            ignored += r % 89 == 5;
            masked += r % 97 == 3 && r % 89 != 5;
        }
        auto run = [&](int threads, std::vector<float>& grad_u) {
            grad_u.assign(N * K, 7.0f);
            Batch b;
            b.bind("u", matrix(static_cast<const float*>(u.data()), N, K)).bind("y", column(static_cast<const std::int64_t*>(y.data()), N));
            if (grad) b.bind("grad.u", matrix(grad_u.data(), N, K));
            return k.run(b.threads(threads));
        };
        std::vector<float> g1, gt;
        const Result one = run(1, g1);
        CHECK(one.ignored == ignored);
        CHECK(one.masked == masked);
        for (int threads : {2, 3, 5}) {
            INFO(threads << " threads");
            const Result r = run(threads, gt);
            CHECK(r.ignored == one.ignored);
            CHECK(r.masked == one.masked);
            CHECK(r.loss() == Approx(one.loss()).epsilon(1e-12));
            CHECK(std::memcmp(gt.data(), g1.data(), N * K * sizeof(float)) == 0);
            CHECK(run(threads, gt).loss() == r.loss());  // bit for bit from run to run
        }
    }
}

TEST_CASE("every IR optimization level and every shape of a known row's tail") {
    // K with no tail, a tail of one vector or less (straight-line), a tail loop, and one vector
    // or less in all (no full-vector loop), for 16 lanes x unroll 2 and other widths alike.
    for (const auto& c : jt::cases()) {
        if (c.name != "ce_soft" && c.name != "ce_hard") continue;
        for (int level = 0; level <= 3; ++level)
            for (std::size_t K : {33, 40, 48, 57, 64, 100, 1000}) {
                INFO("opt_level " << level << " K " << K);
                CompileOptions o;
                o.opt_level = level;
                o.row_length = K;
                jt::check_case(c, 5, K, o, jt::Mode::normal, static_cast<std::uint32_t>(K + level));
                jt::check_case(c, 5, K, o, jt::Mode::neg_inf, static_cast<std::uint32_t>(K * 7 + level));
            }
    }
}

TEST_CASE("inspection of the schedule and the IR before and after optimization and the assembly") {
    CompileOptions o;
    o.row_length = 1000;
    Kernel k = compile(jt::ce_soft(), o);
    const std::string s = k.schedule();
    INFO(s);
    CHECK(s.find("2 passes") != std::string::npos);
    CHECK(s.find("dot") != std::string::npos);
    CHECK(s.find("write grad.u") != std::string::npos);
    const std::string before = k.llvm_ir(false), after = k.llvm_ir(true);
    CHECK(before.find("define void @lossjit_kernel") != std::string::npos);
    CHECK(after.find("define void @lossjit_kernel") != std::string::npos);
    CHECK(before != after);
    const std::string as = k.assembly();
    CHECK(as.find("lossjit_kernel") != std::string::npos);
    if (k.cpu().find("znver") != std::string::npos || as.find("zmm") != std::string::npos) CHECK(as.find("zmm") != std::string::npos);
}

// The exp loop of a loss alone prefetches the rows ahead into the L2 only: into the L1 each
// prefetch held a miss buffer the loop's own loads waited for (fwd 512x32000 1.8x slower on a Zen 4).
TEST_CASE("the exp loop's prefetches fill the L2 and not the L1") {
    for (std::size_t K : {1000, 32000, 256000}) {
        INFO("K " << K);
        CompileOptions o;
        o.row_length = K;
        const std::vector<std::string> calls = jt::prefetch_calls(compile(jt::ce_hard(false), o).llvm_ir(true));
        for (const std::string& line : calls) {
            INFO(line);
            CHECK(line.find("i32 0, i32 2, i32 1)") != std::string::npos);  // read, locality 2 (L2), data
        }
        CHECK(!calls.empty());
    }
}

TEST_CASE("the optimized IR calls no libm function") {
    for (const auto& c : jt::cases()) {
        CompileOptions o;
        o.params = c.params;
        o.row_length = 1000;
        const std::string ir = compile(c.g, o).llvm_ir(true);
        std::size_t pos = 0;
        while ((pos = ir.find("declare ", pos)) != std::string::npos) {
            const std::size_t end = ir.find('\n', pos);
            const std::string line = ir.substr(pos, end - pos);
            INFO(c.name << ": " << line);
            CHECK(line.find("@llvm.") != std::string::npos);
            pos = end;
        }
    }
}

// ---- the speed paths: cached softmax with blocks (across rows: test_across_rows.cpp) ---------

TEST_CASE("cached softmax: the schedule keeps the exps; blocks, in place and generic K agree") {
    CompileOptions o;
    o.row_length = 1000;
    CHECK(compile(jt::ce_hard(), o).schedule().find("kept in a scratch row") != std::string::npos);
    o.lse = CompileOptions::Lse::online;  // online logsumexp: exps are recomputed
    CHECK(compile(jt::ce_hard(), o).schedule().find("kept in a scratch row") == std::string::npos);
    for (std::size_t block : {16, 100, 0}) {
        CompileOptions b;
        b.block = block;
        for (const jt::Case& c : jt::cases())
            for (std::size_t K : {17, 1000, 3001}) {
                jt::check_case(c, 6, K, b, jt::Mode::normal, 41);
                jt::check_case(c, 4, K, b, jt::Mode::neg_inf, 42);
            }
    }
}
