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
// rooflines split rows (elements) over OpenMP threads in this file; PyTorch runs with
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
#include <lossjit/kernel.hpp>
#include <lossjit/lossjit.hpp>

#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bench_peers.hpp"

namespace {

using clk = std::chrono::steady_clock;
constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();

// ---- settings ----------------------------------------------------------------------------------

struct Settings {
    bool quick = false;
    std::string json, plot;
    double warmup_s = 0.05;  // warm-up: at least this long (and at least one run after the check)
    double target_s = 0.4;   // repetitions: about this long per contender and row
    int min_reps = 7, max_reps = 300;
};

struct Shape {
    std::size_t N, K;
    std::string name() const { return std::to_string(N) + "x" + std::to_string(K); }
};
const Shape shapes[] = {{65536, 10}, {8192, 1000}, {512, 32000}, {64, 256000}};

const char* const contenders[] = {"lossjit", "naive", "careful", "pytorch", "onednn", "read", "copy"};

// ---- results -----------------------------------------------------------------------------------

struct Key {
    std::string contender, shape, pass, dtype;
    int threads;
    bool operator<(const Key& o) const {
        return std::tie(contender, shape, pass, dtype, threads) < std::tie(o.contender, o.shape, o.pass, o.dtype, o.threads);
    }
};
std::map<Key, double> results;  // GB/s; NaN: FAILED
std::vector<Key> order;         // measured cells in the order they ran (for the JSON)

double get(const std::string& c, const Shape& s, const std::string& pass, const std::string& dtype, int T) {
    auto it = results.find({c, s.name(), pass, dtype, T});
    return it == results.end() ? nan_v : it->second;
}

// ---- data and reference ------------------------------------------------------------------------

struct Data {
    std::size_t N = 0, K = 0;
    std::vector<float> x;               // logits (bf16-representable values)
    std::vector<lossjit::bf16> xb;      // the same logits as bf16
    std::vector<std::int64_t> y;        // labels
    std::vector<float> g, out;          // gradient; oneDNN's log-probabilities and the copy's output
    std::vector<lossjit::bf16> gb, outb;
    std::vector<float> p;               // reference softmax (computed in double)
    double loss = 0;                    // reference mean loss
    double sum_x = 0, sum_abs_x = 0;    // for the read roofline's check
};

void make_data(Data& d, const Shape& s, std::uint64_t seed) {
    d.N = s.N;
    d.K = s.K;
    const std::size_t n = s.N * s.K;
    d.x.assign(n, 0.0f);
    d.xb.assign(n, lossjit::bf16{});
    d.g.assign(n, 0.0f);
    d.out.assign(n, 0.0f);
    d.gb.assign(n, lossjit::bf16{});
    d.outb.assign(n, lossjit::bf16{});
    d.p.assign(n, 0.0f);
    d.y.assign(s.N, 0);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (std::size_t i = 0; i < n; ++i) {
        d.xb[i] = lossjit::bf16::from_float(normal(rng));
        d.x[i] = d.xb[i].to_float();
    }
    for (auto& l : d.y) l = static_cast<std::int64_t>(rng() % s.K);
    // the reference: a careful double-precision loop
    double loss = 0, sx = 0, sa = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, sx, sa)
    for (std::size_t r = 0; r < s.N; ++r) {
        const float* xr = &d.x[r * s.K];
        double m = -INFINITY;
        for (std::size_t j = 0; j < s.K; ++j) m = std::max(m, static_cast<double>(xr[j]));
        double z = 0;
        for (std::size_t j = 0; j < s.K; ++j) {
            z += std::exp(xr[j] - m);
            sx += xr[j];
            sa += std::fabs(xr[j]);
        }
        const double lse = m + std::log(z);
        loss += lse - xr[d.y[r]];
        for (std::size_t j = 0; j < s.K; ++j) d.p[r * s.K + j] = static_cast<float>(std::exp(xr[j] - lse));
    }
    d.loss = loss / static_cast<double>(s.N);
    d.sum_x = sx;
    d.sum_abs_x = sa;
}

