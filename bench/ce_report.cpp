#include "ce_report.hpp"

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace bench {

namespace {

// the table's columns of GB/s, in order
const char* const contenders[] = {"lossjit", "naive", "careful", "pytorch", "onednn", "read", "copy"};
const char* const ratio_columns[] = {"jit/torch", "jit/careful", "jit/roof", "bf16/f32"};

// The model name, with the family and model numbers: a VM's name can hide the generation
// ("AMD EPYC": family 25 model 17 is Zen 4, whose 512-bit operations take two passes through its
// 256-bit units; family 26 is Zen 5, with full 512-bit units), and the kernels' speeds with it.
std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::map<std::string, std::string> first;  // key -> value, the first processor's
    for (std::string line; std::getline(f, line) && !line.empty();) {
        const std::size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
        first.emplace(key, colon + 2 <= line.size() ? line.substr(colon + 2) : "");
    }
    std::string name = first.count("model name") ? first["model name"] : "unknown CPU";
    if (first.count("cpu family") && first.count("model")) name += " (family " + first["cpu family"] + ", model " + first["model"] + ")";
    return name;
}

std::string fmt_gbps(double v, bool applicable, bool skipped) {
    char buf[32];
    if (!applicable) return "-";
    if (skipped) return "skip";
    if (std::isnan(v)) return "FAILED";
    std::snprintf(buf, sizeof buf, v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f", v);
    return buf;
}
// The roofline a pass is judged against: a streaming read for fwd, read plus write for fwdbwd.
const char* roofline_of(const std::string& pass) { return pass == "fwdbwd" ? "copy" : "read"; }

std::string fmt_ratio(double v) {
    if (!std::isfinite(v)) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, v >= 100 ? "%.0fx" : v >= 10 ? "%.1fx" : "%.2fx", v);
    return buf;
}

// The goals' tally: each verdict is printed as it is judged.
class Goals {
public:
    explicit Goals(const Results& r) : r_(r) {}

    void verdict(const char* goal, bool ok, bool complete, const std::string& detail) {
        ++total_;
        met_ += ok && complete;
        std::printf("  %-9s %s: %s\n", !complete ? "N/A" : ok ? "MET" : "NOT MET", goal, detail.c_str());
    }
    // lossjit (dtype_a, Ta threads) / `other` (dtype_b, Tb threads) >= need on every shape with K >= min_k
    void ratio(const char* goal, double need, const std::string& pass, const std::string& dtype_a, const std::string& other,
               const std::string& dtype_b, std::size_t min_k, int Ta, int Tb) {
        bool ok = true, complete = true;
        std::string detail;
        for (const Shape& s : shapes) {
            if (s.K < min_k) continue;
            const double q = r_.get("lossjit", s, pass, dtype_a, Ta) / r_.get(other, s, pass, dtype_b, Tb);
            detail += (detail.empty() ? "" : ", ") + s.name() + " " + fmt_ratio(q);
            if (!std::isfinite(q)) complete = false;
            else ok = ok && q >= need;
        }
        verdict(goal, ok, complete, detail);
    }
    // "all cores at least 1.7x one thread, memory bandwidth permitting": on every shape with
    // K >= 1000, lossjit on `all` threads >= 1.7x one thread, or >= 0.9x the roofline of the
    // same pass on `all` threads (the memory's limit, which no thread count passes)
    void scaling(const char* goal, const std::string& pass, int all) {
        const char* roof = roofline_of(pass);
        bool ok = true, complete = true;
        std::string detail;
        for (const Shape& s : shapes) {
            if (s.K < 1000) continue;
            const double jit = r_.get("lossjit", s, pass, "f32", all);
            const double q = jit / r_.get("lossjit", s, pass, "f32", 1), at_roof = jit / r_.get(roof, s, pass, "f32", all);
            detail += (detail.empty() ? "" : ", ") + s.name() + " " + fmt_ratio(q);
            if (!std::isfinite(q) || !std::isfinite(at_roof)) {
                complete = false;
                continue;
            }
            if (q < 1.7) detail += std::string(" (") + fmt_ratio(at_roof) + " of the " + roof + " on " + std::to_string(all) + " threads" +
                                   (at_roof >= 0.9 ? ": the memory's limit)" : ")");
            ok = ok && (q >= 1.7 || at_roof >= 0.9);
        }
        verdict(goal, ok, complete, detail);
    }
    void print_tally() const { std::printf("  %d of %d goals met\n", met_, total_); }

private:
    const Results& r_;
    int met_ = 0, total_ = 0;
};

void write_json(const Results& r, const std::string& path) {
    std::ofstream f(path);
    if (!f) {
        std::fprintf(stderr, "bench_ce: cannot write %s\n", path.c_str());
        return;
    }
    f << "[\n";
    bool first = true;
    for (const Key& k : r.order()) {
        const double v = r.get(k);
        if (std::isnan(v)) continue;  // FAILED cells have no speed
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.4g", v);
        f << (first ? "" : ",\n") << "  {\"contender\": \"" << k.contender << "\", \"shape\": \"" << k.shape << "\", \"pass\": \"" << k.pass
          << "\", \"dtype\": \"" << k.dtype << "\", \"threads\": " << k.threads << ", \"gbps\": " << buf << "}";
        first = false;
    }
    f << "\n]\n";
}

int draw_plot(const std::string& json, const std::string& png) {
    const std::string script = LOSSJIT_BENCH_PLOT_PY;
    // Debian's matplotlib lives with /usr/bin/python3; a python3 earlier on PATH may lack it.
    std::vector<std::string> pythons;
    if (std::filesystem::exists("/usr/bin/python3")) pythons.emplace_back("/usr/bin/python3");
    pythons.emplace_back("python3");
    for (const std::string& py : pythons) {
        const std::string cmd = py + " '" + script + "' '" + json + "' '" + png + "'";
        const int rc = std::system(cmd.c_str());
        if (rc == 0) return 0;
        if (!(WIFEXITED(rc) && WEXITSTATUS(rc) == 3)) return 1;  // 3: no matplotlib in this python
    }
    return 3;
}

}  // namespace

