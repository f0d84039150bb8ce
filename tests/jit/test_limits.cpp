// Inputs at the edges of what a batch can be, each with a defined result and nothing crashing:
// an empty batch, K = 1, +inf logits, and a huge K of 10^7 (specialized and generic, memory
// bounded by one scratch row per thread).
#include <sys/resource.h>

#include <cstdint>
#include <cstring>
#include <utility>

#include "common.hpp"
#include "jit/engine.hpp"

using namespace lossjit;

namespace {

Kernel ce(std::size_t K = 0) {
    CompileOptions o;
    o.row_length = K;
    return compile(jt::ce_hard(), o);
}

struct Rows {
    std::size_t N, K;
    std::vector<float> u, g, loss;
    std::vector<std::int64_t> y;
    Rows(std::size_t n, std::size_t k) : N(n), K(k), u(n * k), g(n * k, NAN), loss(n, NAN), y(n, 0) {}
    Batch batch() {
        Batch b;
        b.bind("u", matrix(static_cast<const float*>(u.data()), N, K)).bind("y", column(y.data(), N));
        b.bind("grad.u", matrix(g.data(), N, K)).bind("loss", column(loss.data(), N));
        return b;
    }
};

// Cross-entropy of one row in long double: the loss, and the row's logsumexp for the gradient.
long double reference_loss(const float* u, std::size_t K, std::int64_t y, long double& lse) {
    long double m = -INFINITY;
    for (std::size_t j = 0; j < K; ++j) m = std::max<long double>(m, u[j]);
    long double s = 0;
    for (std::size_t j = 0; j < K; ++j) s += expl(static_cast<long double>(u[j]) - m);
    lse = m + logl(s);
    return lse - u[y];
}

long peak_rss_kb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

}  // namespace

TEST_CASE("limits: an empty batch (N = 0) writes nothing and reduces to 0") {
    for (std::size_t K : {std::size_t{0}, std::size_t{7}}) {
        Rows d(1, 7);  // storage for one row; the batch says 0 rows
        for (Reduction red : {Reduction::none, Reduction::sum, Reduction::mean}) {
            Batch b;
            b.bind("u", matrix(static_cast<const float*>(d.u.data()), 0, 7)).bind("y", column(d.y.data(), 0));
            b.bind("grad.u", matrix(d.g.data(), 0, 7)).bind("loss", column(d.loss.data(), 0));
            const Result r = ce(K).run(b.reduction(red));
            CHECK(r.rows == 0);
            CHECK(r.counted == 0);
            CHECK(r.loss() == 0.0);
        }
        CHECK(std::isnan(d.loss[0]));
        for (float x : d.g) CHECK(std::isnan(x));
    }
}

TEST_CASE("limits: K = 1 gives loss 0 and gradient 0; a -inf row is masked") {
    for (std::size_t K : {std::size_t{0}, std::size_t{1}}) {
        Rows d(5, 1);
        d.u = {3.5f, -1e30f, 0.0f, 88.0f, -INFINITY};
        const Result r = ce(K).run(d.batch().reduction(Reduction::mean));
        for (std::size_t i = 0; i < 4; ++i) {
            INFO("row " << i << " logit " << d.u[i]);
            CHECK(d.loss[i] == 0.0f);
            CHECK(d.g[i] == 0.0f);
        }
        CHECK(d.loss[4] == 0.0f);  // every logit -inf: a fully masked row, skipped
        CHECK(d.g[4] == 0.0f);
        CHECK(r.masked == 1);
        CHECK(r.loss() == 0.0);
    }
}

