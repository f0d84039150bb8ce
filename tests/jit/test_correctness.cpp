// JIT loss and gradient against the reference evaluator (long double): the cross-entropy golden
// graphs and more expressions over the whole op vocabulary, K in {1, 3, 16, 17, 1000, 32005},
// -inf logits where the target is 0, logits of +-80, specialized and generic kernels, fp32,
// fp64 and bf16, both logsumexp strategies and blocked rows.
#include "common.hpp"
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

TEST_CASE("every expression with generic K at K = 16 32005 and with logits of +-80") {
    for (const auto& c : jt::cases()) {
        for (std::size_t K : {16, 32005}) {
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

TEST_CASE("logsumexp strategies online and two-pass and blocked rows") {
    const Graph g = jt::ce_soft();
    for (auto lse : {CompileOptions::Lse::online, CompileOptions::Lse::two_pass})
        for (std::size_t block : {0, 64, 1000})
            for (std::size_t K : {17, 1000, 32005}) {
                CompileOptions o;
                o.lse = lse;
                o.block = block;
                o.row_length = K == 1000 ? 0 : K;
                jt::check_case({"ce_soft", g, {}}, 3, K, o, jt::Mode::neg_inf, 17);
                jt::check_case({"ce_soft", g, {}}, 3, K, o, jt::Mode::big, 18);
            }
}

TEST_CASE("unroll factors and narrower vectors agree") {
    for (int unroll : {1, 3, 4}) {
        CompileOptions o;
        o.unroll = unroll;
        for (std::size_t K : {5, 100, 1001}) jt::check_case({"ce_hard", jt::ce_hard(), {}}, 5, K, o, jt::Mode::normal, 21);
    }
}

TEST_CASE("in-place gradient over the logits") {
    for (DType dt : {DType::f32, DType::bf16}) {
        CompileOptions o;
        o.dtype = dt;
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

TEST_CASE("inspection of the schedule and the IR before and after O3 and the assembly") {
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
