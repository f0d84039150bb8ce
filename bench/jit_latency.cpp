// JIT latency of the cross-entropy loss+gradient kernel (integer labels), as the time from
// compile() to the first result: compile() and a first run over 4 rows (for generic K, the first
// run with rows of a length compiles the kernel for that length: see CompileOptions::row_length):
//   cold process      in a fresh process: LLJIT creation, codegen, the IR pipeline, machine code
//   disk-cache hit    in a fresh process with LOSSJIT_CACHE_DIR already holding the kernel
//   warm, uncached    a new kernel in a process whose JIT is up (cache off)
//   memory hit        compile() of a kernel this process has compiled: a lookup
// Cold and disk figures are medians over fresh child processes (this program run with --child).
#include <lossjit/kernel.hpp>
#include <lossjit/lower.hpp>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using namespace lossjit;
using clk = std::chrono::steady_clock;

Graph ce() {  // loss = logsumexp(u) - at(u, y), grad.u = softmax(u) - onehot(y)
    using namespace lossjit::dsl;
    return lower(-log(at(softmax(logits<"u">), label<"y">)), wrt(logits<"u">));
}

double ms_since(clk::time_point t0) { return std::chrono::duration<double, std::milli>(clk::now() - t0).count(); }

// CPU time of the process: on a loaded machine the wall time also counts waiting for a core.
double cpu_ms() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

// A first batch of 4 rows of K elements, its memory touched before the clock starts.
struct FirstBatch {
    std::vector<float> u, grad;
    std::vector<std::int64_t> y;
    Batch batch;
    explicit FirstBatch(std::size_t K) : u(4 * K, 0.5f), grad(4 * K, 0.f), y(4, 0) {
        batch.bind("u", matrix(static_cast<const float*>(u.data()), 4, K)).bind("y", column(static_cast<const std::int64_t*>(y.data()), 4));
        batch.bind("grad.u", matrix(grad.data(), 4, K)).threads(1);
    }
};

// compile() (K: row_length, 0 for generic K) and a first run.
Kernel first_result(const Graph& g, CompileOptions o, std::size_t K, const FirstBatch& b) {
    o.row_length = K;
    Kernel k = compile(g, o);
    (void)k.run(b.batch);
    return k;
}

int child(std::size_t K, std::size_t run_k) {
    const Graph g = ce();
    const FirstBatch b(run_k);
    const auto t0 = clk::now();
    const double c0 = cpu_ms();
    const Kernel k = first_result(g, {}, K, b);
    const double ms = ms_since(t0);
    std::printf("%.3f %d %.3f\n", ms, k.from_disk_cache() ? 1 : 0, cpu_ms() - c0);
    return 0;
}

struct Child {
    double ms = -1, cpu = -1;
    int disk = -1;
};
// Runs this program as a child.
Child spawn(const std::string& env, std::size_t K, std::size_t run_k) {
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    const std::string cmd = env + " '" + self + "' --child " + std::to_string(K) + " " + std::to_string(run_k);
    FILE* p = ::popen(cmd.c_str(), "r");
    Child c;
    if (p) {
        if (std::fscanf(p, "%lf %d %lf", &c.ms, &c.disk, &c.cpu) != 3) c.ms = -1;
        ::pclose(p);
    }
    return c;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 3 && std::strcmp(argv[1], "--child") == 0)
        return child(static_cast<std::size_t>(std::atol(argv[2])), static_cast<std::size_t>(std::atol(argv[3])));
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("lossjit-latency-" + std::to_string(::getpid()));
    struct Config {
        const char* name;
        std::size_t K, run_k;  // row_length (0: generic), the first run's rows
    };
    constexpr int nc = 4;
    const Config configs[nc] = {{"generic, rows of 10", 0, 10}, {"generic, rows of 1000", 0, 1000}, {"generic, rows of 32000", 0, 32000}, {"K = 32000", 32000, 32000}};
    std::printf("lossjit JIT latency, cross-entropy loss + gradient kernel: compile() and a first run (median of %d)\n", reps);
    std::printf("%-30s", "wall ms (cpu ms)");
    for (const Config& c : configs) std::printf(" %24s", c.name);
    std::printf("\n");
    double cold[nc], disk[nc], warm[nc], hit[nc], cold_cpu[nc], disk_cpu[nc], warm_cpu[nc];
    for (int i = 0; i < nc; ++i) {
        const Config& cf = configs[i];
        std::vector<double> c, d, cc, dc;
        for (int r = 0; r < reps; ++r) {
            const Child x = spawn("env -u LOSSJIT_CACHE_DIR", cf.K, cf.run_k);
            c.push_back(x.ms);
            cc.push_back(x.cpu);
        }
        std::filesystem::remove_all(dir);
        const std::string env = "LOSSJIT_CACHE_DIR='" + dir.string() + "'";
        spawn(env, cf.K, cf.run_k);  // fills the disk cache
        bool all_disk = true;
        for (int r = 0; r < reps; ++r) {
            const Child x = spawn(env, cf.K, cf.run_k);
            d.push_back(x.ms);
            dc.push_back(x.cpu);
            all_disk = all_disk && x.disk == 1;
        }
        if (!all_disk) std::printf("warning: the disk cache was not used (%s)\n", cf.name);
        cold[i] = median(c);
        disk[i] = median(d);
        cold_cpu[i] = median(cc);
        disk_cpu[i] = median(dc);
    }
    std::filesystem::remove_all(dir);
    const Graph g = ce();
    for (int i = 0; i < nc; ++i) {
        const Config& cf = configs[i];
        const FirstBatch b(cf.run_k);
        (void)first_result(g, {}, cf.K, b);  // JIT up, kernel cached
        CompileOptions no_cache;
        no_cache.cache = false;
        std::vector<double> w, wc;
        for (int r = 0; r < reps; ++r) {
            const auto t0 = clk::now();
            const double c0 = cpu_ms();
            (void)first_result(g, no_cache, cf.K, b);
            w.push_back(ms_since(t0));
            wc.push_back(cpu_ms() - c0);
        }
        warm[i] = median(w);
        warm_cpu[i] = median(wc);
        CompileOptions o;
        o.row_length = cf.K;
        const int n = 200000;
        std::vector<double> h;
        for (int r = 0; r < 5; ++r) {
            const auto t0 = clk::now();
            for (int j = 0; j < n; ++j) {
                Kernel k = compile(g, o);
                if (!k.from_memory_cache()) std::abort();
            }
            h.push_back(ms_since(t0) * 1e6 / n);  // ns per lookup
        }
        hit[i] = median(h);
    }
    auto row = [](const char* what, const double* w, const double* c) {
        std::printf("%-30s", what);
        for (int i = 0; i < nc; ++i) std::printf(" %13.2f (%8.2f)", w[i], c[i]);
        std::printf("\n");
    };
    row("cold process", cold, cold_cpu);
    row("disk-cache hit (new process)", disk, disk_cpu);
    row("warm process, not cached", warm, warm_cpu);
    std::printf("%-30s", "memory-cache hit (compile())");
    for (int i = 0; i < nc; ++i) std::printf(" %21.0f ns", hit[i]);
    std::printf("\n");
    return 0;
}
