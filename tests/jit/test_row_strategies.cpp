// The row kernels' strategies against the reference evaluator and against a kernel without them:
// pipelined rows (Plan::pipelined), the logsumexps' tail per batch of rows (Plan::batched_tail)
// and the next row's max taken ahead (Plan::max_ahead), specialized and generic K.
#include "common.hpp"

#include <cstring>
#include <functional>
#include <random>
#include <set>

using namespace lossjit;

namespace {
// A row length of at least `at_least` past generic K's block and odd (not a multiple of the
// vector width): one of its kernels without the max ahead (rows of one block) takes it, for rows
// padded with -inf (jt::padded_rows) as a reference.
std::size_t other_length(const Kernel& generic, std::size_t at_least) {
    const std::string plans = generic.schedule(), mark = "in blocks of ";
    const std::size_t at = plans.find(mark, plans.find("rows of any other length:"));
    REQUIRE(at != std::string::npos);
    const std::size_t k = std::max<std::size_t>(at_least, std::stoull(plans.substr(at + mark.size())) + 1);
    return k % 2 ? k : k + 1;
}

// Case c against the reference at each dtype, block, row length (lengths(block)) and mode,
// specialized and generic K; each kernel's schedule says `mark`.
void check_layouts(const jt::Case& c, std::initializer_list<DType> dtypes, std::initializer_list<std::size_t> blocks,
                   const std::function<std::vector<std::size_t>(std::size_t)>& lengths, const std::string& mark) {
    for (DType dt : dtypes)
        for (std::size_t block : blocks)
            for (std::size_t K : lengths(block))
                for (bool spec : {true, false})
                    for (auto mode : {jt::Mode::normal, jt::Mode::neg_inf, jt::Mode::big}) {
                        INFO(c.name << " " << to_string(dt) << ", block " << block << ", specialized " << spec << ", K " << K);
                        CompileOptions o;
                        o.dtype = dt;
                        o.row_length = spec ? K : 0;
                        o.block = block;
                        const Kernel k = jt::check_case(c, 9, K, o, mode, static_cast<std::uint32_t>(K + 3));
                        CHECK(k.schedule().find(mark) != std::string::npos);
                    }
}

// A batch of N rows of K logits u with labels y, its per-row losses into loss and (grad non-null)
// its gradient into grad.
Batch ce_batch(const float* u, const std::int64_t* y, float* loss, float* grad, std::size_t N, std::size_t K, int threads) {
    Batch b;
    b.bind("u", matrix(u, N, K)).bind("y", column(y, N)).bind("loss", column(loss, N)).threads(threads);
    if (grad) b.bind("grad.u", matrix(grad, N, K));
    return b;
}
}  // namespace

// Plan::pipelined: a row's gradient pass runs inside the next row's exp loop, the last row's
// after the rows; rows of one block (K = 5008, and 5003 with part of a vector at its end) and of
// many (blocks of 64 and 1000), the stores aligned from each row's first aligned vector.
TEST_CASE("pipelined rows: each row's gradient pass inside the next row's exp loop") {
    Graph p_only;  // the probabilities as the only vector output: softmax(u) itself
    {
        const int u = p_only.input("u", InputKind::logits), y = p_only.input("y", InputKind::label);
        p_only.add_output("loss", p_only.apply(Op::sub, p_only.apply(Op::logsumexp, u), p_only.apply(Op::at, u, y)));
        p_only.add_output("p", p_only.apply(Op::softmax, u));
    }
    for (const jt::Case& c : {jt::Case{"ce_hard", jt::ce_hard(), {}}, jt::Case{"softmax", p_only, {}}})
        check_layouts(c, {DType::f32, DType::f64}, {0, 64, 1000}, [](std::size_t block) { return std::vector<std::size_t>{block == 1000 ? 4112u : 5008u, 5003}; },
                      "pipelined");
    // The kernels pipelined, the specialized one and generic K's for long rows (of a multiple of
    // the vector width, of one block, of several), against generic K's kernel of the same loss
    // with the softmax as a second vector output (a last pass of two writes is not pipelined):
    // ignored and fully masked rows between pending ones, in place, on one and two threads.
    // Element for element in blocks, as the reference takes them; a row of one block (block 0:
    // specialized, and generic K's kernel for rows of one block at K = 5003) takes softmax as the
    // kept exps / their sum instead, rounded differently.
    for (std::size_t K : {5008, 5003})
        for (std::size_t block : {0, 64}) {
            INFO("block " << block << ", K " << K);
            const std::size_t N = 9;
            CompileOptions o;
            o.block = block;
            const Kernel generic = compile(jt::ce_hard(), o);
            Graph two_writes = jt::ce_hard();
            two_writes.add_output("p", two_writes.apply(Op::softmax, 0));  // node 0: the logits u
            const Kernel reference = compile(two_writes, o);
            REQUIRE(reference.schedule().find("pipelined") == std::string::npos);
            o.row_length = K;
            const Kernel piped = compile(jt::ce_hard(), o);
            REQUIRE(piped.schedule().find("pipelined") != std::string::npos);
            std::mt19937 rng(5);
            std::normal_distribution<float> nd(0, 3);
            std::vector<float> u(N * K);
            for (float& x : u) x = nd(rng);
            std::vector<std::int64_t> y(N);
            for (auto& v : y) v = static_cast<std::int64_t>(rng() % K);
            y[0] = y[3] = y[4] = y[8] = -100;  // ignored: the first, two in a row, the last
            for (std::size_t j = 0; j < K; ++j) u[6 * K + j] = -INFINITY;  // fully masked
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
                        std::vector<float> g_ref(N * K, 7.f), p_ref(N * K), x(u), l_ref(N), l(N);
                        float* g = apart < 0 ? x.data() : gradient_at(apart, x.data());
                        Batch refs = ce_batch(u.data(), y.data(), l_ref.data(), g_ref.data(), N, K, threads);
                        const Result ra = reference.run(refs.bind("p", matrix(p_ref.data(), N, K)));
                        const Result rb = k->run(ce_batch(x.data(), y.data(), l.data(), g, N, K, threads));
                        CHECK(ra.ignored == 4);
                        CHECK(ra.masked == 1);
                        CHECK(rb.ignored == ra.ignored);
                        CHECK(rb.masked == ra.masked);
                        CHECK(rb.loss() == Approx(ra.loss()).epsilon(1e-12));
                        for (std::size_t i = 0; i < N; ++i) CHECK(l[i] == l_ref[i]);
                        const bool exact = block || (k == &generic && K % 16 == 0);
                        std::size_t differ = 0;
                        for (std::size_t r = 0; r < N; ++r)
                            for (std::size_t j = 0; j < K; ++j) {
                                const float want = g_ref[r * K + j], got = g[r * K + j];
                                differ += exact ? got != want : std::fabs(got - want) > 1e-6f * std::fabs(want) + 1e-30f;
                            }
                        CHECK(differ == 0);
                    }
        }
}

