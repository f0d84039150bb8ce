#include "schedule.hpp"

#include <algorithm>
#include <cstdlib>

namespace lossjit::jit {
namespace {

// Longest rows (bytes of input a row) of a kernel with passes after the first to take the max ahead
constexpr std::size_t kMaxAheadRowBytes = 4096;
// Pipelined rows from this K on (Plan::pipelined): past the fp32 rows of the max ahead
constexpr std::size_t kPipelineMinK = kMaxAheadRowBytes / 4 + 1;
// A logsumexp's argument costing at least this many vector operations an element (element_cost)
// is kept in the scratch row between its max loop and its exp loop: one transcendental function.
constexpr int kKeptArgumentMinCost = 20;
// Shortest rows (bytes of output a row) to be stored with streaming stores (Plan::stream_min_bytes)
constexpr std::size_t kStreamMinRowBytes = 4096;

bool is_floating(DType d) { return d == DType::f32 || d == DType::f64 || d == DType::bf16; }

// Bytes read per element of the row (at least 2): what the blocks and prefetch distances scale by.
std::size_t input_bytes(const std::vector<Slot>& slots) {
    std::size_t b = 0;
    for (const Slot& s : slots)
        if (!s.output && s.vector) b += size_of(s.dtype);
    return std::max<std::size_t>(b, 2);
}

// Vector operations per element of vector node i's value, roughly, as codegen emits it (its own
// polynomials for the transcendental functions): what keeping a value in the scratch row
// (Plan::kept_node) is weighed against.
int element_cost(const Plan& p, int i) {
    std::vector<char> seen(static_cast<std::size_t>(p.g.size()), 0);
    auto cost = [&](auto& self, int j) -> int {
        if (j < 0 || seen[static_cast<std::size_t>(j)] || !p.vector_node[static_cast<std::size_t>(j)]) return 0;
        seen[static_cast<std::size_t>(j)] = 1;
        const Node& n = p.g[j];
        int own = 1;
        switch (n.op) {
        case Op::exp: case Op::log: case Op::log1p: case Op::expm1: case Op::tanh: case Op::sigmoid: case Op::softplus: own = 20; break;
        case Op::div: case Op::sqrt: case Op::pow: own = 8; break;
        case Op::input: own = 0; break;
        default: break;
        }
        return own + self(self, n.a) + self(self, n.b);
    };
    return cost(cost, i);
}

// Plan::kept_node for the logsumexp argument arg: its costliest part (element_cost of at least
// kKeptArgumentMinCost) that the last pass reads too, not through the cached softmax (soft-
// capping's gradient reads tanh(u / cap)), else arg itself.
int costly_part_read_later(const Plan& p, int arg) {
    const std::size_t q = p.passes.size() - 1;
    std::vector<char> read(static_cast<std::size_t>(p.g.size()), 0), part(static_cast<std::size_t>(p.g.size()), 0);
    auto mark = [&](auto& self, std::vector<char>& set, int i, bool through_cache) -> void {
        if (i < 0 || set[static_cast<std::size_t>(i)] || !p.vector_node[static_cast<std::size_t>(i)]) return;
        if (!through_cache && p.cached_softmax(i)) return;
        set[static_cast<std::size_t>(i)] = 1;
        self(self, set, p.g[i].a, through_cache);
        self(self, set, p.g[i].b, through_cache);
    };
    if (q > 0) {
        for (int w : p.passes[q].writes) mark(mark, read, p.g.outputs()[static_cast<std::size_t>(w)].root, false);
        for (int r : p.passes[q].reductions) mark(mark, read, p.g[r].a, false), mark(mark, read, p.g[r].b, false);
    }
    mark(mark, part, arg, true);
    int best = arg, best_cost = 0;
    for (int i = 0; i < p.g.size(); ++i) {
        if (!read[static_cast<std::size_t>(i)] || !part[static_cast<std::size_t>(i)]) continue;
        const int c = element_cost(p, i);
        if (c >= kKeptArgumentMinCost && c > best_cost) best = i, best_cost = c;
    }
    return best;
}

// An environment variable set to 0 turns a schedule choice off (for comparisons).
bool turned_off(const char* var) {
    const char* v = std::getenv(var);
    return v && std::string(v) == "0";
}

// Whether the value of node i at the elements of row r + 1 can be had while row r is emitted:
// it reads its row's vector inputs and constants only (a label or a per-row scalar would be
// row r's). Operands precede their nodes, so one sweep up to i decides every node once.
bool reads_row_elements_only(const Plan& p, int i) {
    std::vector<char> ok(static_cast<std::size_t>(i) + 1, 0);
    for (int j = 0; j <= i; ++j) {
        const Node& n = p.g[j];
        const bool leaf_ok = n.op == Op::constant || n.op == Op::row_length;
        const bool own = p.vector_node[static_cast<std::size_t>(j)] && n.op != Op::onehot;
        ok[static_cast<std::size_t>(j)] = leaf_ok || (own && (n.a < 0 || ok[static_cast<std::size_t>(n.a)]) && (n.b < 0 || ok[static_cast<std::size_t>(n.b)]));
    }
    return ok[static_cast<std::size_t>(i)];
}

// Plan::batched_tail with a gradient pass: two passes, the first of reductions alone, the second
// of writes alone, which read the first's logsumexps only through the cached softmax: kept exp
// * exp(block max - max) / sum (Em::cached_softmax_factor; kept exp / sum where the row is one
// block, Em::whole_row_softmax), exp(x_y - max) / sum at a gather, and softmax - 1 at the label
// from the sums too (label_minus_one), all known before the log1p. Anything else there
// (log_softmax, a softmax recomputed, the logsumexp itself, as z-loss's gradient reads it), or
// in a gather taken before the gradient pass, wants the row's log1p before its pass.
bool gradient_pass_reads_no_log1p(const Plan& p) {
    if (p.passes.size() != 2 || !p.passes[0].writes.empty() || !p.passes[1].reductions.empty() || p.cache_lse < 0) return false;
    std::vector<char> seen(static_cast<std::size_t>(p.g.size()), 0);
    auto reads_lse = [&](auto& self, int i) -> bool {
        if (i < 0 || seen[static_cast<std::size_t>(i)]) return false;
        seen[static_cast<std::size_t>(i)] = 1;
        if (p.cached_softmax(i)) return false;
        const Node& n = p.g[i];
        if (n.op == Op::logsumexp || p.lse_of[static_cast<std::size_t>(i)] >= 0) return true;
        return self(self, n.a) || self(self, n.b);
    };
    for (int w : p.passes[1].writes)
        if (reads_lse(reads_lse, p.g.outputs()[static_cast<std::size_t>(w)].root)) return false;
    for (int i = 0; i < p.g.size(); ++i)  // the gathers taken before the gradient pass
        if (p.g[i].op == Op::at && p.depth[static_cast<std::size_t>(i)] == 1 && reads_lse(reads_lse, i)) return false;
    return true;
}

DType override_or(const CompileOptions& o, std::string_view name, DType fallback) {
    for (auto& [n, d] : o.dtypes)
        if (n == name) return d;
    return fallback;
}

}  // namespace

Plan make_plan(const Graph& in, const CompileOptions& o, const Target& t, RowLengths lengths) {
    Plan p;
    if (in.outputs().empty()) throw error("compile: the graph has no outputs");
    if (o.dtype != DType::f32 && o.dtype != DType::f64 && o.dtype != DType::bf16)
        throw error("compile: dtype must be f32, f64 or bf16, not " + std::string(to_string(o.dtype)));
    if (o.label_dtype != DType::i32 && o.label_dtype != DType::i64)
        throw error("compile: label_dtype must be i32 or i64");
    if (o.row_length > 0x7fffffffu) throw error("compile: row_length " + std::to_string(o.row_length) + " is too large");
    const Graph c = compact(in);

    // Rebuild with params as constants.
    std::vector<int> map(static_cast<std::size_t>(c.size()), -1);
    std::vector<bool> used_param(o.params.size(), false);
    for (int i = 0; i < c.size(); ++i) {
        Node n = c[i];
        if (n.op == Op::wildcard) throw error("compile: the graph contains a pattern wildcard");
        if (n.op == Op::input && n.kind == InputKind::param) {
            bool found = false;
            for (std::size_t j = 0; j < o.params.size(); ++j)
                if (o.params[j].first == n.name.view()) {
                    map[static_cast<std::size_t>(i)] = p.g.constant(o.params[j].second);
                    used_param[j] = found = true;
                }
            if (!found) throw error("compile: no value given for param '" + std::string(n.name.view()) + "'");
            continue;
        }
        if (n.a >= 0) n.a = map[static_cast<std::size_t>(n.a)];
        if (n.b >= 0) n.b = map[static_cast<std::size_t>(n.b)];
        map[static_cast<std::size_t>(i)] = p.g.add(n);
    }
    for (std::size_t j = 0; j < o.params.size(); ++j)
        if (!used_param[j]) throw error("compile: the graph has no param named '" + o.params[j].first + "'");
    for (const Output& out : c.outputs()) p.g.add_output(out.name.view(), map[static_cast<std::size_t>(out.root)]);
    // A class index is a label input, which the run checks against [0, K) before the kernel
    // reads or writes at it (the DSL's label<>; a Graph built by hand could give any scalar).
    for (int i = 0; i < p.g.size(); ++i) {
        const Node& n = p.g[i];
        const int y = n.op == Op::onehot ? n.a : n.op == Op::at ? n.b : -1;
        if (y >= 0 && !(p.g[y].op == Op::input && p.g[y].kind == InputKind::label))
            throw error("compile: " + std::string(info(n.op).name) + " needs a label input as its class index, not " + node_text(p.g, y));
    }

    // softmax / log_softmax need logsumexp of their argument: add it (shared if present).
    const int n0 = p.g.size();
    p.lse_of.assign(static_cast<std::size_t>(n0), -1);
    for (int i = 0; i < n0; ++i) {
        const Node n = p.g[i];
        if (n.op == Op::softmax || n.op == Op::log_softmax) p.lse_of[static_cast<std::size_t>(i)] = p.g.apply(Op::logsumexp, n.a);
    }
    const int N = p.g.size();
    p.lse_of.resize(static_cast<std::size_t>(N), -1);

    // Depths. Nodes appended above depend only on earlier nodes, but softmax nodes refer to
    // their (possibly later) logsumexp: compute those first by recursion.
    p.depth.assign(static_cast<std::size_t>(N), -1);
    p.vector_node.assign(static_cast<std::size_t>(N), false);
    for (int i = 0; i < N; ++i) p.vector_node[static_cast<std::size_t>(i)] = p.g[i].shape == Shape::vector;
    auto vec = [&](int i) { return i >= 0 && p.vector_node[static_cast<std::size_t>(i)]; };
    std::vector<int> pass_of(static_cast<std::size_t>(N), -1);
    auto depth_of = [&](auto& self, int i) -> int {
        int& d = p.depth[static_cast<std::size_t>(i)];
        if (d >= 0) return d;
        const Node& n = p.g[i];
        const int da = n.a >= 0 ? self(self, n.a) : 0;
        const int db = n.b >= 0 ? self(self, n.b) : 0;
        switch (info(n.op).cls) {
        case OpClass::leaf: d = 0; break;
        case OpClass::elementwise: d = std::max(da, db); break;
        case OpClass::vector_map:
            d = n.op == Op::onehot ? da : self(self, p.lse_of[static_cast<std::size_t>(i)]);
            break;
        case OpClass::reduction:
            if (n.op == Op::at || (!vec(n.a) && !vec(n.b))) d = std::max(da, db);  // gather or fold
            else {
                pass_of[static_cast<std::size_t>(i)] = std::max(da, db);
                d = pass_of[static_cast<std::size_t>(i)] + 1;
            }
            break;
        }
        return d;
    };
    for (int i = 0; i < N; ++i) depth_of(depth_of, i);

    // Only reductions reachable from outputs (the appended logsumexps are, through softmax).
    std::vector<bool> live(static_cast<std::size_t>(N), false);
    auto mark = [&](auto& self, int i) -> void {
        if (i < 0 || live[static_cast<std::size_t>(i)]) return;
        live[static_cast<std::size_t>(i)] = true;
        self(self, p.g[i].a);
        self(self, p.g[i].b);
        self(self, p.lse_of[static_cast<std::size_t>(i)]);
    };
    for (const Output& out : p.g.outputs()) mark(mark, out.root);

    int passes = 0;
    for (int i = 0; i < N; ++i)
        if (live[static_cast<std::size_t>(i)] && pass_of[static_cast<std::size_t>(i)] >= 0)
            passes = std::max(passes, pass_of[static_cast<std::size_t>(i)] + 1);
    bool any_vector_output = false;
    for (const Output& out : p.g.outputs())
        if (vec(out.root)) {
            any_vector_output = true;
            passes = std::max(passes, p.depth[static_cast<std::size_t>(out.root)] + 1);
        }
    p.passes.resize(static_cast<std::size_t>(passes));
    for (int i = 0; i < N; ++i)
        if (live[static_cast<std::size_t>(i)] && pass_of[static_cast<std::size_t>(i)] >= 0)
            p.passes[static_cast<std::size_t>(pass_of[static_cast<std::size_t>(i)])].reductions.push_back(i);
    if (any_vector_output)
        for (std::size_t j = 0; j < p.g.outputs().size(); ++j)
            if (vec(p.g.outputs()[j].root)) p.passes.back().writes.push_back(static_cast<int>(j));

    // Slots: inputs (in graph order), then outputs.
    p.compute = o.dtype == DType::f64 ? DType::f64 : DType::f32;
    for (int i = 0; i < N; ++i) {
        const Node& n = p.g[i];
        if (n.op != Op::input || !live[static_cast<std::size_t>(i)]) continue;
        Slot s;
        s.name = std::string(n.name.view());
        s.kind = n.kind;
        s.vector = n.shape == Shape::vector;
        s.dtype = n.kind == InputKind::label ? override_or(o, s.name, o.label_dtype)
                  : s.vector                 ? override_or(o, s.name, o.dtype)
                                             : override_or(o, s.name, p.compute);
        if (n.kind == InputKind::label ? is_floating(s.dtype) : !is_floating(s.dtype))
            throw error("compile: input '" + s.name + "' cannot have dtype " + std::string(to_string(s.dtype)));
        p.slots.push_back(s);
        p.slot_node.push_back(i);
    }
    for (const Output& out : p.g.outputs()) {
        Slot s;
        s.name = std::string(out.name.view());
        for (const Slot& x : p.slots)
            if (x.name == s.name) throw error("compile: output '" + s.name + "' has the name of an input or another output");
        s.output = true;
        s.vector = vec(out.root);
        s.kind = s.vector ? InputKind::logits : InputKind::scalar;
        s.dtype = override_or(o, s.name, s.vector ? o.dtype : p.compute);
        if (!is_floating(s.dtype)) throw error("compile: output '" + s.name + "' cannot have dtype " + std::string(to_string(s.dtype)));
        p.slots.push_back(s);
        p.slot_node.push_back(out.root);
    }
    for (auto& [n, d] : o.dtypes) {
        bool found = false;
        for (const Slot& s : p.slots) found = found || s.name == n;
        if (!found) throw error("compile: dtype given for '" + n + "', which the graph does not have");
    }

    p.K = o.row_length;
    if (!p.K) p.lengths = lengths;
    p.label_dtype = o.label_dtype;
    p.opt_level = std::clamp(o.opt_level, 0, 3);
    const int elem = p.compute == DType::f64 ? 8 : 4;
    p.vector_width = std::max(2, t.vector_bits / (8 * elem));
    p.masked_loop = false;  // measured 2.5x slower on Zen 5 (masked stores): off
    const std::size_t in_bytes = input_bytes(p.slots);
    // Two-pass blocks in L2: the max loop streams a block from memory, the exp loop reads it again
    // from L2 while prefetching the next. Measured on Zen 5 at K = 32000, fwd: 32-34 GB/s against
    // 30 with blocks of half L1, and 21 for the online logsumexp (its rescaling doubles the exps
    // where the max moves, and its running max is a dependency chain).
    p.block = o.block > 0 ? o.block : t.l2_bytes / 8 / in_bytes;
    // The unroll sets the loops' step (VW x unroll), of which the block and the pieces of the
    // lane sums are multiples (bf16 pairs, below, unroll by 2).
    auto set_unroll = [&](int unroll) {
        p.unroll = unroll;
        const std::size_t step = static_cast<std::size_t>(p.vector_width * p.unroll);
        p.block = std::max(step, p.block / step * step);
        p.sum_block = step * Plan::sum_terms;
    };
    // One vector per iteration: unroll 2 ran at the same speed (ce_probe, fwd and fwd+bwd, fp32
    // and bf16, specialized and generic K, Zen 5: out-of-order execution overlaps the iterations)
    // and cost more instructions in compile() (callgrind, AVX-512 code: K = 32000 159 M against
    // 134 M, K = 1000 120 M against 103 M).
    set_unroll(o.unroll > 0 ? std::min(o.unroll, 8) : 1);
    // 16 KB ahead: a 4 KB row (K = 1000) prefetched only one row ahead leaves the next row's
    // max loop waiting on memory (21 GB/s fwd; 28-29 with 12-24 KB, measured).
    p.prefetch_min = 16 * 1024 / in_bytes;
    switch (o.lse) {
    case CompileOptions::Lse::online: p.lse = LseMode::online; break;
    case CompileOptions::Lse::two_pass: p.lse = LseMode::two_pass; break;
    case CompileOptions::Lse::automatic:
        // Two passes per block (max, then sum), for the generic kernel too: there it ran fwd
        // 22.6 / 31.5 GB/s at K = 1000 / 32000 against 18 / 21 online, fwd+bwd 14 / 12.6 against
        // 10.4 / 10.9, for more instructions in compile() (callgrind, AVX-512 code: 159 M
        // against 115 M; cold 25.5 ms against 20.5).
        p.lse = LseMode::two_pass;
        break;
    }

    // Cached softmax: a logsumexp L reduced in the pass before the last, and a softmax over the
    // same argument read by the last pass (its writes or reductions, not only through a gather):
    // the pass of L stores e = exp(x - block max) and each block's max in a scratch row, and the
    // last pass reads softmax = e * exp(block max - max) / sum, one exp per element in all.
    // Needs the two-pass logsumexp (a fixed reference per block; the online one moves it), so
    // automatic picks two-pass for such kernels whatever K; a last pass with a logsumexp of its
    // own (softmax of softmax) keeps recomputing.
    if (o.lse != CompileOptions::Lse::online && p.passes.size() >= 2) {
        const std::size_t q = p.passes.size() - 1;
        bool last_lse = false;
        for (int r : p.passes[q].reductions) last_lse = last_lse || p.g[r].op == Op::logsumexp;
        std::vector<bool> read(static_cast<std::size_t>(N), false);  // read per element by the last pass
        auto reach = [&](auto& self, int i) -> void {
            if (i < 0 || read[static_cast<std::size_t>(i)] || !vec(i)) return;
            read[static_cast<std::size_t>(i)] = true;
            self(self, p.g[i].a);
            self(self, p.g[i].b);
        };
        for (int w : p.passes[q].writes) reach(reach, p.g.outputs()[static_cast<std::size_t>(w)].root);
        for (int r : p.passes[q].reductions) {
            reach(reach, p.g[r].a);
            reach(reach, p.g[r].b);
        }
        for (int i = 0; i < N && !last_lse; ++i) {
            const int L = p.lse_of[static_cast<std::size_t>(i)];
            if (p.g[i].op != Op::softmax || !read[static_cast<std::size_t>(i)] || L < 0) continue;
            if (pass_of[static_cast<std::size_t>(L)] != static_cast<int>(q) - 1) continue;
            p.cache_lse = L;
            p.lse = LseMode::two_pass;
            break;
        }
    }

    // Short rows of a known length: lanes across rows (vectors of VW rows, element j of each),
    // instead of one row at a time in vectors mostly masked off and a horizontal reduction per
    // reduction and row. Generic K gets a kernel of its own for rows of up to rows_max_k
    // elements (make_plans): fwd+bwd, one thread (ce_probe, alternating): 65536x2 0.24 -> 1.44
    // GB/s, 65536x10 1.37 -> 5.1 (specialized: 5.75), 65536x16 2.3 -> 6.4, 32768x32 3.9 -> 7.9,
    // bf16 65536x10 1.19 -> 4.2; fwd 65536x10 2.1 -> 7.1. LOSSJIT_ACROSS_ROWS=0 turns it off
    // (for comparisons).
    static const bool across = !turned_off("LOSSJIT_ACROSS_ROWS");
    p.rows = across && p.longest() != 0 && p.longest() <= Plan::rows_max_k && !p.passes.empty();
    p.group_budget = (t.avx512 ? 32 : 16) / 2;
    // Pipelined rows: one row's gradient pass is stores (to memory, past the L3 for large
    // batches) and a multiply, the next row's exp loop arithmetic; run apart, memory waits for
    // the arithmetic and the arithmetic for memory. fwd+bwd, one thread (ce_probe, interleaved,
    // medians): 64x256000 13.1 -> 17.5 GB/s, 512x32000 16.5 -> 19.5, 2048x4096 14.8 -> 17.4,
    // 256x4096 (in cache) 22.5 -> 25.5. Where it lost, it is off: bf16 (its exp loop is the
    // busier for the widening): 2048x4096 18.2 -> 16.8; rows the max ahead takes run faster with
    // it (Zen 4, alternating: 16384x512 15.0 against 10.1, 8192x768 14.8 against 10.5, 1024x1024
    // 18.2 against 16.9). Rows of a multiple of the vector width from 4096 on until session 18,
    // where the pending row's skew (codegen_row.cpp) took away what lost at 2048 (K = 4100, not
    // a multiple, lost then too, 15.2 -> 12.8; with the skew it wins, below): from past the max
    // ahead's rows, 4096x2000 9.2 -> 12.0 GB/s, 16384x1536 8.8 -> 10.7, 8192x1040 7.5 -> 9.8,
    // 2048x3072 10.4 -> 13.0, 512x2048 (in cache) 15.9 -> 18.0. Rows of part of a vector at their
    // end (their vectors mostly across cache lines, and no streaming stores) where they are one
    // block: 4096x2001 7.4 -> 9.2, 2048x4100 7.4 -> 8.3, 256x4100 (in cache) 13.7 -> 16.7,
    // 16384x1030 7.1 -> 7.7, 512x32005 1.0x; of several blocks they lost (256x50257 7.65 ->
    // 7.19) until session 19 aligned the pending row's stores, which also lets every such row
    // stream (Plan::stream_min_bytes): 512x32001 8.0 -> 14.6, 256x50257 8.9 -> 14.1, 64x256007
    // 9.4 -> 13.2, 4096x2001 10.1 -> 11.4. Since then also any write of the cached softmax and
    // the row's scalars (pending_row_scalars): label smoothing 512x32000 10.0 -> 11.2, 4096x2000
    // 9.2 -> 11.0, generic 512x32000 10.6 -> 12.7; z-loss 256x50257 8.4 -> 10.8 (alternating,
    // medians). LOSSJIT_PIPELINE=0 turns it off (for comparisons).
    static const bool pipeline = !turned_off("LOSSJIT_PIPELINE");
    // (and the gradient in the compute type: with no row pending, the exp loop writes its
    // pending row's vectors into the scratch row itself, just before its own exps)
    bool all_compute = true;
    for (const Slot& sl : p.slots) all_compute = all_compute && (!sl.vector || sl.dtype == p.compute);
    if (pipeline && !p.rows && p.shortest() >= kPipelineMinK && all_compute &&
        p.cache_lse >= 0 && p.passes.size() == 2 && p.passes[1].reductions.empty() && p.passes[1].writes.size() == 1) {
        std::vector<int> scalars;
        p.pipelined = p.labels_after_loop(p.passes[1], true).size() <= 1 &&
                      pending_row_scalars(p, p.g.outputs()[static_cast<std::size_t>(p.passes[1].writes[0])].root, scalars);
    }
    // Kept node (Plan::kept_node): a two-pass logsumexp evaluates its argument in the max loop
    // and again in the exp loop, and a gradient may read part of it once more; where that is a
    // transcendental function (some 20 vector operations, and a division: soft-capping's
    // 30 tanh(u / 30) is two), the loops after the max loop reading it back from the scratch row
    // (L1 or L2) cost less. Soft-capped cross-entropy (ce_probe --loss softcap, alternating,
    // medians): fwd+bwd 512x32000 1.67 -> 3.76 GB/s, 8192x1000 1.49 -> 3.33, bf16 512x32000
    // 1.48 -> 3.55; fwd 512x32000 2.48 -> 5.16, 8192x1000 2.35 -> 5.01 (the max ahead lost: its
    // exp loop computed two arguments, this row's and the next's). Keeping the whole argument in
    // the kept exps' place, the gradient computing the tanh again, fwd+bwd ran 2.35 and 2.30. Not
    // with the max ahead (the next row's argument, in the exp loop of this row, would need a
    // second row), pipelined rows (the scratch row's part for the pending row is the next row's)
    // or bf16 pairs (the max loop's copies, four, leave a different tail in order than the exp
    // loop's). LOSSJIT_KEPT_NODE=0 turns it off (for comparisons).
    static const bool keep_node = !turned_off("LOSSJIT_KEPT_NODE");
    if (keep_node && !p.rows && !p.pipelined && p.lse == LseMode::two_pass && !p.passes.empty()) {
        int candidate = p.cache_lse;
        for (std::size_t q = 0; candidate < 0 && q < p.passes.size(); ++q)
            for (int r : p.passes[q].reductions)
                if (candidate < 0 && p.g[r].op == Op::logsumexp) candidate = r;
        if (candidate >= 0 && element_cost(p, p.g[candidate].a) >= kKeptArgumentMinCost) {
            p.kept_lse = candidate;
            p.kept_node = costly_part_read_later(p, p.g[candidate].a);
        }
    }
    // Max ahead: the next row's max loop streams its row from memory (or L2) with a load and a
    // max a vector, under no arithmetic; taken in this row's exp loop, which the FP units bound,
    // it costs that loop one max a vector. fwd, one thread (ce_probe, interleaved, best of 5):
    // 2048x4096 32.8 -> 41.7 GB/s, 512x32000 34.9 -> 37.5, 8192x1000 33.2 -> 34.7, 512x2000
    // 36.6 -> 38.3, 16384x100 10.7 -> 12.5. With a gradient pass after the exp loop, only for
    // rows of up to kMaxAheadRowBytes and without software prefetches (best of 9): 8192x1000
    // 16.0 -> 18.8, 4096x1024 18.6 -> 21.3, 8192x768 18.2 -> 21.0, 32768x100 7.4 -> 9.0; still
    // prefetching, 8192x1000 lost 6%; on longer rows it lost (2000 fp32 2%, 4000 bf16 15%,
    // 32000 bf16 30%). Generic K gets a kernel of its own for the rows it applies to
    // (make_plans), whose max came from the block's max loop: fwd+bwd 131072x33 2.9 -> 4.6
    // GB/s, 32768x100 4.7 -> 6.3, 8192x500 7.0 -> 12.3, 8192x1000 6.6 -> 11.2, bf16 8192x1000
    // 10.5 -> 14.2; fwd 131072x33 4.2 -> 5.6, 8192x1000 15.3 -> 18.8, 512x32000 18.1 -> 22.0
    // (best of 2 alternating). LOSSJIT_MAX_AHEAD=0 turns it off (for comparisons).
    static const bool max_ahead = !turned_off("LOSSJIT_MAX_AHEAD");
    const bool one_pass = p.passes.size() == 1;
    if (max_ahead && !p.rows && !p.pipelined && p.kept_node < 0 && p.row_is_one_block() && p.lse == LseMode::two_pass && !p.passes.empty() &&
        (one_pass || p.longest() * in_bytes <= kMaxAheadRowBytes) && p.pass_groups(p.passes[0]).size() == 1) {
        bool any = false, row_elements = true;
        for (int r : p.passes[0].reductions)
            if (p.g[r].op == Op::logsumexp) {
                any = true;
                row_elements = row_elements && reads_row_elements_only(p, p.g[r].a);
            }
        p.max_ahead = any && row_elements;
        p.prefetch = !p.max_ahead || one_pass;
    }
    // The row's tail per batch of rows (Plan::batched_tail): without the per-row log1p, fwd
    // ran 15% faster at 8192x1000 and 40% at 16384x100 (ce_probe, interleaved), more than its
    // operations' share: the chain held the next row's exp loop back. With a gradient pass
    // (gradient_pass_reads_no_log1p), the chain sat between the passes, where the gradient
    // needs only the sum: fwd+bwd 131072x33 3.5 -> 5.0 GB/s, x50 4.7 -> 6.5, x64 6.9 -> 9.0,
    // x100 7.7 -> 9.0, 512x1000 (in cache) 1.06x, 8192x1000 (memory) 1.00x, bf16 24824x33
    // 1.33x; generic K 24824x33 2.31 -> 3.24, 8192x100 5.4 -> 7.1, 512x1000 1.09x; for more
    // instructions in compile() (callgrind: the K = 100 loss + gradient kernel 71.3 -> 84.5 M,
    // generic K 111.8 -> 126.2 M). LOSSJIT_BATCHED_TAIL=0 turns it off (for comparisons).
    static const bool batched_tail = !turned_off("LOSSJIT_BATCHED_TAIL");
    const bool loss_alone = p.passes.size() == 1 && p.passes[0].writes.empty();
    if (batched_tail && !p.rows && !p.pipelined && (loss_alone || gradient_pass_reads_no_log1p(p))) {
        for (int r : p.passes[0].reductions) p.batched_tail = p.batched_tail || p.g[r].op == Op::logsumexp;
    }
    // bf16 pairs (Plan::bf16_pairs): the widening of bf16 to fp32 was a vpmovzxwd (a shuffle)
    // and a shift a vector, twice in the exp loop with the max ahead, and the narrowing of the
    // gradient a vpmovdw, on the FP pipes the loops' arithmetic needs (fwd 4x32000 in cache 17
    // GB/s against fp32's 26). LOSSJIT_BF16_PAIRS=0 turns it off (for comparisons).
    static const bool bf16_pairs = !turned_off("LOSSJIT_BF16_PAIRS");
    if (bf16_pairs && t.avx512 && p.vector_width == 16 && p.compute == DType::f32 && !p.rows && o.unroll == 0 && !p.pipelined && p.kept_node < 0 &&
        !p.passes.empty()) {
        bool ok = true;
        for (const Slot& s : p.slots) ok = ok && (!s.vector || s.dtype == DType::bf16);
        for (const Pass& ps : p.passes)
            for (int r : ps.reductions) {
                const Node& n = p.g[r];
                ok = ok && reads_row_elements_only(p, n.a) && (n.b < 0 || reads_row_elements_only(p, n.b));
            }
        if (ok) {
            p.bf16_pairs = true;
            set_unroll(2);
        }
    }
    // A batch whose row arrays (read and written) outgrow the L3 leaves its gradient in memory,
    // not in the cache, for its reader: stored with streaming stores it skips the read of each
    // line a store first makes (RFO), a third of the traffic. Measured fwd+bwd 512x32000: f32
    // 13.7-14.4 -> 16.7-17.2 GB/s (Zen 5, one thread), bf16 17.4 -> 19.0; and with its reader,
    // the kernel then a read of the gradient, from memory (the bf16 one 4.69 -> 4.43 ms; f32
    // 256x16384, its gradient half the L3, the reader as fast after either store). Smaller
    // batches stay in cache for their reader. For the cached softmax's last pass writing one
    // vector output, row by row: pipelined, whose stores are aligned in any row
    // (Em::pending_skewed_start); else rows known to be a multiple of the vector width long (K,
    // or generic K's kernel for such rows), so that a row starting on a vector boundary (checked
    // per row) has all its full vectors aligned (a peel to the boundary in that pass for any K
    // cost 12-15 M more instructions in compile(): JIT latency).
    // Rows of at least kStreamMinRowBytes of output: shorter ones lost to plain stores (with
    // the label's vector stored plainly: fwd+bwd 16384x512 13.9 against 17.9 GB/s, 12288x768
    // 16.1 against 18.7; 8192x1024 16.9 against 16.4, best of 7).
    if (p.cache_lse >= 0 && !p.rows && p.passes.back().writes.size() == 1 && (p.pipelined || p.lengths_multiple_of(static_cast<std::size_t>(p.vector_width))) &&
        p.shortest() * size_of(p.slots[p.output_slot(p.passes.back().writes[0])].dtype) >= kStreamMinRowBytes)
        p.stream_min_bytes = t.l3_bytes;  // the caller compares the batch's bytes (row_bytes)
    return p;
}

bool pending_row_scalars(const Plan& p, int root, std::vector<int>& scalars) {
    std::vector<char> seen(static_cast<std::size_t>(p.g.size()), 0);
    bool ok = true;
    auto walk = [&](auto& self, int i) -> void {
        if (i < 0 || !ok || seen[static_cast<std::size_t>(i)]) return;
        seen[static_cast<std::size_t>(i)] = 1;
        const Node& n = p.g[i];
        if (!p.vector_node[static_cast<std::size_t>(i)]) {
            // (a logsumexp operand is read as its two parts, hi and lo, of the row being emitted)
            if (n.op == Op::logsumexp) ok = false;
            else if (n.op != Op::constant && n.op != Op::row_length) scalars.push_back(i);
            return;
        }
        if (p.cached_softmax(i) || n.op == Op::onehot) return;
        if (info(n.op).cls != OpClass::elementwise) {
            ok = false;
            return;
        }
        self(self, n.a);
        self(self, n.b);
    };
    walk(walk, root);
    return ok;
}

// Generic K's kernels each compile at the first run with rows they take (kernel.cpp): a batch
// waits for its own kernel's compile only. Cold, compile() and a first run of the cross-entropy
// loss + gradient kernel (jit_latency 9, medians) took 21 ms for rows of 10, 19 for 1000 and 25
// for 32000, where compiling the three kernels of then side by side took 33 ms (60 ms of CPU).
std::vector<Plan> make_plans(const Graph& g, const CompileOptions& o, const Target& t) {
    Plan any = make_plan(g, o, t);
    if (any.K != 0) return {std::move(any)};
    std::vector<Plan> plans;
    if (Plan p = make_plan(g, o, t, {1, Plan::rows_max_k}); p.rows) plans.push_back(std::move(p));
    const std::size_t ahead_k = any.passes.size() == 1 ? any.block : kMaxAheadRowBytes / input_bytes(any.slots);
    if (Plan p = make_plan(g, o, t, {Plan::rows_max_k + 1, ahead_k}); p.max_ahead && ahead_k > Plan::rows_max_k) plans.push_back(std::move(p));
    // Long rows of a multiple of the vector width, pipelined and with streaming stores (both want
    // that much known), as the specialized kernel runs them: fwd+bwd, one thread (ce_probe
    // --generic, alternating, medians) 512x32000 7.7 -> 12.6 GB/s, 64x256000 7.8 -> 10.3,
    // 2048x4096 8.0 -> 11.0, 128x128256 7.9 -> 12.2; bf16 (streaming stores only) 512x32000
    // 11.1 -> 14.1, 2048x4096 11.3 -> 12.7.
    const RowLengths long_rows{std::max(kPipelineMinK, ahead_k + 1), 0, static_cast<std::size_t>(any.vector_width)};
    if (Plan p = make_plan(g, o, t, long_rows); p.pipelined || p.stream_min_bytes) plans.push_back(std::move(p));
    // The other long rows, pipelined (a part of a vector at their end): of one block, fwd+bwd
    // (alternating, medians) 4096x2001 7.5 -> 8.5 GB/s, 16384x1030 6.6 -> 7.8; longer, with the
    // stores aligned (codegen_row.cpp), 256x50257 8.9 -> 14.4. The rows of one block have a
    // kernel of their own: in the one for any long row, 16384x1030 ran 0.93x.
    for (const RowLengths other : {RowLengths{long_rows.min, any.block}, RowLengths{std::max(long_rows.min, any.block + 1), 0}})
        if (other.max == 0 || other.min <= other.max)
            if (Plan p = make_plan(g, o, t, other); p.pipelined) plans.push_back(std::move(p));
    plans.push_back(std::move(any));
    return plans;
}

std::vector<Pass> Plan::pass_groups(const Pass& ps) const {
    // vector accumulators of a reduction in its loops: a two-pass logsumexp's max loop has at
    // least 4 (codegen_row_pass.cpp), an online one a max and a sum per unrolled copy
    auto cost = [&](int r) {
        if (g[r].op != Op::logsumexp) return unroll;
        return lse == LseMode::two_pass ? std::max(unroll, 4) : 2 * unroll;
    };
    std::vector<Pass> out(1);
    int used = 0;
    for (int r : ps.reductions) {
        if (!out.back().reductions.empty() && used + cost(r) > group_budget) {
            out.emplace_back();
            used = 0;
        }
        out.back().reductions.push_back(r);
        used += cost(r);
    }
    out.back().writes = ps.writes;
    return out;
}

std::vector<int> Plan::labels_after_loop(const Pass& ps, bool last) const {
    std::vector<int> labels;
    if (!last || !ps.reductions.empty()) return labels;
    std::vector<bool> seen(static_cast<std::size_t>(g.size()), false);
    auto walk = [&](auto& self, int i) -> void {
        if (i < 0 || !vector_node[static_cast<std::size_t>(i)] || seen[static_cast<std::size_t>(i)]) return;
        seen[static_cast<std::size_t>(i)] = true;
        const Node& n = g[i];
        if (n.op == Op::onehot) {
            if (std::find(labels.begin(), labels.end(), n.a) == labels.end()) labels.push_back(n.a);
            return;
        }
        self(self, n.a);
        self(self, n.b);
    };
    for (int w : ps.writes) walk(walk, g.outputs()[static_cast<std::size_t>(w)].root);
    return labels;
}

}  // namespace lossjit::jit