// The loss is the limit where it has one: +inf when a class other than the target is +inf,
// NaN when the target itself is +inf (inf - inf). The gradient softmax - onehot is NaN at every
// +inf class and the limit elsewhere (softmax 0: -1 at the target, 0 at the others), in every
// kernel shape: across rows (K 6), one block (1000), several blocks with the +inf in a later one
// (5000), generic K; other rows are untouched.
TEST_CASE("limits: +inf logits give a +inf or NaN loss and a NaN gradient at the +inf classes only") {
    for (std::size_t K : {std::size_t{0}, std::size_t{6}, std::size_t{1000}, std::size_t{5000}}) {
        const std::size_t k = K ? K : 6;
        Rows d(4, k);
        for (std::size_t i = 0; i < d.u.size(); ++i) d.u[i] = static_cast<float>(i % 5) - 2.0f;
        d.y = {1, 2, 3, 0};
        const std::size_t late = k - 1;                    // in the last block of a long row
        d.u[0 * k + 1] = INFINITY;                         // the target class at +inf
        d.u[1 * k + 4] = INFINITY;                         // another class at +inf
        d.u[2 * k + 0] = d.u[2 * k + late] = INFINITY;     // two of them
        const Result r = ce(K).run(d.batch());
        INFO("K " << k << (K ? " specialized" : " generic"));
        CHECK(std::isnan(d.loss[0]));
        CHECK(d.loss[1] == INFINITY);
        CHECK(d.loss[2] == INFINITY);
        const std::vector<std::vector<std::size_t>> inf_at = {{1}, {4}, {0, late}};
        for (std::size_t row = 0; row < 3; ++row)
            for (std::size_t j = 0; j < k; ++j) {
                INFO("row " << row << " class " << j);
                const float g = d.g[row * k + j];
                const bool inf = std::find(inf_at[row].begin(), inf_at[row].end(), j) != inf_at[row].end();
                if (inf) CHECK(std::isnan(g));
                else CHECK(g == (j == static_cast<std::size_t>(d.y[row]) ? -1.0f : 0.0f));
            }
        CHECK(std::isfinite(d.loss[3]));
        for (std::size_t j = 0; j < k; ++j) CHECK(std::isfinite(d.g[3 * k + j]));
        CHECK(std::isnan(r.loss()));
    }
}

// A row longer than one block (Plan::block) whose first block is all -inf (masked) and whose max
// is far below 0: that block's softmax factor was exp(0 - max - lo) = inf, and its gradient
// 0 * inf = NaN where it is 0. Generic, specialized, and pipelined rows (K a multiple of 16).
TEST_CASE("limits: a block of -inf alone below a max of -100 has gradient 0, not NaN") {
    for (std::size_t K : {std::size_t{0}, std::size_t{70001}, std::size_t{70000}}) {
        const std::size_t k = K ? K : 70001;
        const Kernel kern = ce(K);
        INFO("K " << k << (K ? " specialized" : " generic") << "; " << kern.schedule());
        REQUIRE(k > 2 * jit::make_plan(kern.graph(), CompileOptions{}, jit::host()).block);
        Rows d(2, k);
        for (std::size_t r = 0; r < 2; ++r)
            for (std::size_t j = 0; j < k; ++j) d.u[r * k + j] = j < k / 2 ? -INFINITY : -100.0f - static_cast<float>(j % 7);
        d.y = {60000, 50000};
        kern.run(d.batch());
        for (std::size_t r = 0; r < 2; ++r) {
            long double lse = 0;
            CHECK(d.loss[r] == Approx(static_cast<double>(reference_loss(&d.u[r * k], k, d.y[r], lse))).epsilon(1e-5));
            std::size_t wrong = 0;
            for (std::size_t j = 0; j < k; ++j) {
                const long double want = expl(static_cast<long double>(d.u[r * k + j]) - lse) - (static_cast<std::int64_t>(j) == d.y[r] ? 1 : 0);
                wrong += !(std::fabs(static_cast<long double>(d.g[r * k + j]) - want) <= 1e-6L * std::fabs(want) + 1e-30L);
            }
            CHECK(wrong == 0);
        }
    }
}