// Plan::pipelined for every write that reads of its row only the cached softmax, onehots and
// per-row scalars (jit::pending_row_scalars): label smoothing (a constant), z-loss (a scalar of
// the logsumexp), class weights (a gather) and a per-row scalar input, each row's kept by the
// pending row while the next row's scalars are computed. Against the reference, with masked and
// ignored rows, rows of one block and of several, specialized and generic; the other losses
// not pipelined.
TEST_CASE("pipelined rows: writes of the cached softmax and the row's scalars") {
    const std::set<std::string> pipelined = {"ce_hard", "label_smoothing", "z_loss", "class_weights", "scalar_input"};
    for (const jt::Case& c : jt::cases())
        for (std::size_t block : {0, 64})
            for (bool spec : {true, false}) {
                INFO(c.name << ", block " << block << ", specialized " << spec);
                const std::size_t K = 5003;
                CompileOptions o;
                o.row_length = spec ? K : 0;
                o.block = block;
                const Kernel k = jt::check_case(c, 9, K, o, jt::Mode::neg_inf, 17);
                const std::string plans = k.schedule();
                // generic K: the kernel for rows of 5003 is the last but one (rows of one block, or of several)
                const std::size_t at = spec ? 0 : plans.rfind("rows of", plans.rfind("rows of") - 1);
                CHECK((plans.find("(pipelined", at) != std::string::npos) == pipelined.contains(c.name));
            }
}

// Plan::kept_node: a logsumexp whose argument is a transcendental function (soft-capping's
// cap tanh(u / cap)) has it, or its part the gradient reads too (tanh(u / cap)), stored in the
// scratch row by its max loop and read back by its exp loop and the gradient pass. Against the
// reference: fwd and fwd+bwd, fp32, fp64 and bf16, rows in one block and in several, specialized
// and generic, with masked and ignored rows and logits of +-80; cross-entropy's argument (the
// logits) is not kept.
TEST_CASE("kept node: a costly logsumexp argument computed once an element") {
    const jt::Case soft_cap = [] {
        for (const jt::Case& c : jt::cases())
            if (c.name == "soft_cap") return c;
        FAIL("no soft_cap case");
        return jt::Case{};
    }();
    Graph fwd;  // its loss alone
    {
        const int u = fwd.input("u", InputKind::logits), y = fwd.input("y", InputKind::label), cap = fwd.input("cap", InputKind::param);
        const int v = fwd.apply(Op::mul, cap, fwd.apply(Op::tanh, fwd.apply(Op::div, u, cap)));
        fwd.add_output("loss", fwd.apply(Op::sub, fwd.apply(Op::logsumexp, v), fwd.apply(Op::at, v, y)));
    }
    // the gradient reads tanh(u / cap) too: that is kept, and cap tanh(u / cap) computed from it
    for (const auto& [c, kept] : {std::pair{soft_cap, "[tanh(u / 3e+01) kept"}, std::pair{jt::Case{"soft_cap_fwd", fwd, soft_cap.params}, "[3e+01 * tanh(u / 3e+01) kept"}})
        check_layouts(c, {DType::f32, DType::f64, DType::bf16}, {0, 64}, [](std::size_t) { return std::vector<std::size_t>{40, 1000, 5003}; },
                      std::string(kept) + " in a scratch row by the max loop");
    CompileOptions o;
    o.row_length = 1000;
    CHECK(compile(jt::ce_hard(), o).schedule().find("kept in a scratch row by the max loop") == std::string::npos);
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
// range starts mid-batch). Rows of one block and of several (K = 40001, which with a gradient
// in the compute type are pipelined instead), specialized and generic. Not batched: gradients that read the logsumexp (z-loss) or log_softmax (focal); a
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
                            const bool pipelined = grad && K > 1000 && dt != DType::bf16;  // long rows, gradient in the compute type
                            CHECK(k.schedule().find(pipelined ? "(pipelined" : "per batch of") != std::string::npos);
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
                const Result ra = generic.run(ce_batch(up.data(), y.data(), l_ref.data(), grad ? g_ref.data() : nullptr, N, Kp, threads));
                // the gradient in place
                const Result rb = k->run(ce_batch(g_in.data(), y.data(), l.data(), grad ? g_in.data() : nullptr, N, K, threads));
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
