// Every run-time misuse is a lossjit::error with a plain message, raised before anything is
// written: missing or unknown bindings, null pointers, K = 0, stride < K, labels out of range,
// shape mismatches, wrong dtypes, a specialized kernel run with another K, a negative thread
// count; and compile errors.
#include "common.hpp"

using namespace lossjit;
using Catch::Matchers::Contains;

namespace {

struct Setup {
    std::size_t N = 4, K = 10;
    std::vector<float> u, g, loss;
    std::vector<std::int64_t> y;
    Setup() : u(N * K, 0.5f), g(N * K, 42.0f), loss(N, 42.0f), y(N, 3) {}
    Batch batch() {
        Batch b;
        b.bind("u", matrix(u.data(), N, K)).bind("y", column(y.data(), N)).bind("grad.u", matrix(g.data(), N, K)).bind("loss", column(loss.data(), N));
        return b;
    }
    bool untouched() const {
        for (float x : g)
            if (x != 42.0f) return false;
        for (float x : loss)
            if (x != 42.0f) return false;
        return true;
    }
};

Kernel ce(std::size_t K = 0) {
    CompileOptions o;
    o.row_length = K;
    return compile(jt::ce_hard(), o);
}

}  // namespace

TEST_CASE("errors: a class index that is not a label input") {
    Graph g;  // Graph built by hand: at(u, s) and onehot(s) of a scalar input s
    const int u = g.input("u", InputKind::logits), s = g.input("s", InputKind::scalar);
    Graph at_s = g, onehot_s = g;
    at_s.add_output("loss", at_s.apply(Op::at, u, s));
    onehot_s.add_output("grad.u", onehot_s.apply(Op::onehot, s));
    REQUIRE_THROWS_WITH(compile(at_s, CompileOptions{}), Contains("at needs a label input as its class index, not s"));
    REQUIRE_THROWS_WITH(compile(onehot_s, CompileOptions{}), Contains("onehot needs a label input as its class index, not s"));
}

TEST_CASE("errors: missing binding") {
    Setup s;
    Batch b;
    b.bind("u", matrix(s.u.data(), s.N, s.K)).bind("grad.u", matrix(s.g.data(), s.N, s.K));
    CHECK_THROWS_WITH(ce().run(b), Contains("missing binding for input 'y'"));
    Batch c;
    c.bind("u", matrix(s.u.data(), s.N, s.K)).bind("y", column(s.y.data(), s.N));
    CHECK_THROWS_WITH(ce().run(c), Contains("missing binding for output 'grad.u'"));
    CHECK(s.untouched());
}

TEST_CASE("errors: unknown binding name") {
    Setup s;
    Batch b = s.batch();
    b.bind("logits", matrix(s.u.data(), s.N, s.K));
    CHECK_THROWS_WITH(ce().run(b), Contains("unknown binding 'logits'") && Contains("u, y, loss, grad.u"));
    CHECK(s.untouched());
}

TEST_CASE("errors: null pointer") {
    Setup s;
    Batch b = s.batch();
    b.bind("u", matrix(static_cast<const float*>(nullptr), s.N, s.K));
    CHECK_THROWS_WITH(ce().run(b), Contains("'u' is bound to a null pointer"));
    CHECK(s.untouched());
}

TEST_CASE("errors: a negative thread count") {
    Setup s;
    Batch b = s.batch();
    CHECK_THROWS_WITH(ce().run(b.threads(-2)), Contains("threads(-2) is negative"));
    CHECK(s.untouched());
    CHECK_NOTHROW(ce().run(b.threads(0)));  // 0: all cores
}

TEST_CASE("errors: K = 0") {
    Setup s;
    Batch b = s.batch();
    b.bind("u", matrix(s.u.data(), s.N, 0)).bind("grad.u", matrix(s.g.data(), s.N, 0));
    CHECK_THROWS_WITH(ce().run(b), Contains("K = 0"));
    CHECK(s.untouched());
}

