// Every run-time misuse is a lossjit::error with a plain message, raised before anything is
// written: missing or unknown bindings, null pointers, K = 0, stride < K, labels out of range,
// shape mismatches, wrong dtypes, a specialized kernel run with another K; and compile errors.
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