double load_average() {
    std::ifstream f("/proc/loadavg");
    double l = -1;
    f >> l;
    return l;
}

void print_preamble(bool quick, int all, const std::string& lossjit_formula, const Peers& peers) {
    std::printf("bench_ce: softmax cross-entropy, integer labels, mean reduction%s\n", quick ? " (--quick)" : "");
    const double load0 = load_average();
    std::printf("machine: %s, %d threads for \"all cores\", load average %.2f at the start\n", cpu_model().c_str(), all, load0);
    if (load0 > 0.5 * all)
        std::printf("warning: the machine is busy (load %.2f on %d hardware threads): other processes share the cores, so these\n"
                    "         figures, the all-cores ones most, are lower and noisier than on an idle machine\n",
                    load0, all);
    std::printf("lossjit: %s\n", lossjit_formula.c_str());
    if (peers.torch.ready) std::printf("pytorch: %s\n", peers.torch.text.c_str());
    if (peers.dnnl.ready) std::printf("onednn:  %s\n", peers.dnnl.text.c_str());
    if (!peers.torch.ready) std::printf("pytorch: skipped: %s\n", peers.torch.text.c_str());
    if (!peers.dnnl.ready) std::printf("onednn:  skipped: %s\n", peers.dnnl.text.c_str());
    std::printf("GB/s = fp32 logit bytes (N*K*4) / median seconds, for every dtype (bf16: rows/s on the same scale).\n"
                "jit/roof: lossjit / read for fwd, lossjit / copy for fwdbwd (same dtype and threads); bf16 rows compare\n"
                "jit/torch and jit/careful against the f32 peers; bf16/f32: lossjit bf16 / lossjit f32 (rows per second).\n\n");

    std::printf("%-12s %-6s %-5s %3s", "shape", "pass", "dtype", "thr");
    for (const char* c : contenders) std::printf(" %8s", c);
    for (const char* c : ratio_columns) std::printf(" %11s", c);
    std::printf("\n");
    std::fflush(stdout);
}

void print_row(const Results& r, const Row& row) {
    std::printf("%-12s %-6s %-5s %3d", row.shape.name().c_str(), row.pass.c_str(), row.dtype.c_str(), row.threads);
    for (const char* c : contenders)
        std::printf(" %8s", fmt_gbps(r.get(c, row), r.ran(c, row) || r.skipped(c, row), r.skipped(c, row)).c_str());
    const double jit = r.get("lossjit", row);
    const double torch = r.get("pytorch", row.shape, row.pass, "f32", row.threads);
    const double careful = r.get("careful", row.shape, row.pass, "f32", row.threads);
    const double roof = r.get(roofline_of(row.pass), row);
    const double f32 = r.get("lossjit", row.shape, row.pass, "f32", row.threads);
    std::printf(" %11s %11s %11s %11s\n", fmt_ratio(jit / torch).c_str(), fmt_ratio(jit / careful).c_str(), fmt_ratio(jit / roof).c_str(),
                row.bf16() ? fmt_ratio(jit / f32).c_str() : "");
    std::fflush(stdout);
}