// Tolerances. Loss: relative 1e-4 of the mean (fp32 math; the bf16 inputs hold the same values).
// Gradient, compared as N * grad against p - onehot (p = softmax): the error may be `rtol` of
// max(p, |p - onehot|) plus 1e-9 for entries that underflow. Relative to p, not to p - 1, because
// at the label p - 1 cancels: with p = 0.995 an fp32 logsumexp off by half an ulp already puts
// p - 1 off by 1e-4 of itself. fp32: 1e-3 (a sequential fp32 sum over K = 256000 terms, the
// naive loop's, is off by ~2e-4 here); bf16 storage: 5e-3 (8 significant bits: rounding is at
// most 2^-9 relative). Wrong results (a missing -1, a wrong scale, rows not written) are off by
// far more.
constexpr double loss_rtol = 1e-4, grad_rtol_f32 = 1e-3, grad_rtol_bf16 = 5e-3, grad_atol = 1e-9;

std::string check_loss(double got, const Data& d) {
    const double err = std::fabs(got - d.loss);
    if (std::isfinite(got) && err <= loss_rtol * std::max(1.0, std::fabs(d.loss))) return "";
    char buf[160];
    std::snprintf(buf, sizeof buf, "mean loss %.9g, reference %.9g (error %.3g)", got, d.loss, err);
    return buf;
}

inline float value_of(float v) { return v; }
inline float value_of(lossjit::bf16 v) { return v.to_float(); }

template <class G>
std::string check_grad(const G* g, const Data& d, double rtol) {
    const double n = static_cast<double>(d.N);
    double worst = 0;
    std::size_t wr = 0, wj = 0;
    double wgot = 0, wwant = 0;
    for (std::size_t r = 0; r < d.N; ++r)
        for (std::size_t j = 0; j < d.K; ++j) {
            const std::size_t i = r * d.K + j;
            const double want = static_cast<double>(d.p[i]) - (static_cast<std::size_t>(d.y[r]) == j ? 1.0 : 0.0);
            const double got = static_cast<double>(value_of(g[i])) * n;
            const double e = std::fabs(got - want) / (rtol * std::max(static_cast<double>(d.p[i]), std::fabs(want)) + grad_atol);
            if (!(e <= worst)) {  // NaN counts as worst
                worst = std::isnan(e) ? INFINITY : e;
                wr = r, wj = j, wgot = got, wwant = want;
                if (std::isinf(worst)) goto done;
            }
        }
done:
    if (worst <= 1.0) return "";
    char buf[200];
    std::snprintf(buf, sizeof buf, "gradient at row %zu, column %zu: N * grad = %.9g, reference %.9g (%.3g x tolerance)", wr, wj, wgot,
                  wwant, worst);
    return buf;
}

// ---- threads -----------------------------------------------------------------------------------

// Runs f(begin, end) over [0, n) split into T contiguous parts on OpenMP threads; sums the results.
template <class F>
double split(int T, std::size_t n, F&& f) {
    if (T <= 1) return f(std::size_t{0}, n);
    double total = 0;
#pragma omp parallel for num_threads(T) schedule(static, 1) reduction(+ : total)
    for (int t = 0; t < T; ++t) {
        const std::size_t b = n * static_cast<std::size_t>(t) / static_cast<std::size_t>(T);
        const std::size_t e = n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(T);
        total += f(b, e);
    }
    return total;
}

// ---- timing ------------------------------------------------------------------------------------

struct Contender {
    std::function<void()> poison;                 // before the checked run: outputs to NaN
    std::function<double()> run;                  // one run; returns what verify checks
    std::function<std::string(double)> verify;    // "" when correct
};

// Checked run, then warm-up, then the median of repeated runs, in seconds; NaN and a message
// when the check fails.
double measure(const Settings& st, const Contender& c, std::string& failure) {
    try {
        if (c.poison) c.poison();
        failure = c.verify(c.run());
        if (!failure.empty()) return nan_v;
        auto once = [&] {
            const auto t0 = clk::now();
            (void)c.run();
            return std::chrono::duration<double>(clk::now() - t0).count();
        };
        double spent = 0, last = 0;
        do {
            last = once();
            spent += last;
        } while (spent < st.warmup_s);
        const int reps = static_cast<int>(std::clamp(st.target_s / std::max(last, 1e-9), static_cast<double>(st.min_reps),
                                                     static_cast<double>(st.max_reps)));
        std::vector<double> t(static_cast<std::size_t>(reps));
        for (double& v : t) v = once();
        std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
        return t[static_cast<std::size_t>(reps / 2)];
    } catch (const std::exception& e) {
        failure = std::string("threw: ") + e.what();
        return nan_v;
    }
}