TEST_CASE("limits: K = 10^7 specialized and generic; memory bounded by one scratch row per thread") {
    constexpr std::size_t K = 10000000, N = 2;
    Rows d(N, K);
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0, 3);
    for (float& x : d.u) x = nd(rng);
    for (std::size_t j = 0; j < K; j += 3) d.u[K + j] = -INFINITY;  // row 1: a third masked
    d.y = {1234567, 9999998};
    long double lse[N], want[N];
    for (std::size_t r = 0; r < N; ++r) want[r] = reference_loss(d.u.data() + r * K, K, d.y[r], lse[r]);
    // Both kernels sum exps per block (two passes), so they share the tolerances.
    for (std::size_t spec : {K, std::size_t{0}}) {
        INFO((spec ? "specialized" : "generic") << " kernel");
        const long double rel = 1e-5L, abs_grad = 1e-6, grad_sum = 1e-4;
        const Kernel k = ce(spec);
        std::fill(d.g.begin(), d.g.end(), NAN);
        const int threads = 2;
        const long before = peak_rss_kb();
        const Result res = k.run(d.batch().threads(threads).reduction(Reduction::sum));
        const long grown_kb = peak_rss_kb() - before;
        // scratch: the cached exps of a row (4 bytes an element) per thread, plus 16 MB slack
        const long bound_kb = threads * static_cast<long>(K * sizeof(float) / 1024) + 16 * 1024;
        INFO("peak memory grew by " << grown_kb << " KB during the run; bound " << bound_kb << " KB");
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
        WARN("memory bound not checked: sanitizers keep shadow memory and quarantines");
        (void)bound_kb;
#else
        CHECK(grown_kb <= bound_kb);
#endif
        long double total = 0;
        for (std::size_t r = 0; r < N; ++r) {
            INFO("row " << r << ": loss " << d.loss[r] << ", want " << static_cast<double>(want[r]));
            CHECK(std::fabs(d.loss[r] - want[r]) <= rel * want[r]);
            total += want[r];
            // the gradient: every element against the reference, and its sum (0 in exact arithmetic)
            double worst = 0, sum = 0;
            for (std::size_t j = 0; j < K; ++j) {
                const long double p = expl(static_cast<long double>(d.u[r * K + j]) - lse[r]) - (static_cast<std::int64_t>(j) == d.y[r]);
                const double gj = d.g[r * K + j];
                worst = std::max(worst, static_cast<double>(fabsl(gj - p)));
                sum += gj;
            }
            INFO("largest gradient error " << worst << ", gradient sum " << sum);
            CHECK(worst <= abs_grad);
            CHECK(std::fabs(sum) <= grad_sum);
        }
        CHECK(std::fabs(res.loss() - total) <= rel * total);
    }
}

