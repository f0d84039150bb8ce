// The libFuzzer target: one input is one random valid Graph (random_graph.hpp), compiled by the
// JIT with random options (fp32 or fp64, K baked in or generic, logsumexp strategy, unroll), run
// on a random batch (K from 1 to 5000, up to 8 rows, values from N(0, scale) with +-inf, NaN,
// huge, tiny, zero and exp-overflow-sized values mixed in, fully -inf rows, labels with
// ignore_index, reduction none, sum or mean, one or two threads), and every output element
// judged against the long double evaluator (oracle.hpp). A wrong element aborts with a report.
// The regression replayer (replay_main.cpp) runs the same function on the saved inputs.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "byte_reader.hpp"
#include "lossjit/kernel.hpp"
#include "oracle.hpp"
#include "random_graph.hpp"

namespace fuzz {
namespace {

// How one row's real values (logits, per-row scalars) are drawn.
struct RowStyle {
    double scale = 1;
    unsigned special_one_in = 0;  // 0: no special values
    bool all_neg_inf = false;     // a fully masked row
};

long double special(Rng& r, bool f32) {
    const long double sign = r.below(2) ? 1 : -1;
    switch (r.below(7)) {
    case 0: return std::numeric_limits<long double>::quiet_NaN();
    case 1: return sign * std::numeric_limits<long double>::infinity();
    case 2: return sign * (f32 ? (r.below(2) ? 1e30L : 3e38L) : (r.below(2) ? 1e300L : 1e30L));   // huge
    case 3: return sign * (f32 ? (r.below(2) ? 1e-30L : 1e-40L) : (r.below(2) ? 1e-300L : 1e-310L));  // tiny, subnormal
    case 4: return sign * 0.0L;
    case 5: return sign * (f32 ? 88.5L : 709.5L);  // at the edge of exp's range
    default: return sign * (f32 ? 104.0L : 745.0L);  // beyond it: exp underflows to 0
    }
}

long double real_value(Rng& r, const RowStyle& st, bool f32) {
    if (st.all_neg_inf) return -std::numeric_limits<long double>::infinity();
    if (st.special_one_in != 0 && r.below(st.special_one_in) == 0) return special(r, f32);
    // N(0, scale) by Box-Muller
    const double u1 = 1 - r.uniform(), u2 = r.uniform();
    return st.scale * std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

struct Buffers {
    std::vector<float> f32;
    std::vector<double> f64;
    std::vector<std::int32_t> i32;
    std::vector<std::int64_t> i64;
    std::vector<long double> ref;  // the values as the kernel reads them (rows x cols)
    bool shared = false;           // one row for every row of the batch
};

struct Case {
    RandomGraph rg;
    CompileOptions opt;
    std::size_t N = 1, K = 1;
    Reduction reduction = Reduction::none;
    bool set_ignore = false;
    std::int64_t ignore = -100;
    int threads = 1;
    std::vector<RowStyle> styles;
    std::vector<unsigned> prob_mode, weight_mode;
    unsigned ignore_one_in = 0;
    bool shared_weights = false;
    std::uint64_t seed = 0;
};

std::size_t draw_row_length(ByteReader& in) {
    switch (in.pick(4)) {
    case 0: return 1 + in.pick(8);
    case 1: return 9 + in.pick(56);
    case 2: return 65 + in.pick(536);
    default: return 601 + in.pick(4400);  // up to 5000
    }
}

Case draw_case(ByteReader& in) {
    Case c;
    c.rg = GraphDrawer(in).draw();
    const bool f64 = in.one_in(2);
    c.opt.dtype = f64 ? DType::f64 : DType::f32;
    c.K = draw_row_length(in);
    c.opt.row_length = in.one_in(2) ? c.K : 0;
    c.opt.label_dtype = in.one_in(2) ? DType::i32 : DType::i64;
    c.opt.lse = static_cast<CompileOptions::Lse>(in.pick(3));
    if (in.one_in(4)) c.opt.block = 16 << in.pick(6);
    if (in.one_in(4)) c.opt.unroll = 1 << in.pick(3);
    for (const Node& n : c.rg.g.nodes())  // only the params the simplified graph still has
        if (n.op == Op::input && n.kind == InputKind::param)
            for (auto& p : c.rg.params)
                if (p.first == n.name.view()) c.opt.params.push_back(p);
    c.N = 1 + in.pick(8);
    c.reduction = static_cast<Reduction>(in.pick(3));
    c.set_ignore = in.one_in(3);
    c.ignore = in.one_in(2) ? -1 : -100;
    c.threads = 1 + static_cast<int>(in.pick(2));
    c.ignore_one_in = in.pick(5);
    c.shared_weights = in.one_in(2);
    static constexpr double scales[] = {1e-3, 0.3, 1, 3, 30, 300, 1e4};
    static constexpr unsigned special_rates[] = {0, 0, 64, 8, 2};
    for (std::size_t r = 0; r < c.N; ++r) {
        RowStyle st;
        st.scale = scales[in.pick(std::size(scales))];
        st.special_one_in = special_rates[in.pick(std::size(special_rates))];
        st.all_neg_inf = in.one_in(16);
        c.styles.push_back(st);
        c.prob_mode.push_back(in.pick(3));
        c.weight_mode.push_back(in.pick(4));
    }
    c.seed = in.seed();
    return c;
}

// Fills every input slot with values (the reference copy as stored), binds every output
// (poisoned with NaN, so that an element the kernel never writes shows).
void make_batch(const Kernel& k, const Case& c, std::vector<Buffers>& bufs, Batch& b) {
    Rng rng(c.seed);
    const auto& slots = k.slots();
    bufs.resize(slots.size());
    std::vector<std::int64_t> labels(c.N);
    for (auto& y : labels) y = c.ignore_one_in != 0 && rng.below(c.ignore_one_in) == 0 ? c.ignore : static_cast<std::int64_t>(rng.below(c.K));
    const bool f32 = c.opt.dtype == DType::f32;
    for (std::size_t s = 0; s < slots.size(); ++s) {
        const Slot& sl = slots[s];
        Buffers& buf = bufs[s];
        buf.shared = sl.kind == InputKind::weights && c.shared_weights;
        const std::size_t rows = buf.shared ? 1 : c.N, cols = sl.vector ? c.K : 1;
        buf.ref.assign(rows * cols, std::numeric_limits<long double>::quiet_NaN());
        for (std::size_t r = 0; r < rows && !sl.output; ++r) {
            long double* row = &buf.ref[r * cols];
            long double total = 0;
            for (std::size_t j = 0; j < cols; ++j) {
                long double x = 0;
                switch (sl.kind) {
                case InputKind::label: x = static_cast<long double>(labels[r]); break;
                case InputKind::probs:  // a distribution: dense, one-hot, or sparse
                    x = c.prob_mode[r] == 0 ? rng.uniform() : c.prob_mode[r] == 1 ? (j == static_cast<std::size_t>(labels[r] < 0 ? 0 : labels[r]))
                                                                                 : (rng.below(2) ? rng.uniform() : 0);
                    break;
                case InputKind::weights:  // >= 0: negative weights are an error of run()
                    x = c.weight_mode[r] == 0 ? 1 : c.weight_mode[r] == 1 ? 2 * rng.uniform() : c.weight_mode[r] == 2 ? (rng.below(3) ? 0 : 1) : 1e30L;
                    break;
                default: x = real_value(rng, c.styles[r], f32); break;
                }
                row[j] = x;
                total += x;
            }
            if (sl.kind == InputKind::probs && total > 0)
                for (std::size_t j = 0; j < cols; ++j) row[j] /= total;
        }
        Array a;
        const std::size_t n = rows * cols;
        if (sl.dtype == DType::i32 || sl.dtype == DType::i64) {
            buf.i32.assign(n, 0);
            buf.i64.assign(n, 0);
            for (std::size_t i = 0; i < n; ++i) buf.i32[i] = static_cast<std::int32_t>(buf.i64[i] = static_cast<std::int64_t>(buf.ref[i]));
            a = sl.dtype == DType::i32 ? column(buf.i32.data(), c.N) : column(buf.i64.data(), c.N);
        } else if (sl.dtype == DType::f32) {
            buf.f32.resize(n);
            for (std::size_t i = 0; i < n; ++i) buf.ref[i] = buf.f32[i] = static_cast<float>(buf.ref[i]);
            a = buf.shared ? shared_row(buf.f32.data(), c.K) : sl.vector ? matrix(buf.f32.data(), c.N, c.K) : column(buf.f32.data(), c.N);
        } else {
            buf.f64.resize(n);
            for (std::size_t i = 0; i < n; ++i) buf.ref[i] = buf.f64[i] = static_cast<double>(buf.ref[i]);
            a = buf.shared ? shared_row(buf.f64.data(), c.K) : sl.vector ? matrix(buf.f64.data(), c.N, c.K) : column(buf.f64.data(), c.N);
        }
        b.bind(sl.name, a);
    }
    b.threads(c.threads).reduction(c.reduction);
}

long double output(const Buffers& b, std::size_t i) { return b.f32.empty() ? b.f64[i] : b.f32[i]; }

struct Stats {
    std::uint64_t cases = 0, rows = 0, ignored = 0, masked = 0, unclear_rows = 0, strict = 0, loose = 0;
    ~Stats() {
        if (std::getenv("LOSSJIT_FUZZ_STATS") != nullptr)
            std::fprintf(stderr,
                         "lossjit fuzz: %llu cases, %llu rows (%llu ignored, %llu masked, %llu unclear); elements checked: "
                         "%llu strictly, %llu by class only\n",
                         static_cast<unsigned long long>(cases), static_cast<unsigned long long>(rows), static_cast<unsigned long long>(ignored),
                         static_cast<unsigned long long>(masked), static_cast<unsigned long long>(unclear_rows),
                         static_cast<unsigned long long>(strict), static_cast<unsigned long long>(loose));
    }
};
Stats stats;

// The inputs of one row, printed for a report (the first 16 elements of vectors).
std::string row_inputs(const Kernel& k, const Case& c, const std::vector<Buffers>& bufs, std::size_t r) {
    std::ostringstream os;
    os.precision(9);
    for (std::size_t s = 0; s < k.slots().size(); ++s) {
        const Slot& sl = k.slots()[s];
        if (sl.output) continue;
        const std::size_t cols = sl.vector ? c.K : 1, base = bufs[s].shared ? 0 : r * cols;
        os << "  " << sl.name << " =";
        for (std::size_t j = 0; j < std::min<std::size_t>(cols, 16); ++j) os << " " << static_cast<double>(bufs[s].ref[base + j]);
        if (cols > 16) os << " ...";
        // Non-finite values beyond the printed ones decide most special cases: name them all.
        for (std::size_t j = 16; j < cols; ++j)
            if (!std::isfinite(static_cast<double>(bufs[s].ref[base + j]))) os << " [" << j << "]=" << static_cast<double>(bufs[s].ref[base + j]);
        os << "\n";
    }
    return os.str();
}

[[noreturn]] void fail(const Case& c, const Kernel& k, const std::string& what) {
    std::ostringstream os;
    os << "lossjit fuzz: MISMATCH: " << what << "\n  drawn loss: " << c.rg.drawn << "\n";
    for (const Output& o : c.rg.g.outputs()) os << "  " << o.name.view() << " = " << to_string(c.rg.g, o.root) << "\n";
    os << "  dtype " << to_string(c.opt.dtype) << ", K = " << c.K << (c.opt.row_length ? " (baked in)" : " (generic)") << ", N = " << c.N
       << ", reduction " << to_string(c.reduction) << ", lse " << static_cast<int>(c.opt.lse) << ", block " << c.opt.block << ", unroll "
       << c.opt.unroll << ", threads " << c.threads << ", cpu " << k.cpu() << "\n";
    for (auto& [n, v] : c.opt.params) os << "  param " << n << " = " << v << "\n";
    std::cerr << os.str();
    std::abort();
}

std::string describe(const char* name, std::size_t row, std::size_t j, long double got, long double want,
                     const std::array<long double, emulations>& emu, const Verdict& v) {
    std::ostringstream os;
    os.precision(17);  // fp64 results can differ in their last digits only
    os << name << " row " << row << " element " << j << ": got " << static_cast<double>(got) << ", want "
       << static_cast<double>(want) << " (emulated";
    for (long double e : emu) os << " " << static_cast<double>(e);
    if (v.strict) os << "; tolerance " << static_cast<double>(v.tolerance) << ", |got - want| " << static_cast<double>(std::fabs(got - want));
    else os << "; class check only";
    os << ")";
    return os.str();
}

void check(const Case& c, const Kernel& k, const std::vector<Buffers>& bufs, const Result& res) {
    const auto& slots = k.slots();
    const Graph& g = k.graph();
    const Precision pr{c.opt.dtype == DType::f32};
    int label_slot = -1;
    for (std::size_t s = 0; s < slots.size(); ++s)
        if (!slots[s].output && slots[s].kind == InputKind::label) label_slot = static_cast<int>(s);
    std::size_t ignored = 0, masked_rows = 0, unclear = 0, counted_rows = 0;
    std::vector<int> state(c.N, 0);  // 0 counted, 1 ignored, 2 masked, 3 unclear
    std::vector<std::vector<Value>> exact(c.N);
    std::vector<std::array<std::vector<Value>, emulations>> emu(c.N);
    Rng noise(c.seed ^ 0x5eedull);
    for (std::size_t r = 0; r < c.N; ++r) {
        if (label_slot >= 0 && static_cast<std::int64_t>(bufs[static_cast<std::size_t>(label_slot)].ref[r]) == c.ignore) {
            state[r] = 1;
            ++ignored;
            continue;
        }
        RowValues row;
        for (auto& [n, v] : c.opt.params) row.set(n, static_cast<long double>(v));
        for (std::size_t s = 0; s < slots.size(); ++s) {
            const Slot& sl = slots[s];
            if (sl.output) continue;
            const std::size_t base = bufs[s].shared ? 0 : r * (sl.vector ? c.K : 1);
            const auto* p = &bufs[s].ref[base];
            if (sl.vector) row.set(sl.name, std::vector<long double>(p, p + c.K));
            else row.set(sl.name, *p);
        }
        exact[r] = evaluate_all(g, row, c.K);
        int m = masked(g, exact[r], c.K);
        for (int e = 0; e < emulations; ++e) {
            emu[r][static_cast<std::size_t>(e)] = emulate(g, exact[r], c.K, pr, noise,
                                                          e == emulations - 1   ? Noise::coherent
                                                          : e == emulations - 2 ? Noise::alternating
                                                                                : Noise::random);
            if (masked(g, emu[r][static_cast<std::size_t>(e)], c.K) != m) m = -1;
        }
        state[r] = m == 1 ? 2 : m < 0 ? 3 : 0;
        masked_rows += m == 1;
        unclear += m < 0;
        counted_rows += m == 0;
    }
    stats.cases++;
    stats.rows += c.N;
    stats.ignored += ignored;
    stats.masked += masked_rows;
    stats.unclear_rows += unclear;
    // the mean's factor on the gradients: 1 / the rows the kernel counted (checked below)
    const long double factor = c.reduction == Reduction::mean && res.counted > 0 ? 1.0L / static_cast<long double>(res.counted) : 1;
    bool aggregate_clear = unclear == 0;
    for (std::size_t s = 0; s < slots.size(); ++s) {
        const Slot& sl = slots[s];
        if (!sl.output) continue;
        const int root = g.output_root(sl.name);
        const std::size_t cols = sl.vector ? c.K : 1;
        long double sum_got = 0, sum_abs = 0;
        for (std::size_t r = 0; r < c.N; ++r) {
            for (std::size_t j = 0; j < cols; ++j) {
                const long double got = output(bufs[s], r * cols + j);
                if (!sl.vector) {
                    sum_got += got;
                    sum_abs += std::fabs(got);
                }
                if (state[r] == 3) continue;
                if (state[r] != 0) {  // skipped rows: every output 0
                    if (got != 0) fail(c, k, sl.name + " row " + std::to_string(r) + " element " + std::to_string(j) + ": got " +
                                                 std::to_string(static_cast<double>(got)) + " in a " + (state[r] == 1 ? "ignored" : "masked") + " row");
                    continue;
                }
                // the mean scales the gradients (vector outputs), not the per-row values
                const long double f = sl.vector ? factor : 1;
                const long double want = exact[r][static_cast<std::size_t>(root)][j] * f;
                std::array<long double, emulations> em{};
                for (int e = 0; e < emulations; ++e) em[static_cast<std::size_t>(e)] = pr.round(emu[r][static_cast<std::size_t>(e)][static_cast<std::size_t>(root)][j] * f);
                const Verdict v = judge(got, want, em, pr);
                (v.strict ? stats.strict : stats.loose)++;
                if (!sl.vector && !v.strict) aggregate_clear = false;
                if (!v.ok) fail(c, k, describe(sl.name.c_str(), r, j, got, want, em, v) + "\n" + row_inputs(k, c, bufs, r));
            }
        }
        // the run's sum of a per-row output is the sum of the values it wrote, in double: where
        // their magnitudes add up past double's range a partial sum may overflow (to inf, or
        // NaN with an inf of the other sign), and only finite sums are compared
        if (!sl.vector) {
            const long double total = res.sum(sl.name);
            const bool may_overflow = sum_abs > std::numeric_limits<double>::max();
            const bool ok = classify(sum_got) == Cls::finite
                                ? std::fabs(total - sum_got) <= 1e-12L * sum_abs + 1e-300L || (may_overflow && !std::isfinite(total))
                                : classify(total) == classify(sum_got);
            if (!ok) fail(c, k, "sum of " + sl.name + ": got " + std::to_string(static_cast<double>(total)) + ", the rows add up to " +
                                    std::to_string(static_cast<double>(sum_got)));
        }
    }
    if (res.rows != c.N || res.ignored != ignored) fail(c, k, "Result counts rows " + std::to_string(res.rows) + ", ignored " + std::to_string(res.ignored));
    if (aggregate_clear && (res.masked != masked_rows || res.counted != counted_rows))
        fail(c, k, "Result counts masked " + std::to_string(res.masked) + ", counted " + std::to_string(res.counted) + "; expected " +
                       std::to_string(masked_rows) + " and " + std::to_string(counted_rows));
}

}  // namespace
}  // namespace fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace fuzz;
    ByteReader in(data, size);
    Case c = draw_case(in);
    const Kernel k = compile(c.rg.g, c.opt);
    std::vector<Buffers> bufs;
    Batch b;
    bool has_label = false;
    for (const Slot& sl : k.slots()) has_label = has_label || (!sl.output && sl.kind == InputKind::label);
    if (c.set_ignore && has_label) b.ignore_index(c.ignore);
    else c.ignore = -100;
    make_batch(k, c, bufs, b);
    const Result res = k.run(b);
    check(c, k, bufs, res);
    return 0;
}