void print_failures(const Results& r) {
    if (r.failures().empty()) return;
    std::printf("\n");
    for (const auto& f : r.failures()) std::printf("%s\n", f.c_str());
}

void print_goals(const Results& r, int all) {
    std::printf("\ngoals (one thread, fp32 unless said; ratios of this run):\n");
    Goals goals(r);
    goals.ratio("fwd+bwd >= 10x PyTorch", 10, "fwdbwd", "f32", "pytorch", "f32", 0, 1, 1);
    goals.ratio("fwd+bwd >= 1.5x careful C++", 1.5, "fwdbwd", "f32", "careful", "f32", 0, 1, 1);
    goals.ratio("K >= 1000: fwd >= 0.7x streaming read", 0.7, "fwd", "f32", "read", "f32", 1000, 1, 1);
    goals.ratio("K >= 1000: fwd+bwd >= 0.6x copy", 0.6, "fwdbwd", "f32", "copy", "f32", 1000, 1, 1);
    {
        const double v = r.get("lossjit", shapes[0], "fwdbwd", "f32", 1);
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s %.2f GB/s", shapes[0].name().c_str(), v);
        goals.verdict("K = 10: fwd+bwd >= 8 GB/s", v >= 8, std::isfinite(v), buf);
    }
    if (all > 1) {
        for (const std::string pass : {"fwd", "fwdbwd"}) {
            const char* rc = roofline_of(pass);
            const std::string goal = "K >= 1000: " + pass + " on " + std::to_string(all) + " threads >= 1.7x one thread (or >= 0.9x the " + rc +
                                     " on as many)";
            goals.scaling(goal.c_str(), pass, all);
            std::string roof;
            for (const Shape& s : shapes)
                if (s.K >= 1000)
                    roof += (roof.empty() ? "" : ", ") + s.name() + " " + fmt_ratio(r.get(rc, s, pass, "f32", all) / r.get(rc, s, pass, "f32", 1));
            std::printf("            (memory bandwidth: %s on %d threads / 1 thread: %s)\n", rc, all, roof.c_str());
        }
    } else {
        std::printf("  N/A       all cores >= 1.7x one thread: this machine has one hardware thread\n");
    }
    goals.ratio("K >= 1000: bf16 fwd rows/s >= 1.5x fp32", 1.5, "fwd", "bf16", "lossjit", "f32", 1000, 1, 1);
    goals.ratio("K >= 1000: bf16 fwd+bwd rows/s >= 1.5x fp32", 1.5, "fwdbwd", "bf16", "lossjit", "f32", 1000, 1, 1);
    {
        char buf[200];
        std::snprintf(buf, sizeof buf, "first compile() in this process (K = %zu, fwd, f32, LLJIT start included): %.1f ms%s", shapes[0].K,
                      r.first_compile_ms, r.first_from_disk ? " (from the disk cache: LOSSJIT_CACHE_DIR is set)" : "");
        goals.verdict("JIT latency < 20 ms", r.first_compile_ms < 20 && !r.first_from_disk, r.first_compile_ms >= 0, buf);
        std::printf("            (a cold process alone: build/bench/jit_latency; kernels compiled for %s)\n", r.kernel_cpu.empty() ? "?" : r.kernel_cpu.c_str());
    }
    goals.print_tally();
}

void write_files(const Results& r, std::string json, const std::string& plot) {
    if (!plot.empty() && json.empty()) json = plot + ".json";
    if (!json.empty()) {
        write_json(r, json);
        std::printf("\njson: %s\n", json.c_str());
    }
    if (!plot.empty()) {
        const int rc = draw_plot(json, plot);
        if (rc == 0) std::printf("plot: %s\n", plot.c_str());
        else if (rc == 3) std::printf("plot: skipped: matplotlib is not installed (Debian: python3-matplotlib)\n");
        else std::printf("plot: FAILED (bench/plot.py exited with an error)\n");
    }
}

}  // namespace bench
