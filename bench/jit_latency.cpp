// JIT latency of the cross-entropy loss+gradient kernel (integer labels):
//   cold process      first compile() in a fresh process: LLJIT creation, codegen, O3, machine code
//   disk-cache hit    first compile() in a fresh process with LOSSJIT_CACHE_DIR already holding it
//   warm, uncached    a new kernel in a process whose JIT is up (cache off)
//   memory hit        compile() of a kernel this process has compiled: a lookup
// Cold and disk figures are medians over fresh child processes (this program run with --child).
#include <lossjit/kernel.hpp>
#include <lossjit/lower.hpp>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
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

int child(std::size_t K) {
    const Graph g = ce();
    CompileOptions o;
    o.row_length = K;
    const auto t0 = clk::now();
    const double c0 = cpu_ms();
    Kernel k = compile(g, o);
    const double ms = ms_since(t0);
    std::printf("%.3f %d %.3f\n", ms, k.from_disk_cache() ? 1 : 0, cpu_ms() - c0);
    return 0;
}

struct Child {
    double ms = -1, cpu = -1;
    int disk = -1;
};
// Runs this program as a child.
Child spawn(const std::string& env, std::size_t K) {
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    const std::string cmd = env + " '" + self + "' --child " + std::to_string(K);
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
    if (argc > 2 && std::strcmp(argv[1], "--child") == 0) return child(static_cast<std::size_t>(std::atol(argv[2])));
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("lossjit-latency-" + std::to_string(::getpid()));
    std::printf("lossjit JIT latency, cross-entropy loss + gradient kernel (median of %d)\n", reps);
    std::printf("%-30s %22s %22s\n", "", "generic K: wall (cpu)", "K = 32000: wall (cpu)");
    double cold[2], disk[2], warm[2], hit[2], cold_cpu[2], disk_cpu[2], warm_cpu[2];
    const std::size_t Ks[2] = {0, 32000};
    for (int i = 0; i < 2; ++i) {
        std::vector<double> c, d, cc, dc;
        for (int r = 0; r < reps; ++r) {
            const Child x = spawn("env -u LOSSJIT_CACHE_DIR", Ks[i]);
            c.push_back(x.ms);
            cc.push_back(x.cpu);
        }
        std::filesystem::remove_all(dir);
        const std::string env = "LOSSJIT_CACHE_DIR='" + dir.string() + "'";
        spawn(env, Ks[i]);  // fills the disk cache
        bool all_disk = true;
        for (int r = 0; r < reps; ++r) {
            const Child x = spawn(env, Ks[i]);
            d.push_back(x.ms);
            dc.push_back(x.cpu);
            all_disk = all_disk && x.disk == 1;
        }
        if (!all_disk) std::printf("warning: the disk cache was not used\n");
        cold[i] = median(c);
        disk[i] = median(d);
        cold_cpu[i] = median(cc);
        disk_cpu[i] = median(dc);
    }
    std::filesystem::remove_all(dir);
    const Graph g = ce();
    for (int i = 0; i < 2; ++i) {
        CompileOptions o;
        o.row_length = Ks[i];
        (void)compile(g, o);  // JIT up, kernel cached
        CompileOptions nc = o;
        nc.cache = false;
        std::vector<double> w, wc;
        for (int r = 0; r < reps; ++r) {
            const auto t0 = clk::now();
            const double c0 = cpu_ms();
            (void)compile(g, nc);
            w.push_back(ms_since(t0));
            wc.push_back(cpu_ms() - c0);
        }
        warm[i] = median(w);
        warm_cpu[i] = median(wc);
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
        std::printf("%-30s %10.2f ms (%6.2f) %10.2f ms (%6.2f)\n", what, w[0], c[0], w[1], c[1]);
    };
    row("cold process (first kernel)", cold, cold_cpu);
    row("disk-cache hit (new process)", disk, disk_cpu);
    row("warm process, not cached", warm, warm_cpu);
    std::printf("%-30s %10.0f ns %19.0f ns\n", "memory-cache hit", hit[0], hit[1]);
    return 0;
}
