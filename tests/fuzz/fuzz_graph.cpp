// The libFuzzer target: one input is one random valid Graph (random_graph.hpp), compiled by the
// JIT with random options (fp32, fp64 or bf16 storage, K baked in or generic, logsumexp strategy,
// unroll), run on a random batch (K from 1 to 5000, up to 8 rows, values from N(0, scale) with
// +-inf, NaN, huge, tiny, zero and exp-overflow-sized values of the stored type mixed in, fully
// -inf rows, labels with ignore_index, reduction none, sum or mean, the mean weighted by the
// class weights w[y] (weighted_mean) where the kernel has both, one or two threads), and every
// output element judged against the long double evaluator (oracle.hpp), each slot by its own
// dtype (a bf16 kernel's per-row values are fp32). A wrong element, a wrong count or
// denominator in the Result, or any error of run() aborts with a report.
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

// A special value for an input stored as `d`: huge, tiny and subnormal ones of that type; the
// edges of exp's range are those of the compute type (bf16 inputs are computed in fp32).
long double special(Rng& r, DType d) {
    const long double sign = r.below(2) ? 1 : -1;
    const bool f64 = d == DType::f64, b16 = d == DType::bf16;
    switch (r.below(7)) {
    case 0: return std::numeric_limits<long double>::quiet_NaN();
    case 1: return sign * std::numeric_limits<long double>::infinity();
    case 2: return sign * (f64 ? (r.below(2) ? 1e300L : 1e30L) : r.below(2) ? 1e30L : b16 ? 3.38e38L : 3e38L);  // huge (bf16's max: 3.39e38)
    case 3:  // tiny, subnormal (bf16's: multiples of 2^-133 = 9.2e-41; 1e-39 is 11 of them)
        return sign * (f64 ? (r.below(2) ? 1e-300L : 1e-310L) : r.below(2) ? 1e-30L : b16 ? 1e-39L : 1e-40L);
    case 4: return sign * 0.0L;
    case 5: return sign * (f64 ? 709.5L : 88.5L);  // at the edge of exp's range
    default: return sign * (f64 ? 745.0L : 104.0L);  // beyond it: exp underflows to 0
    }
}

