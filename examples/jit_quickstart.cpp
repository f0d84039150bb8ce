// The JIT quickstart: cross-entropy with integer labels written as mathematics, lowered to a
// Graph, JIT-compiled into one fused loss + gradient kernel for this CPU, run on N = 4096 rows of
// K = 32000 logits, checked against the reference evaluator on a sample of rows, timed against a
// plain C++ loop over the same data; then the first lines of the kernel's assembly.
#include <lossjit/eval.hpp>
#include <lossjit/kernel.hpp>
#include <lossjit/lossjit.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>
#include <vector>

using namespace lossjit::dsl;

constexpr auto u = logits<"u">;  // one row of K real logits
constexpr auto y = label<"y">;   // the row's class index
constexpr auto ce = -at(log_softmax(u), y);

int main() {
    const std::size_t N = 4096, K = 32000;
    const lossjit::Graph graph = lossjit::lower(ce, lossjit::wrt(u));  // outputs "loss", "grad.u"

    lossjit::CompileOptions options;
    options.row_length = K;  // specialized: K baked into the machine code
    lossjit::Kernel kernel = lossjit::compile(graph, options);
    std::cout << "compiled in " << kernel.compile_ms() << " ms for " << kernel.cpu() << "\n" << kernel.schedule();

    std::vector<float> logits(N * K), grad(N * K), row_loss(N);
    std::vector<std::int64_t> labels(N);
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (float& x : logits) x = normal(rng);
    for (auto& l : labels) l = static_cast<std::int64_t>(rng() % K);

    lossjit::Batch batch;
    batch.bind("u", lossjit::matrix(logits.data(), N, K))
        .bind("y", lossjit::column(labels.data(), N))
        .bind("grad.u", lossjit::matrix(grad.data(), N, K))
        .bind("loss", lossjit::column(row_loss.data(), N))
        .scale("grad.u", 1.0 / N);  // the gradient of the mean loss
    const lossjit::Result result = kernel.run(batch);
    std::cout << "mean loss " << result.mean("loss") << " over " << N << " rows\n";

    // check a sample of rows against the reference evaluator (long double)
    double worst = 0;
    for (std::size_t r = 0; r < N; r += 257) {
        lossjit::RowValues row;
        row.set("u", std::vector<long double>(logits.begin() + static_cast<std::ptrdiff_t>(r * K),
                                              logits.begin() + static_cast<std::ptrdiff_t>((r + 1) * K)));
        row.set("y", static_cast<long double>(labels[r]));
        const auto all = lossjit::evaluate_all(graph, row);
        for (const auto& out : graph.outputs()) {
            const lossjit::Value& want = all[static_cast<std::size_t>(out.root)];
            if (out.name.view() == "loss")
                worst = std::max(worst, static_cast<double>(std::fabs(row_loss[r] - want.s) / std::fabs(want.s)));
            else
                for (std::size_t j = 0; j < K; ++j)
                    worst = std::max(worst, static_cast<double>(std::fabs(grad[r * K + j] * N - want.v[j])) / 1e-3);
        }
    }
    std::cout << "largest error against the reference on sampled rows: " << worst << (worst < 1e-3 ? " (ok)\n" : " (TOO LARGE)\n");

    // the same computation as a plain C++ loop (three passes, std::exp), one thread
    std::vector<float> grad2(N * K);
    auto t0 = std::chrono::steady_clock::now();
    double loss2 = 0;
    for (std::size_t r = 0; r < N; ++r) {
        const float* x = &logits[r * K];
        float m = -INFINITY;
        for (std::size_t j = 0; j < K; ++j) m = std::max(m, x[j]);
        float s = 0;
        for (std::size_t j = 0; j < K; ++j) s += std::exp(x[j] - m);
        const float lse = m + std::log(s);
        loss2 += lse - x[labels[r]];
        for (std::size_t j = 0; j < K; ++j)
            grad2[r * K + j] = (std::exp(x[j] - lse) - (j == static_cast<std::size_t>(labels[r]) ? 1.0f : 0.0f)) / N;
    }
    const double loop_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    auto time_ms = [&](const lossjit::Batch& b) {
        double best = 1e30;
        for (int rep = 0; rep < 3; ++rep) {
            const auto start = std::chrono::steady_clock::now();
            kernel.run(b);
            best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
        }
        return best;
    };
    const double jit1_ms = time_ms(lossjit::Batch(batch).threads(1));
    const double jit_ms = time_ms(batch);
    std::printf("plain C++ loop: %.1f ms (mean loss %.6f); lossjit: %.1f ms on 1 thread (%.1fx), %.1f ms on all cores\n", loop_ms,
                loss2 / N, jit1_ms, loop_ms / jit1_ms, jit_ms);

    const std::string assembly = kernel.assembly();
    std::istringstream lines(assembly.substr(assembly.find("lossjit_kernel:")));
    std::string line;
    std::cout << "assembly (first lines of " << std::count(assembly.begin(), assembly.end(), '\n') << "):\n";
    for (int i = 0; i < 30 && std::getline(lines, line); ++i) std::cout << "  " << line << "\n";
    return worst < 1e-3 ? 0 : 1;
}