TEST_CASE("errors: stride < K") {
    Setup s;
    Batch b = s.batch();
    b.bind("u", matrix(s.u.data(), s.N / 2, s.K, 5));
    b.bind("u", Array{s.u.data(), DType::f32, s.N, s.K, 5, false});
    CHECK_THROWS_WITH(ce().run(b), Contains("'u' has row stride 5 < K = 10"));
    CHECK(s.untouched());
}

TEST_CASE("errors: a label out of range names the row and the value") {
    Setup s;
    s.y[2] = 10;
    CHECK_THROWS_WITH(ce().run(s.batch()), Contains("label 'y' at row 2 is 10, outside [0, 10)"));
    s.y[2] = -101;  // -100 is the default ignore_index (tests/jit/test_batch.cpp)
    CHECK_THROWS_WITH(ce().run(s.batch()), Contains("at row 2 is -101") && Contains("not ignore_index -100"));
    s.y[2] = -100;
    CHECK_THROWS_WITH(ce().run(s.batch().no_ignore_index()), Contains("at row 2 is -100, outside [0, 10)"));
    CHECK(s.untouched());
}

// The label pre-pass scans each label input on its own, on the run's threads: the error still
// names the first bad row over all of them, and a row ignored in both inputs is skipped once.
TEST_CASE("errors: of bad labels in two label inputs the first row's is named") {
    Graph g;  // the cross-entropy of u against two labels
    const int u = g.input("u", InputKind::logits), ly = g.input("y", InputKind::label), lt = g.input("t", InputKind::label);
    const int lse = g.apply(Op::logsumexp, u);
    g.add_output("loss", g.apply(Op::add, g.apply(Op::sub, lse, g.apply(Op::at, u, ly)), g.apply(Op::sub, lse, g.apply(Op::at, u, lt))));
    CompileOptions o;
    o.dtypes = {{"t", DType::i32}};
    const Kernel k = compile(g, o);
    const std::size_t N = 4096, K = 10;  // N * K large enough for the run to use 2 threads
    std::vector<float> x(N * K, 0.5f), loss(N, 42.0f);
    std::vector<std::int64_t> y(N, 3);
    std::vector<std::int32_t> t(N, 4);
    auto batch = [&] {
        Batch b;
        b.bind("u", matrix(x.data(), N, K)).bind("y", column(y.data(), N)).bind("t", column(t.data(), N)).bind("loss", column(loss.data(), N));
        return b.threads(2);
    };
    y[3001] = 10;
    y[3900] = -7;
    t[2500] = -5;
    t[2600] = 11;
    CHECK_THROWS_WITH(k.run(batch()), Contains("label 't' at row 2500 is -5, outside [0, 10)"));
    t[2500] = -100;  // ignore_index: the row is skipped, t[2600] is next
    CHECK_THROWS_WITH(k.run(batch()), Contains("label 't' at row 2600 is 11, outside [0, 10)"));
    t[2600] = 4;
    CHECK_THROWS_WITH(k.run(batch()), Contains("label 'y' at row 3001 is 10, outside [0, 10) and not ignore_index -100"));
    for (float v : loss) CHECK(v == 42.0f);
    y[3001] = y[3900] = 3;
    y[2500] = -100;  // ignored in both inputs: one row
    y[7] = -100;
    const Result r = k.run(batch());
    CHECK(r.ignored == 2);
    CHECK(r.counted == N - 2);
    CHECK(loss[7] == 0.0f);
    CHECK(loss[2500] == 0.0f);
    CHECK(loss[8] > 0.0f);
}

TEST_CASE("errors: shape mismatch between bound arrays") {
    Setup s;
    Batch b = s.batch();
    b.bind("grad.u", matrix(s.g.data(), s.N, s.K - 1));
    CHECK_THROWS_WITH(ce().run(b), Contains("shape mismatch") && Contains("'grad.u' has rows of 9"));
    Batch c = s.batch();
    c.bind("y", column(s.y.data(), s.N - 1));
    CHECK_THROWS_WITH(ce().run(c), Contains("shape mismatch") && Contains("rows"));
    CHECK(s.untouched());
}