long double real_value(Rng& r, const RowStyle& st, DType d) {
    if (st.all_neg_inf) return -std::numeric_limits<long double>::infinity();
    if (st.special_one_in != 0 && r.below(st.special_one_in) == 0) return special(r, d);
    // N(0, scale) by Box-Muller
    const double u1 = 1 - r.uniform(), u2 = r.uniform();
    return st.scale * std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

struct Buffers {
    DType dtype = DType::f32;  // the slot's, which may differ from the option's (bf16 kernels: fp32 scalars)
    std::vector<float> f32;
    std::vector<double> f64;
    std::vector<bf16> b16;
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
    bool weighted_mean = false;  // drawn; applied where the kernel allows it (see weighted_mean_applies)
    bool loss_alone = false;     // the gradients dropped: a fwd kernel
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
    ByteReader graph_bytes = in;  // to draw the graph again, weighted by class (see the end)
    c.rg = GraphDrawer(in).draw();
    const bool f64 = in.one_in(2);
    c.opt.dtype = f64 ? DType::f64 : DType::f32;
    c.K = draw_row_length(in);
    c.opt.row_length = in.one_in(2) ? c.K : 0;
    c.opt.label_dtype = in.one_in(2) ? DType::i32 : DType::i64;
    c.opt.lse = static_cast<CompileOptions::Lse>(in.pick(3));
    if (in.one_in(4)) c.opt.block = 16 << in.pick(6);
    if (in.one_in(4)) c.opt.unroll = 1 << in.pick(3);
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
    // Read last: an input that ends here decodes to the case it did before bf16, weighted_mean
    // and class weighting were drawn (past the end every read is 0: fp32, no weighted mean, no
    // class weighting); the regression inputs saved before them were cut to end here.
    if (!f64 && in.pick(2) == 1) c.opt.dtype = DType::bf16;
    c.weighted_mean = in.pick(2) == 1;
    // the same graph with each row's loss weighted by w[y] (what weighted_mean is for)
    if (in.pick(2) == 1) c.rg = GraphDrawer(graph_bytes, true).draw();
    // the loss alone, without its gradients, now and then: a fwd kernel (Plan::batched_tail,
    // a last pass of reductions alone); 0 past the end keeps them
    if (in.pick(4) == 3) {
        Graph g;
        std::vector<int> memo(static_cast<std::size_t>(c.rg.g.size()), -1);
        for (const Output& o : c.rg.g.outputs())
            if (!o.name.view().starts_with("grad.")) g.add_output(o.name.view(), copy_into(g, c.rg.g, o.root, memo));
        // kept where a vector input remains to give the rows their length (a constant loss
        // reads none: its gradient was what read u)
        for (const Node& n : g.nodes()) c.loss_alone = c.loss_alone || (n.op == Op::input && n.shape == Shape::vector);
        if (c.loss_alone) c.rg.g = g;
    }
    for (const Node& n : c.rg.g.nodes())  // only the params the simplified graph still has
        if (n.op == Op::input && n.kind == InputKind::param)
            for (auto& p : c.rg.params)
                if (p.first == n.name.view()) c.opt.params.push_back(p);
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
    for (std::size_t s = 0; s < slots.size(); ++s) {
        const Slot& sl = slots[s];
        Buffers& buf = bufs[s];
        buf.dtype = sl.dtype;
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
                default: x = real_value(rng, c.styles[r], sl.dtype); break;
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
        } else if (sl.dtype == DType::bf16) {  // the value as the kernel reads it: rounded to bf16
            buf.b16.resize(n);
            for (std::size_t i = 0; i < n; ++i) buf.ref[i] = (buf.b16[i] = bf16::from_float(static_cast<float>(buf.ref[i]))).to_float();
            a = buf.shared ? shared_row(buf.b16.data(), c.K) : sl.vector ? matrix(buf.b16.data(), c.N, c.K) : column(buf.b16.data(), c.N);
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
    if (c.weighted_mean) b.weighted_mean("w");
}

long double output(const Buffers& b, std::size_t i) {
    return b.dtype == DType::bf16 ? b.b16[i].to_float() : b.dtype == DType::f64 ? b.f64[i] : b.f32[i];
}

// weighted_mean("w") needs the reduction mean, a label input and a vector weights input "w"
// (one row or one per row); otherwise run() rejects it, so the case keeps the plain reduction.
bool weighted_mean_applies(const Kernel& k, const Case& c) {
    bool label = false, weights = false;
    for (const Slot& sl : k.slots()) {
        label = label || (!sl.output && sl.kind == InputKind::label);
        weights = weights || (!sl.output && sl.kind == InputKind::weights && sl.vector && sl.name == "w");
    }
    return c.weighted_mean && c.reduction == Reduction::mean && label && weights;
}

struct Stats {
    std::uint64_t cases = 0, bf16_cases = 0, weighted = 0, loss_alone = 0, rows = 0, ignored = 0, masked = 0, unclear_rows = 0, strict = 0, loose = 0,
                  unchecked = 0;
    ~Stats() {
        auto n = [](std::uint64_t x) { return static_cast<unsigned long long>(x); };
        if (std::getenv("LOSSJIT_FUZZ_STATS") != nullptr)
            std::fprintf(stderr,
                         "lossjit fuzz: %llu cases (%llu bf16, %llu weighted means, %llu losses alone), %llu rows (%llu ignored, %llu masked, %llu unclear); "
                         "elements checked: %llu strictly, %llu by class only (%llu not at all)\n",
                         n(cases), n(bf16_cases), n(weighted), n(loss_alone), n(rows), n(ignored), n(masked), n(unclear_rows), n(strict), n(loose), n(unchecked));
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
       << ", reduction " << to_string(c.reduction) << (c.weighted_mean ? " (weighted_mean(w))" : "") << ", lse " << static_cast<int>(c.opt.lse)
       << ", block " << c.opt.block << ", unroll " << c.opt.unroll << ", threads " << c.threads << ", cpu " << k.cpu() << "\n";
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
    const Precision pr{c.opt.dtype != DType::f64};  // the compute type: bf16 kernels compute in fp32
    int label_slot = -1, weights_slot = -1;
    for (std::size_t s = 0; s < slots.size(); ++s) {
        if (!slots[s].output && slots[s].kind == InputKind::label) label_slot = static_cast<int>(s);
        if (!slots[s].output && slots[s].name == "w") weights_slot = static_cast<int>(s);
    }
    std::size_t ignored = 0, masked_rows = 0, unclear = 0, counted_rows = 0;
    std::vector<int> state(c.N, 0);  // 0 counted, 1 ignored, 2 masked, 3 unclear
    std::vector<std::vector<Value>> exact(c.N);
    std::vector<std::array<std::vector<Value>, emulations>> emu(c.N);
    std::vector<std::vector<Bound>> bounds(c.N);  // what the emulations can bound of each node (unsampled)
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
            // see oracle.hpp: random (taking every tie), random (none), alternating, coherent
            emu[r][static_cast<std::size_t>(e)] = emulate(g, exact[r], c.K, pr, noise,
                                                          e == emulations - 1   ? Noise::coherent
                                                          : e == emulations - 2 ? Noise::alternating
                                                                                : Noise::random,
                                                          e == emulations - 2 ? Ties::random : e == 1 ? Ties::skipped : Ties::taken);
            if (masked(g, emu[r][static_cast<std::size_t>(e)], c.K) != m) m = -1;
        }
        bounds[r] = unsampled(g, exact[r], emu[r], pr);
        state[r] = m == 1 ? 2 : m < 0 ? 3 : 0;
        masked_rows += m == 1;
        unclear += m < 0;
        counted_rows += m == 0;
    }
    stats.cases++;
    stats.bf16_cases += c.opt.dtype == DType::bf16;
    stats.weighted += c.weighted_mean;
    stats.loss_alone += c.loss_alone;
    stats.rows += c.N;
    stats.ignored += ignored;
    stats.masked += masked_rows;
    stats.unclear_rows += unclear;
    // The mean's factor on the gradients: 1 / the kernel's denominator (checked below against
    // the rows counted here); 0 when it is 0. The kernel sums it in double (up to N terms, then
    // N more when masked rows make it sum again and rescale), divides, and rounds the factor to
    // the compute type: the emulations give it a relative error of 2N double units, then round.
    const bool mean = c.reduction == Reduction::mean;
    const long double factor = !mean ? 1 : res.denominator > 0 ? 1.0L / static_cast<long double>(res.denominator) : 0;
    std::array<long double, emulations> emu_factor{};
    for (int e = 0; e < emulations; ++e) {
        const long double sign = e == emulations - 1 ? 1 : e == emulations - 2 ? -1 : static_cast<long double>(noise.symmetric());
        emu_factor[static_cast<std::size_t>(e)] = mean ? pr.round(factor * (1 + sign * 2 * static_cast<long double>(c.N) * 0x1p-53L)) : 1;
    }
    // bf16 outputs are rounded once at the store, and once more where a mean was rescaled
    const int bf16_roundings = mean && res.masked > 0 && res.denominator > 0 ? 2 : 1;
    bool aggregate_clear = unclear == 0;
    for (std::size_t s = 0; s < slots.size(); ++s) {
        const Slot& sl = slots[s];
        if (!sl.output) continue;
        const int root = g.output_root(sl.name);
        const std::size_t cols = sl.vector ? c.K : 1;
        const Storage store{sl.dtype == DType::bf16 ? bf16_roundings : 0};
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
                const long double want = exact[r][static_cast<std::size_t>(root)][j] * (sl.vector ? factor : 1);
                std::array<long double, emulations> em{};
                for (std::size_t e = 0; e < emulations; ++e)
                    em[e] = pr.round(emu[r][e][static_cast<std::size_t>(root)][j] * (sl.vector ? emu_factor[e] : 1));
                const Verdict v = judge(got, want, em, pr, store, bounds[r][static_cast<std::size_t>(root)]);
                (v.strict ? stats.strict : stats.loose)++;
                stats.unchecked += bounds[r][static_cast<std::size_t>(root)] == Bound::none;
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
    // the denominator: the counted rows, or with weighted_mean the sum of their w[y] (in double)
    long double denominator = 0;
    for (std::size_t r = 0; r < c.N; ++r) {
        if (state[r] != 0) continue;
        if (!c.weighted_mean) {
            denominator += 1;
            continue;
        }
        const Buffers& w = bufs[static_cast<std::size_t>(weights_slot)];
        const auto y = static_cast<std::size_t>(bufs[static_cast<std::size_t>(label_slot)].ref[r]);
        denominator += w.ref[(w.shared ? 0 : r * c.K) + y];
    }
    if (res.reduction != c.reduction) fail(c, k, "Result has reduction " + std::string(to_string(res.reduction)));
    if (aggregate_clear && !(std::fabs(res.denominator - denominator) <= 2 * static_cast<long double>(c.N) * 0x1p-53L * denominator))
        fail(c, k, "Result's denominator " + std::to_string(res.denominator) + ", expected " + std::to_string(static_cast<double>(denominator)));
    // the reduced loss: the sum, or for a mean the sum / denominator (0 when that is 0, unless NaN)
    const double total = res.sum("loss");
    const double reduced = !mean ? total : res.denominator > 0 ? total / res.denominator : std::isnan(total) ? total : 0;
    if (!(res.loss() == reduced || (std::isnan(res.loss()) && std::isnan(reduced))))
        fail(c, k, "Result's loss() " + std::to_string(res.loss()) + ", expected " + std::to_string(reduced));
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
    c.weighted_mean = weighted_mean_applies(k, c);
    make_batch(k, c, bufs, b);
    Result res;
    try {  // every case drawn is valid: any error of run() is a bug
        res = k.run(b);
    } catch (const std::exception& e) {
        fail(c, k, std::string("run() threw: ") + e.what());
    }
    check(c, k, bufs, res);
    return 0;
}