// ---- the program -------------------------------------------------------------------------------

using namespace lossjit::dsl;
constexpr auto u = logits<"u">;
constexpr auto y = label<"y">;
constexpr auto ce = -log(at(softmax(u), y));

std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown CPU";
}

double load_average() {
    std::ifstream f("/proc/loadavg");
    double l = -1;
    f >> l;
    return l;
}

std::string fmt_gbps(double v, bool applicable, bool skipped) {
    char buf[32];
    if (!applicable) return "-";
    if (skipped) return "skip";
    if (std::isnan(v)) return "FAILED";
    std::snprintf(buf, sizeof buf, v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f", v);
    return buf;
}
std::string fmt_ratio(double v) {
    if (!std::isfinite(v)) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, v >= 100 ? "%.0fx" : v >= 10 ? "%.1fx" : "%.2fx", v);
    return buf;
}

void write_json(const std::string& path) {
    std::ofstream f(path);
    if (!f) {
        std::fprintf(stderr, "bench_ce: cannot write %s\n", path.c_str());
        return;
    }
    f << "[\n";
    bool first = true;
    for (const Key& k : order) {
        const double v = results[k];
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

int main(int argc, char** argv) {
    Settings st;
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
    const auto t_start = clk::now();
    const int all = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    std::vector<int> thread_counts{1};
    if (all > 1) thread_counts.push_back(all);

    // the kernels' source: one expression, lowered with and without the gradient
    const lossjit::Graph g_fwd = lossjit::lower(ce);
    const lossjit::Graph g_fb = lossjit::lower(ce, lossjit::wrt(u));

    std::printf("bench_ce: softmax cross-entropy, integer labels, mean reduction%s\n", st.quick ? " (--quick)" : "");
    const double load0 = load_average();
    std::printf("machine: %s, %d threads for \"all cores\", load average %.2f at the start\n", cpu_model().c_str(), all, load0);
    if (load0 > 0.5 * all)
        std::printf("warning: the machine is busy (load %.2f on %d hardware threads): other processes share the cores, so these\n"
                    "         figures, the all-cores ones most, are lower and noisier than on an idle machine\n",
                    load0, all);
    std::printf("lossjit: %s  ->", lossjit::to_string(ce).c_str());
    for (const auto& o : g_fb.outputs()) std::printf("  %s = %s;", std::string(o.name.view()).c_str(), lossjit::to_string(g_fb, o.root).c_str());
    std::printf("\n");

    bool have_torch = false, have_dnnl = false;
    std::string torch_why = "bench_ce was built without libtorch (not found by CMake: Debian libtorch-dev; or LOSSJIT_BENCH_NO_TORCH)";
    std::string dnnl_why = "bench_ce was built without oneDNN (not found by CMake: Debian libdnnl-dev; or LOSSJIT_BENCH_NO_DNNL)";
#ifdef LOSSJIT_BENCH_HAVE_TORCH
    try {
        std::printf("pytorch: %s\n", bench::torch_peer::info().c_str());
        have_torch = true;
    } catch (const std::exception& e) {
        torch_why = std::string("libtorch failed to start: ") + e.what();
    }
#endif
#ifdef LOSSJIT_BENCH_HAVE_DNNL
    try {
        std::printf("onednn:  %s\n", bench::dnnl_peer::info().c_str());
        have_dnnl = true;
    } catch (const std::exception& e) {
        dnnl_why = std::string("oneDNN failed to start: ") + e.what();
    }
#endif
    if (!have_torch) std::printf("pytorch: skipped: %s\n", torch_why.c_str());
    if (!have_dnnl) std::printf("onednn:  skipped: %s\n", dnnl_why.c_str());
    std::printf("GB/s = fp32 logit bytes (N*K*4) / median seconds, for every dtype (bf16: rows/s on the same scale).\n"
                "jit/roof: lossjit / read for fwd, lossjit / copy for fwdbwd (same dtype and threads); bf16 rows compare\n"
                "jit/torch and jit/careful against the f32 peers; bf16/f32: lossjit bf16 / lossjit f32 (rows per second).\n\n");

    const char* hdr[] = {"shape", "pass", "dtype", "thr", "lossjit", "naive", "careful", "pytorch", "onednn", "read", "copy", "jit/torch",
                         "jit/careful", "jit/roof", "bf16/f32"};
    std::printf("%-12s %-6s %-5s %3s", hdr[0], hdr[1], hdr[2], hdr[3]);
    for (int i = 4; i < 11; ++i) std::printf(" %8s", hdr[i]);
    for (int i = 11; i < 15; ++i) std::printf(" %11s", hdr[i]);
    std::printf("\n");
    std::fflush(stdout);

    double first_compile_ms = -1;
    bool first_from_disk = false;
    std::vector<std::string> failures;
    Data d;
    std::uint64_t seed = 1;
    for (const Shape& s : shapes) {
        make_data(d, s, seed++);
        const std::size_t N = s.N, K = s.K, n = N * K;
        const double bytes = static_cast<double>(n) * 4.0;
        const float inv_n = 1.0f / static_cast<float>(N);

        // lossjit kernels for this K: [bf16][fwdbwd]
        lossjit::Kernel kern[2][2];
        std::string kern_err[2][2];
        for (int b = 0; b < 2; ++b)
            for (int fb = 0; fb < 2; ++fb) {
                lossjit::CompileOptions o;
                o.row_length = K;
                o.dtype = b ? lossjit::DType::bf16 : lossjit::DType::f32;
                try {
                    const auto t0 = clk::now();
                    kern[b][fb] = lossjit::compile(fb ? g_fb : g_fwd, o);
                    if (first_compile_ms < 0) {
                        first_compile_ms = std::chrono::duration<double, std::milli>(clk::now() - t0).count();
                        first_from_disk = kern[b][fb].from_disk_cache();
                    }
                } catch (const std::exception& e) {
                    kern_err[b][fb] = e.what();
                }
            }
#ifdef LOSSJIT_BENCH_HAVE_DNNL
        std::unique_ptr<bench::dnnl_peer::LogSoftmax> dnnl;
        std::string dnnl_err;
        if (have_dnnl) try {
                dnnl = std::make_unique<bench::dnnl_peer::LogSoftmax>(N, K);
            } catch (const std::exception& e) {
                dnnl_err = e.what();
            }
#endif

        for (const std::string pass : {"fwd", "fwdbwd"}) {
            const bool fb = pass == "fwdbwd";
            for (const std::string dtype : {"f32", "bf16"}) {
                const bool b16 = dtype == "bf16";
                for (const int T : thread_counts) {
                    std::map<std::string, double> row;
                    std::map<std::string, bool> applicable, skipped;
                    auto cell = [&](const std::string& name, const Contender& c) {
                        applicable[name] = true;
                        std::string why;
                        const double sec = measure(st, c, why);
                        const double v = std::isnan(sec) ? nan_v : bytes / sec / 1e9;
                        if (!why.empty())
                            failures.push_back("FAILED: " + name + " " + s.name() + " " + pass + " " + dtype + " " + std::to_string(T) +
                                               " thread(s): " + why);
                        row[name] = v;
                        const Key k{name, s.name(), pass, dtype, T};
                        results[k] = v;
                        order.push_back(k);
                    };
                    auto fail_cell = [&](const std::string& name, const std::string& why) {
                        applicable[name] = true;
                        row[name] = nan_v;
                        failures.push_back("FAILED: " + name + " " + s.name() + " " + pass + " " + dtype + " " + std::to_string(T) +
                                           " thread(s): " + why);
                        const Key k{name, s.name(), pass, dtype, T};
                        results[k] = nan_v;
                        order.push_back(k);
                    };

                    // lossjit
                    if (!kern_err[b16][fb].empty()) fail_cell("lossjit", "compile: " + kern_err[b16][fb]);
                    else {
                        lossjit::Batch batch;
                        if (b16) batch.bind("u", lossjit::matrix(static_cast<const lossjit::bf16*>(d.xb.data()), N, K));
                        else batch.bind("u", lossjit::matrix(static_cast<const float*>(d.x.data()), N, K));
                        batch.bind("y", lossjit::column(static_cast<const std::int64_t*>(d.y.data()), N)).threads(T);
                        if (fb) {
                            if (b16) batch.bind("grad.u", lossjit::matrix(d.gb.data(), N, K));
                            else batch.bind("grad.u", lossjit::matrix(d.g.data(), N, K));
                            batch.scale("grad.u", 1.0 / static_cast<double>(N));
                        }
                        const lossjit::Kernel& k = kern[b16][fb];
                        Contender c;
                        if (fb)
                            c.poison = [&] {
                                if (b16) std::fill(d.gb.begin(), d.gb.end(), lossjit::bf16{0x7fc0});
                                else std::fill(d.g.begin(), d.g.end(), NAN);
                            };
                        c.run = [&k, batch, N] { return k.run(batch).sum("loss") / static_cast<double>(N); };
                        c.verify = [&, b16, fb](double v) {
                            std::string e = check_loss(v, d);
                            if (e.empty() && fb) e = b16 ? check_grad(d.gb.data(), d, grad_rtol_bf16) : check_grad(d.g.data(), d, grad_rtol_f32);
                            return e;
                        };
                        cell("lossjit", c);
                    }

                    if (!b16) {
                        // naive and careful C++
                        for (const std::string name : {"naive", "careful"}) {
                            const bool careful = name == "careful";
                            Contender c;
                            if (fb) {
                                c.poison = [&] { std::fill(d.g.begin(), d.g.end(), NAN); };
                                c.run = [&, careful, T] {
                                    return split(T, N, [&](std::size_t r0, std::size_t r1) {
                                               return careful ? bench::careful_fwdbwd(d.x.data(), d.y.data(), d.g.data(), r0, r1, K, inv_n)
                                                              : bench::naive_fwdbwd(d.x.data(), d.y.data(), d.g.data(), r0, r1, K, inv_n);
                                           }) /
                                           static_cast<double>(N);
                                };
                                c.verify = [&](double v) {
                                    std::string e = check_loss(v, d);
                                    return e.empty() ? check_grad(d.g.data(), d, grad_rtol_f32) : e;
                                };
                            } else {
                                c.run = [&, careful, T] {
                                    return split(T, N, [&](std::size_t r0, std::size_t r1) {
                                               return careful ? bench::careful_fwd(d.x.data(), d.y.data(), r0, r1, K)
                                                              : bench::naive_fwd(d.x.data(), d.y.data(), r0, r1, K);
                                           }) /
                                           static_cast<double>(N);
                                };
                                c.verify = [&](double v) { return check_loss(v, d); };
                            }
                            cell(name, c);
                        }

                        // PyTorch
                        if (!have_torch) {
                            applicable["pytorch"] = true;
                            skipped["pytorch"] = true;
                        } else {
#ifdef LOSSJIT_BENCH_HAVE_TORCH
                            bench::torch_peer::set_threads(T);
                            Contender c;
                            if (fb) {
                                bool checking = true;
                                c.poison = [&] { std::fill(d.g.begin(), d.g.end(), NAN); };
                                c.run = [&, checking]() mutable {
                                    const double v = bench::torch_peer::fwdbwd(d.x.data(), d.y.data(), N, K, checking ? d.g.data() : nullptr);
                                    checking = false;  // only the checked run copies the gradient out
                                    return v;
                                };
                                c.verify = [&](double v) {
                                    std::string e = check_loss(v, d);
                                    return e.empty() ? check_grad(d.g.data(), d, grad_rtol_f32) : e;
                                };
                            } else {
                                c.run = [&] { return bench::torch_peer::fwd(d.x.data(), d.y.data(), N, K); };
                                c.verify = [&](double v) { return check_loss(v, d); };
                            }
                            cell("pytorch", c);
#endif
                        }

                        // oneDNN (fwd only)
                        if (!fb) {
                            if (!have_dnnl) {
                                applicable["onednn"] = true;
                                skipped["onednn"] = true;
                            } else {
#ifdef LOSSJIT_BENCH_HAVE_DNNL
                                if (!dnnl) fail_cell("onednn", "primitive creation: " + dnnl_err);
                                else {
                                    Contender c;
                                    c.poison = [&] { std::fill(d.out.begin(), d.out.end(), NAN); };
                                    c.run = [&, T] { return dnnl->run(d.x.data(), d.y.data(), d.out.data(), T); };
                                    c.verify = [&](double v) { return check_loss(v, d); };
                                    cell("onednn", c);
                                }
#endif
                            }
                        }
                    }

                    // rooflines, on the buffers of this row's dtype
                    {
                        Contender c;
                        c.run = [&, T, b16] {
                            return split(T, n, [&](std::size_t i0, std::size_t i1) {
                                return b16 ? bench::roof_read_bf16(reinterpret_cast<const std::uint16_t*>(d.xb.data()) + i0, i1 - i0)
                                           : bench::roof_read_f32(d.x.data() + i0, i1 - i0);
                            });
                        };
                        c.verify = [&](double v) -> std::string {
                            if (std::fabs(v - d.sum_x) <= 1e-5 * d.sum_abs_x) return "";
                            return "sum " + std::to_string(v) + ", reference " + std::to_string(d.sum_x);
                        };
                        cell("read", c);
                    }
                    {
                        Contender c;
                        c.poison = [&] {
                            if (b16) std::fill(d.outb.begin(), d.outb.end(), lossjit::bf16{0x7fc0});
                            else std::fill(d.out.begin(), d.out.end(), NAN);
                        };
                        c.run = [&, T, b16] {
                            return split(T, n, [&](std::size_t i0, std::size_t i1) {
                                if (b16)
                                    bench::roof_copy_bf16(reinterpret_cast<const std::uint16_t*>(d.xb.data()) + i0,
                                                          reinterpret_cast<std::uint16_t*>(d.outb.data()) + i0, i1 - i0);
                                else bench::roof_copy_f32(d.x.data() + i0, d.out.data() + i0, i1 - i0);
                                return 0.0;
                            });
                        };
                        c.verify = [&, b16](double) -> std::string {
                            const bool same = b16 ? std::memcmp(d.xb.data(), d.outb.data(), n * 2) == 0
                                                  : std::memcmp(d.x.data(), d.out.data(), n * 4) == 0;
                            return same ? "" : "the copy differs from its source";
                        };
                        cell("copy", c);
                    }

                    // the row
                    std::printf("%-12s %-6s %-5s %3d", s.name().c_str(), pass.c_str(), dtype.c_str(), T);
                    for (const char* c : contenders) {
                        const auto it = row.find(c);
                        std::printf(" %8s", fmt_gbps(it == row.end() ? nan_v : it->second, applicable[c], skipped[c]).c_str());
                    }
                    const double jit = row["lossjit"];
                    const double torch = get("pytorch", s, pass, "f32", T), careful = get("careful", s, pass, "f32", T);
                    const double roof = row[fb ? "copy" : "read"];
                    const double f32 = get("lossjit", s, pass, "f32", T);
                    std::printf(" %11s %11s %11s %11s\n", fmt_ratio(jit / torch).c_str(), fmt_ratio(jit / careful).c_str(),
                                fmt_ratio(jit / roof).c_str(), b16 ? fmt_ratio(jit / f32).c_str() : "");
                    std::fflush(stdout);
                }
            }
        }
    }
    if (!failures.empty()) {
        std::printf("\n");
        for (const auto& f : failures) std::printf("%s\n", f.c_str());
    }

    // ---- goals (issue 5), judged on this run's ratios -------------------------------------------
    std::printf("\ngoals (one thread, fp32 unless said; ratios of this run):\n");
    int met = 0, total = 0;
    auto verdict = [&](const char* goal, bool ok, bool complete, const std::string& detail) {
        ++total;
        met += ok && complete;
        std::printf("  %-9s %s: %s\n", !complete ? "N/A" : ok ? "MET" : "NOT MET", goal, detail.c_str());
    };
    auto ratio_goal = [&](const char* goal, double need, const std::string& pass, const std::string& dtype_a, const std::string& other,
                          const std::string& dtype_b, std::size_t min_k, std::size_t max_k, int Ta, int Tb) {
        bool ok = true, complete = true;
        std::string detail;
        for (const Shape& s : shapes) {
            if (s.K < min_k || s.K > max_k) continue;
            const double r = get("lossjit", s, pass, dtype_a, Ta) / get(other, s, pass, dtype_b, Tb);
            detail += (detail.empty() ? "" : ", ") + s.name() + " " + fmt_ratio(r);
            if (!std::isfinite(r)) complete = false;
            else ok = ok && r >= need;
        }
        verdict(goal, ok, complete, detail);
    };
    constexpr std::size_t anyK = ~std::size_t{0};
    ratio_goal("fwd+bwd >= 10x PyTorch", 10, "fwdbwd", "f32", "pytorch", "f32", 0, anyK, 1, 1);
    ratio_goal("fwd+bwd >= 1.5x careful C++", 1.5, "fwdbwd", "f32", "careful", "f32", 0, anyK, 1, 1);
    ratio_goal("K >= 1000: fwd >= 0.7x streaming read", 0.7, "fwd", "f32", "read", "f32", 1000, anyK, 1, 1);
    ratio_goal("K >= 1000: fwd+bwd >= 0.6x copy", 0.6, "fwdbwd", "f32", "copy", "f32", 1000, anyK, 1, 1);
    {
        const double v = get("lossjit", shapes[0], "fwdbwd", "f32", 1);
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s %.2f GB/s", shapes[0].name().c_str(), v);
        verdict("K = 10: fwd+bwd >= 8 GB/s", v >= 8, std::isfinite(v), buf);
    }
    if (all > 1) {
        for (const std::string pass : {"fwd", "fwdbwd"}) {
            const std::string goal = "K >= 1000: " + pass + " on " + std::to_string(all) + " threads >= 1.7x one thread";
            ratio_goal(goal.c_str(), 1.7, pass, "f32", "lossjit", "f32", 1000, anyK, all, 1);
            std::string roof;
            const char* rc = pass == "fwd" ? "read" : "copy";
            for (const Shape& s : shapes)
                if (s.K >= 1000)
                    roof += (roof.empty() ? "" : ", ") + s.name() + " " + fmt_ratio(get(rc, s, pass, "f32", all) / get(rc, s, pass, "f32", 1));
            std::printf("            (memory bandwidth: %s on %d threads / 1 thread: %s)\n", rc, all, roof.c_str());
        }
    } else {
        std::printf("  N/A       all cores >= 1.7x one thread: this machine has one hardware thread\n");
    }
    ratio_goal("K >= 1000: bf16 fwd rows/s >= 1.5x fp32", 1.5, "fwd", "bf16", "lossjit", "f32", 1000, anyK, 1, 1);
    ratio_goal("K >= 1000: bf16 fwd+bwd rows/s >= 1.5x fp32", 1.5, "fwdbwd", "bf16", "lossjit", "f32", 1000, anyK, 1, 1);
    {
        char buf[200];
        std::snprintf(buf, sizeof buf, "first compile() in this process (K = %zu, fwd, f32, LLJIT start included): %.1f ms%s", shapes[0].K,
                      first_compile_ms, first_from_disk ? " (from the disk cache: LOSSJIT_CACHE_DIR is set)" : "");
        verdict("JIT latency < 20 ms", first_compile_ms < 20 && !first_from_disk, first_compile_ms >= 0, buf);
        std::printf("            (a cold process alone: build/bench/jit_latency)\n");
    }
    std::printf("  %d of %d goals met\n", met, total);

    if (!st.plot.empty() && st.json.empty()) st.json = st.plot + ".json";
    if (!st.json.empty()) {
        write_json(st.json);
        std::printf("\njson: %s\n", st.json.c_str());
    }
    if (!st.plot.empty()) {
        const int rc = draw_plot(st.json, st.plot);
        if (rc == 0) std::printf("plot: %s\n", st.plot.c_str());
        else if (rc == 3) std::printf("plot: skipped: matplotlib is not installed (Debian: python3-matplotlib)\n");
        else std::printf("plot: FAILED (bench/plot.py exited with an error)\n");
    }
    std::printf("total time %.1f s; load average %.2f at the end\n", std::chrono::duration<double>(clk::now() - t_start).count(),
                load_average());
    return 0;
}