TEST_CASE("errors: a specialized kernel run with another K") {
    Setup s;
    CHECK_THROWS_WITH(ce(12).run(s.batch()), Contains("specialized for K = 12") && Contains("K = 10"));
    CHECK(s.untouched());
}

TEST_CASE("errors: wrong dtype or const output or overlap or scale") {
    Setup s;
    std::vector<double> ud(s.N * s.K);
    Batch b = s.batch();
    b.bind("u", matrix(ud.data(), s.N, s.K));
    CHECK_THROWS_WITH(ce().run(b), Contains("'u' is bound to f64 data, the kernel expects f32"));
    Batch c = s.batch();
    c.bind("grad.u", matrix(static_cast<const float*>(s.g.data()), s.N, s.K));
    CHECK_THROWS_WITH(ce().run(c), Contains("output 'grad.u' is bound to const data"));
    Batch d = s.batch();
    d.bind("grad.u", matrix(s.u.data() + 1, s.N - 1, s.K));
    d.bind("u", matrix(s.u.data(), s.N - 1, s.K)).bind("y", column(s.y.data(), s.N - 1)).bind("loss", column(s.loss.data(), s.N - 1));
    CHECK_THROWS_WITH(ce().run(d), Contains("overlaps"));
    Batch e = s.batch();
    e.scale("loss", 2.0);
    CHECK_THROWS_WITH(ce().run(e), Contains("not a vector output"));
    CHECK(s.untouched());
}

TEST_CASE("errors at compile time") {
    Graph g;
    const int u = g.input("u", InputKind::logits), eps = g.input("eps", InputKind::param);
    g.add_output("loss", g.apply(Op::mul, eps, g.apply(Op::logsumexp, u)));
    CHECK_THROWS_WITH(compile(g), Contains("no value given for param 'eps'"));
    CompileOptions o;
    o.params = {{"eps", 0.1}, {"epz", 1}};
    CHECK_THROWS_WITH(compile(g, o), Contains("no param named 'epz'"));
    CompileOptions d;
    d.params = {{"eps", 0.1}};
    d.dtype = DType::i32;
    CHECK_THROWS_WITH(compile(g, d), Contains("dtype must be f32, f64 or bf16"));
    CHECK_THROWS_WITH(compile(Graph{}), Contains("no outputs"));
    CHECK_THROWS_AS(Kernel{}.run(Batch{}), lossjit::error);
}

TEST_CASE("errors: a misaligned pointer names the array; element-aligned pointers work") {
    Setup s;
    // a float array at an odd byte address
    std::vector<unsigned char> bytes(s.N * s.K * sizeof(float) + 8);
    unsigned char* odd = bytes.data() + (reinterpret_cast<std::uintptr_t>(bytes.data()) % 2 == 0 ? 1 : 0);
    Batch b = s.batch();
    b.bind("u", Array{odd, DType::f32, s.N, s.K, s.K, false});
    CHECK_THROWS_WITH(ce().run(b), Contains("'u' is at address 0x") && Contains("not a multiple of 4 bytes (misaligned f32 elements)"));
    Batch c = s.batch();
    c.bind("grad.u", Array{odd, DType::f32, s.N, s.K, s.K, true});
    CHECK_THROWS_WITH(ce().run(c), Contains("'grad.u' is at address") && Contains("misaligned"));
    std::vector<unsigned char> lbytes(s.N * 8 + 8);
    unsigned char* l4 = lbytes.data() + (8 - reinterpret_cast<std::uintptr_t>(lbytes.data()) % 8) % 8 + 4;  // 4 mod 8
    std::memcpy(l4, s.y.data(), s.N * 8);
    Batch d = s.batch();
    d.bind("y", Array{l4, DType::i64, s.N, 1, 1, false});
    CHECK_THROWS_WITH(ce().run(d), Contains("'y' is at address") && Contains("not a multiple of 8 bytes (misaligned i64 elements)"));
    CHECK(s.untouched());

    // Aligned to the element but not to a vector (one float past a 64-byte boundary): the same
    // results as aligned arrays, bit for bit, generic and specialized.
    std::vector<float> buf(s.N * s.K + 64), gbuf(s.N * s.K + 64);
    const auto shift = [](std::vector<float>& v) {
        const std::size_t to64 = (64 - reinterpret_cast<std::uintptr_t>(v.data()) % 64) % 64 / sizeof(float);
        return v.data() + to64 + 1;
    };
    float* u1 = shift(buf);
    float* g1 = shift(gbuf);
    for (std::size_t i = 0; i < s.N * s.K; ++i) s.u[i] = u1[i] = 0.25f * static_cast<float>(i % 13) - 1.0f;
    for (std::size_t K : {std::size_t{0}, s.K}) {
        ce(K).run(s.batch());
        Batch m;
        std::vector<float> loss1(s.N);
        m.bind("u", matrix(static_cast<const float*>(u1), s.N, s.K)).bind("y", column(s.y.data(), s.N));
        m.bind("grad.u", matrix(g1, s.N, s.K)).bind("loss", column(loss1.data(), s.N));
        ce(K).run(m);
        CHECK(std::memcmp(g1, s.g.data(), s.N * s.K * sizeof(float)) == 0);
        CHECK(std::memcmp(loss1.data(), s.loss.data(), s.N * sizeof(float)) == 0);
    }
}

