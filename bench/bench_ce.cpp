// bench_ce: softmax cross-entropy with integer labels, mean reduction, side by side.
//
//   bench_ce [--quick] [--json FILE] [--plot FILE.png]
//
// For N x K in {65536 x 10, 8192 x 1000, 512 x 32000, 64 x 256000}, one process, it times the
// loss only (fwd) and the loss plus its gradient (fwdbwd), medians of repeated runs after a
// warm-up, for:
//   lossjit  -log(at(softmax(u), y)) lowered (with wrt(u) for fwdbwd), JIT-compiled for K,
//            f32 and bf16 logits, 1 thread and all cores; loss = sum / N, gradient scaled 1/N
//   naive    three passes per row, std::exp / std::log, -O3 -march=native     (peer_naive.cpp)
//   careful  two passes, -O3 -march=native -ffast-math, libmvec expf          (peer_careful.cpp)
//   pytorch  libtorch torch::nn::functional::cross_entropy; fwdbwd = loss.backward()
//   onednn   softmax_v2 forward, softmax_log, out of place, plus the pick of the N label entries
//            (fwd only: oneDNN has no cross-entropy backward)
//   read     streaming read of the logits (their sum), vectorized
//   copy     read of the logits + write of a same-size buffer
// Rows the peers cannot run (bf16 logits; fwdbwd for oneDNN) show "-". naive, careful and the
// rooflines split rows (elements) over OpenMP threads (split() in ce_measure.hpp); PyTorch runs with
// torch::set_num_threads(T) and oneDNN with omp_set_num_threads(T).
//
// Every contender's loss (and gradient, where it gives one) is checked against a reference in
// double precision before its time counts; a contender that fails shows FAILED and is not timed.
// The logits are drawn from N(0, 2) and rounded to bf16-representable values, so the f32 and
// bf16 inputs hold the same numbers and share one reference.
//
// GB/s = bytes of the fp32 logits (N * K * 4) / seconds, for every dtype: the bf16 figures are
// rows per second on the same scale. Absolute figures drift run to run on this machine; the
// ratios within one run are what the goals (printed at the end) are judged on.
//
// This file is the flow; ce_measure.* holds how a cell is checked and timed, ce_contenders.* what
// each contender runs, ce_report.* the table, the goals, the JSON and the plot.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ce_contenders.hpp"
#include "ce_measure.hpp"
#include "ce_report.hpp"

namespace {

using namespace bench;

// The settings from the command line; an exit status instead when the program should not run.
std::optional<int> parse_args(int argc, char** argv, Settings& st) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--quick") st.quick = true;
        else if (a == "--json" && i + 1 < argc) st.json = argv[++i];
        else if (a == "--plot" && i + 1 < argc) st.plot = argv[++i];
        else {
            std::fprintf(stderr, "usage: %s [--quick] [--json FILE] [--plot FILE.png]\n", argv[0]);
            return a == "--help" || a == "-h" ? 0 : 2;
        }
    }
    if (st.quick) {
        st.warmup_s = 0.01;
        st.target_s = 0.06;
        st.min_reps = 3;
        st.max_reps = 40;
    }
    return std::nullopt;
}

// Every row of one shape (fwd and fwdbwd, f32 and bf16, each thread count), measured together
// (their cells' runs in the same rounds), then printed.
void run_shape(const Settings& st, const Shape& s, std::uint64_t seed, const LossjitGraphs& graphs, const Peers& peers,
               const std::vector<int>& thread_counts, Results& results) {
    ShapeBench bench(s, seed, graphs, peers, results);
    std::vector<Row> rows;
    for (const std::string pass : {"fwd", "fwdbwd"})
        for (const std::string dtype : {"f32", "bf16"})
            for (const int T : thread_counts) rows.push_back(Row{s, pass, dtype, T});
    for (const Row& row : rows) bench.add_row(row, results);
    bench.measure(st, results);
    for (const Row& row : rows) print_row(results, row);
}

}  // namespace

int main(int argc, char** argv) {
    Settings st;
    if (const auto status = parse_args(argc, argv, st)) return *status;
    const auto t_start = std::chrono::steady_clock::now();
    const int all = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    std::vector<int> thread_counts{1};
    if (all > 1) thread_counts.push_back(all);

    const LossjitGraphs graphs = lower_cross_entropy();
    const Peers peers = start_peers();
    print_preamble(st.quick, all, graphs.formula(), peers);

    Results results;
    std::uint64_t seed = 1;
    for (const Shape& s : shapes) run_shape(st, s, seed++, graphs, peers, thread_counts, results);
    print_failures(results);
    print_goals(results, all);
    write_files(results, st.json, st.plot);
    std::printf("total time %.1f s; load average %.2f at the end\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(), load_average());
    return 0;
}
