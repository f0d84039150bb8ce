// JIT loss and gradient against the reference evaluator (long double): the cross-entropy golden
// graphs and more expressions over the whole op vocabulary, K in {1, 3, 16, 17, 1000, 32005},
// -inf logits where the target is 0, logits of +-80, specialized and generic kernels, fp32,
// fp64 and bf16, both logsumexp strategies and blocked rows. The row kernels' strategies:
// test_row_strategies.cpp.
#include "common.hpp"

#include <cstring>
#include <random>
#include "jit/schedule.hpp"

using namespace lossjit;

namespace {
const std::size_t Ks[] = {1, 3, 16, 17, 1000, 32005};
std::size_t rows_for(std::size_t K) { return K >= 32005 ? 3 : K >= 1000 ? 9 : 37; }
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