TEST_CASE("errors: overlapping input and output buffers other than the exact in-place gradient") {
    Setup s;
    const std::vector<float> u0 = s.u;
    std::vector<float> w(s.K, 1.0f);
    auto all_untouched = [&] { return s.untouched() && s.u == u0; };
    // the gradient one element past the logits: a partial overlap
    Batch a = s.batch();
    a.bind("u", matrix(s.u.data(), s.N - 1, s.K)).bind("y", column(s.y.data(), s.N - 1)).bind("loss", column(s.loss.data(), s.N - 1));
    a.bind("grad.u", matrix(s.u.data() + 1, s.N - 1, s.K));
    CHECK_THROWS_WITH(ce().run(a), Contains("output 'grad.u' overlaps 'u'"));
    // the gradient over the logits with another row stride
    Batch b = s.batch();
    b.bind("u", matrix(s.u.data(), s.N / 2, s.K, 2 * s.K)).bind("y", column(s.y.data(), s.N / 2)).bind("loss", column(s.loss.data(), s.N / 2));
    b.bind("grad.u", matrix(s.u.data(), s.N / 2, s.K));
    CHECK_THROWS_WITH(ce().run(b), Contains("output 'grad.u' overlaps 'u'"));
    // the per-row loss inside the logits, inside the gradient, over the labels
    Batch c = s.batch();
    c.bind("loss", column(s.u.data() + 3, s.N));
    CHECK_THROWS_WITH(ce().run(c), Contains("output 'loss' overlaps 'u'"));
    Batch d = s.batch();
    d.bind("loss", column(s.g.data() + s.K, s.N));
    CHECK_THROWS_WITH(ce().run(d), Contains("'loss' overlaps 'grad.u'") || Contains("'grad.u' overlaps 'loss'"));
    Batch e = s.batch();
    e.bind("loss", column(reinterpret_cast<float*>(s.y.data()), s.N));
    CHECK_THROWS_WITH(ce().run(e), Contains("output 'loss' overlaps 'y'"));
    // the gradient over a row of class weights shared by the batch
    Graph weighted;
    for (const jt::Case& cs : jt::cases())
        if (cs.name == "class_weights") weighted = cs.g;
    const Kernel kw = compile(weighted, CompileOptions{});
    Batch f = s.batch();
    f.bind("w", shared_row(s.g.data() + 2 * s.K, s.K));
    CHECK_THROWS_WITH(kw.run(f), Contains("output 'grad.u' overlaps 'w'"));
    CHECK(all_untouched());
}