// A batch whose rows (logits read, gradient written) outgrow L3 stores its gradient with
// streaming stores (Plan::stream_min_bytes, printed in the schedule) where a row has 4 KB of
// output or more and either K is a multiple of the vector width and the row starts on a vector
// boundary, or the rows are pipelined (fp32 past 1024 elements: each row's whole vectors from
// its first aligned one); the vector holding the label's element is stored plainly. The values
// must be those of the plain stores: the same batch run a few rows at a time (each run below
// the threshold) gives them, bit for bit, at several alignments of the output (64-byte aligned
// buffers: every row streams, or none, or each from its own first aligned vector), with 1 and
// 2 threads (2: in chunks, the decision the batch's), for fp32 and bf16 gradients; rows of 4 KB
// (max ahead, fp32) and 128 KB (pipelined, fp32), and pipelined rows of part of a vector at
// their end, of one block and of several (fp32).
template <class T>
void check_streaming_stores(DType dtype) {
    // stream (1024: fp32 only); pipelined (4099, fp32 only); generic K (row length 0): its
    // kernels for long rows of a multiple of the vector width and for other long rows of
    // several blocks
    const std::pair<std::size_t, std::size_t> cases[] = {{32768, 32768}, {1024, 1024}, {4099, 4099}, {0, 32768}, {0, 40009}};
    for (const auto& c : cases) {
        const std::size_t row_length = c.first, K = c.second;
        const bool pipelined = std::is_same_v<T, float> && K > 1024;
        if (K % 16 != 0 && !pipelined) continue;  // no kernel streams these rows (generic K: another's schedule would say it does)
        CompileOptions o;
        o.row_length = row_length;
        o.dtype = dtype;
        const Kernel k = compile(jt::ce_hard(), o);
        const std::string plan = k.schedule();
        const std::string mark = " when the batch reads and writes ";
        const auto at = plan.find("(streaming stores") == std::string::npos ? std::string::npos : plan.find(mark);
        INFO(plan);
        if (at == std::string::npos) {  // rows under 4 KB, or L3 unknown
            if (K * sizeof(T) >= 4096) {
                if (lossjit::jit::host().l3_bytes > 0) FAIL("no streaming stores at K = " << K << " with an L3 of " << lossjit::jit::host().l3_bytes << " bytes");
                WARN("no streaming stores at K = " << K << ": this host's L3 size is unknown");
            }
            continue;
        }
        const std::size_t threshold = std::stoull(plan.substr(at + mark.size()));
        const std::size_t row_bytes = 2 * K * sizeof(T);            // u and grad.u
        const std::size_t N = threshold / row_bytes * 2 + 3;         // the batch: twice the threshold
        if (N * K * sizeof(T) > (std::size_t{1} << 30)) {
            WARN("L3 of " << threshold << " bytes: the batch would be too large to test here");
            continue;
        }
        INFO("K " << K << ", N " << N << ", " << to_string(dtype));
        std::vector<T> u(N * K);
        // the outputs start at a 64-byte boundary (a large vector's storage is 16 bytes past one)
        // plus an offset
        const std::size_t pad = 64 / sizeof(T);
        std::vector<T> want_store(N * K + 2 * pad), got_store(N * K + 2 * pad);
        auto boundary = [](std::vector<T>& v) {
            return v.data() + (64 - reinterpret_cast<std::uintptr_t>(v.data()) % 64) % 64 / sizeof(T);
        };
        T *want = boundary(want_store), *got = boundary(got_store);
        std::vector<std::int64_t> y(N);
        std::mt19937 rng(11);
        std::normal_distribution<float> nd(0, 4);
        auto value = [](float f) {
            if constexpr (std::is_same_v<T, float>) return f;
            else return bf16::from_float(f);
        };
        for (T& x : u) x = value(nd(rng));
        for (std::size_t r = 0; r < N; ++r) y[r] = static_cast<std::int64_t>(rng() % K);
        auto run = [&](T* g, std::size_t r0, std::size_t r1, int threads) {
            Batch b;
            b.bind("u", matrix(static_cast<const T*>(u.data() + r0 * K), r1 - r0, K)).bind("y", column(y.data() + r0, r1 - r0));
            b.bind("grad.u", matrix(g + r0 * K, r1 - r0, K));
            return k.run(b.threads(threads).reduction(Reduction::sum)).loss();
        };
        const std::size_t step = std::max<std::size_t>(1, threshold / row_bytes / 2);
        for (std::size_t offset : {std::size_t{0}, pad / 2, std::size_t{1}}) {  // elements past a 64-byte boundary
            INFO("output " << offset << " elements past a 64-byte boundary");
            double loss_plain = 0;
            for (std::size_t r0 = 0; r0 < N; r0 += step) loss_plain += run(want + offset, r0, std::min(N, r0 + step), 1);
            for (int threads : {1, 2}) {
                std::fill(got_store.begin(), got_store.end(), value(0.5f));
                const double loss = run(got + offset, 0, N, threads);
                CHECK(std::fabs(loss - loss_plain) <= 1e-9 * std::fabs(loss_plain));
                std::size_t differ = 0;
                for (std::size_t i = 0; i < N * K; ++i) differ += std::memcmp(&got[offset + i], &want[offset + i], sizeof(T)) != 0;
                INFO(threads << " threads");
                CHECK(differ == 0);
            }
        }
    }
}

TEST_CASE("limits: streaming stores of a gradient larger than L3 give the bits of plain stores") {
    check_streaming_stores<float>(DType::f32);
    check_streaming_stores<bf16>(DType::bf16);
}
