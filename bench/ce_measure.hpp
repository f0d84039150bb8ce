// How bench_ce measures, whatever the contender: the settings, the shapes, the data with its
// double-precision reference, the checks a contender must pass before its time counts, the timing
// loop, the split of rows over threads, and the store of the results the report reads.
#pragma once

#include <lossjit/kernel.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <new>
#include <set>
#include <string>
#include <vector>

namespace bench {

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
inline const Shape shapes[] = {{65536, 10}, {8192, 1000}, {512, 32000}, {64, 256000}};

// One line of the table: every contender runs it.
struct Row {
    Shape shape;
    std::string pass, dtype;  // "fwd" or "fwdbwd"; "f32" or "bf16"
    int threads;
    bool fwdbwd() const { return pass == "fwdbwd"; }
    bool bf16() const { return dtype == "bf16"; }
};

// ---- results -----------------------------------------------------------------------------------

struct Key {
    std::string contender, shape, pass, dtype;
    int threads;
    bool operator<(const Key& o) const;
};

// What one run of bench_ce measured, for the table, the goals and the JSON.
class Results {
public:
    // A measured cell in GB/s; NaN with the reason when the contender FAILED.
    void record(const std::string& contender, const Row& r, double gbps, const std::string& failure);
    // A contender that cannot run in this process (its library is absent or did not start).
    void skip(const std::string& contender, const Row& r);

    // GB/s of a cell; NaN when it FAILED or did not run.
    double get(const Key& k) const;
    double get(const std::string& c, const Shape& s, const std::string& pass, const std::string& dtype, int T) const {
        return get(Key{c, s.name(), pass, dtype, T});
    }
    double get(const std::string& c, const Row& r) const { return get(c, r.shape, r.pass, r.dtype, r.threads); }
    bool ran(const std::string& c, const Row& r) const;
    bool skipped(const std::string& c, const Row& r) const;

    const std::vector<Key>& order() const { return order_; }  // cells in the order they were recorded
    const std::vector<std::string>& failures() const { return failures_; }

    // the first compile() in this process (LLJIT start included): -1 when none succeeded
    double first_compile_ms = -1;
    bool first_from_disk = false;
    std::string kernel_cpu;  // the CPU the kernels were compiled for (LLVM's name)

private:
    std::map<Key, double> gbps_;  // NaN: FAILED
    std::vector<Key> order_;
    std::set<Key> skipped_;
    std::vector<std::string> failures_;
};

// ---- data and reference ------------------------------------------------------------------------

// Every contender's arrays start on a 64-byte boundary, as PyTorch's and oneDNN's allocators give
// them (a large std::vector's storage starts 16 bytes past a page).
template <class T>
struct Aligned64 {
    using value_type = T;
    Aligned64() = default;
    template <class U>
    Aligned64(const Aligned64<U>&) {}
    T* allocate(std::size_t n) {
        void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
        if (!p) throw std::bad_alloc();
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t) { std::free(p); }
    template <class U>
    bool operator==(const Aligned64<U>&) const { return true; }
};
template <class T>
using Buffer = std::vector<T, Aligned64<T>>;

struct Data {
    std::size_t N = 0, K = 0;
    Buffer<float> x;                    // logits (bf16-representable values)
    Buffer<lossjit::bf16> xb;           // the same logits as bf16
    std::vector<std::int64_t> y;        // labels
    Buffer<float> g, out;               // gradient; oneDNN's log-probabilities and the copy's output
    Buffer<lossjit::bf16> gb, outb;
    std::vector<float> p;               // reference softmax (computed in double)
    double loss = 0;                    // reference mean loss
    double sum_x = 0, sum_abs_x = 0;    // for the read roofline's check
};

void make_data(Data& d, const Shape& s, std::uint64_t seed);

// "" when the mean loss (or N * gradient, against softmax - onehot) matches the reference; else
// what is off, where.
std::string check_loss(double got, const Data& d);
std::string check_grad(const float* g, const Data& d);
std::string check_grad(const lossjit::bf16* g, const Data& d);

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
    std::function<void()> enter;                  // before each round of its runs (a peer's threads)
};

// One contender on one row of the table.
struct Cell {
    std::string contender;
    Row row;
    Contender c;
};

// Every cell's checked run, then each one's warm-up, then the median of its repeated runs, in
// seconds (NaN, and a message in failures, when the check failed or it threw). The repetitions
// run in rounds, each cell's share of them in every round, so that all the cells' samples span
// the same minutes: this machine's speed drifts by up to 2x from minute to minute, and the
// goals are ratios between cells (one thread against two, bf16 against f32, a peer against a
// roofline). Consecutive runs of a cell within a round keep its data as warm as before.
std::vector<double> measure(const Settings& st, const std::vector<Cell>& cells, std::vector<std::string>& failures);

}  // namespace bench
