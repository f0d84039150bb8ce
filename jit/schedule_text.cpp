// The schedule as text: nodes in infix, the graph a node a line, and a Plan as
// Kernel::schedule() prints it (see schedule.hpp).
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "schedule.hpp"

namespace lossjit::jit {
namespace {

std::string number(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    std::string s = buf;
    // shortest form that reads back the same
    for (int prec = 1; prec < 17; ++prec) {
        std::snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (std::strtod(buf, nullptr) == v) return buf;
    }
    return s;
}

}  // namespace

std::string node_text(const Graph& g, int i) {
    const Node& n = g[i];
    const OpInfo& d = info(n.op);
    switch (d.cls) {
    case OpClass::leaf:
        if (n.op == Op::constant) return number(n.value);
        if (n.op == Op::row_length) return "K";
        return std::string(n.name.view());
    default: break;
    }
    auto arg = [&](int j, int prec) {
        std::string s = node_text(g, j);
        const Node& m = g[j];
        const OpInfo& md = info(m.op);
        if (md.notation != Notation::call && md.prec < prec) s = "(" + s + ")";
        return s;
    };
    if (d.notation == Notation::prefix) return std::string(d.symbol) + arg(n.a, d.prec + 1);
    if (d.notation == Notation::infix)
        return arg(n.a, d.prec) + " " + std::string(d.symbol) + " " + arg(n.b, d.prec + 1);
    std::string s = std::string(d.name) + "(" + node_text(g, n.a);
    if (n.b >= 0) s += ", " + node_text(g, n.b);
    return s + ")";
}

std::string graph_text(const Graph& g) {
    std::ostringstream os;
    for (int i = 0; i < g.size(); ++i) {
        const Node& n = g[i];
        const OpInfo& d = info(n.op);
        os << "  %" << i << " = ";
        if (n.op == Op::input) os << "input " << to_string(n.kind) << " '" << n.name.view() << "'";
        else if (n.op == Op::constant) os << number(n.value);
        else if (n.op == Op::row_length) os << "K";
        else {
            os << d.name << "(%" << n.a;
            if (n.b >= 0) os << ", %" << n.b;
            os << ")";
        }
        os << (n.shape == Shape::vector ? "  : vector\n" : "  : scalar\n");
    }
    for (const Output& o : g.outputs()) os << "  output " << o.name.view() << " = %" << o.root << "\n";
    return os.str();
}

std::string to_string(const RowLengths& l) {
    if (l.any()) return "any length";
    std::string s = l.max ? std::to_string(std::max<std::size_t>(l.min, 1)) + " to " + std::to_string(l.max) + " elements"
                          : std::to_string(l.min) + " elements or more";
    return l.multiple == 1 ? s : s + ", a multiple of " + std::to_string(l.multiple);
}

std::string to_string(const Plan& p) {
    std::ostringstream os;
    const Graph& g = p.g;
    os << "row program: " << p.passes.size() << (p.passes.size() == 1 ? " pass" : " passes") << " over a row of K = "
       << (p.K ? std::to_string(p.K) : !p.lengths.any() ? "(generic, " + to_string(p.lengths) + ")" : std::string("(generic)")) << ", "
       << to_string(p.compute) << " math, ";
    if (p.rows) os << p.vector_width << " rows at once (lanes across rows: rows transposed in registers, lane-wise reductions)\n";
    else os << p.vector_width << " lanes x unroll " << p.unroll << (p.bf16_pairs ? " (bf16 pairs: a vector of the even elements and one of the odd)" : "") << "\n";
    os << "arguments:";
    for (const Slot& s : p.slots)
        os << " " << (s.output ? "out " : "") << s.name << ":" << (s.vector ? "row " : "") << to_string(s.dtype);
    os << "\n";
    bool labels = false;
    for (const Slot& s : p.slots) labels = labels || (!s.output && s.kind == InputKind::label);
    if (labels)
        os << "  a row whose label is ignore_index: skipped " << (p.max_ahead ? "before its passes (the previous row's takes its max)" : "before it is read")
           << " (outputs 0, not counted)\n";
    std::vector<bool> shown(static_cast<std::size_t>(g.size()), false);
    auto stage = [&](int d) {
        // scalar nodes known at this depth that are not leaves
        std::ostringstream ss;
        for (int i = 0; i < g.size(); ++i) {
            const Node& n = g[i];
            if (shown[static_cast<std::size_t>(i)] || p.vector_node[static_cast<std::size_t>(i)] || p.depth[static_cast<std::size_t>(i)] > d ||
                info(n.op).cls == OpClass::leaf)
                continue;
            if (is_reduction(n.op) && n.op != Op::at && (p.vector_node[static_cast<std::size_t>(n.a)] || (n.b >= 0 && p.vector_node[static_cast<std::size_t>(n.b)])))
                continue;  // accumulated in a pass
            bool used = false;  // skip scalars nobody reads
            for (int j = 0; j < g.size() && !used; ++j) used = g[j].a == i || g[j].b == i;
            for (const Output& o : g.outputs()) used = used || o.root == i;
            if (!used) continue;
            shown[static_cast<std::size_t>(i)] = true;
            ss << "    %" << i << " = " << node_text(g, i);
            if (n.op == Op::at) ss << "   (gather: one element, no pass)";
            ss << "\n";
        }
        if (!ss.str().empty()) os << "  scalars:\n" << ss.str();
    };
    for (std::size_t k = 0; k < p.passes.size(); ++k) {
        stage(static_cast<int>(k));
        const Pass& ps = p.passes[k];
        os << "  pass " << k << (k + 1 == p.passes.size() ? " (last)" : "") << ":\n";
        bool two = false, additive = false;
        for (int r : ps.reductions) {
            two = two || (g[r].op == Op::logsumexp && p.lse == LseMode::two_pass);
            additive = additive || g[r].op != Op::amax;
        }
        const bool cached = k + 1 == p.passes.size() && p.cache_lse >= 0;
        if (two && p.rows) {
            os << "    a max loop over the columns, then the main loop\n";
        } else if (two) {
            const bool whole = p.row_is_one_block();
            const bool ahead = k == 0 && p.max_ahead;
            os << "    "
               << (ahead ? "whole row in cache: its max taken by the previous row's main loop (a max loop where that row was skipped), then the main loop, which takes the next row's max"
                   : whole ? "whole row in cache: a max loop, then the main loop"
                         : "in blocks of " + std::to_string(p.block) + " elements: per block a max loop, then the main loop, merged by rescaling")
               << (!p.prefetch ? " (no prefetches: the hardware's follow its streams)"
                               : std::string(" (it prefetches the ") + (ahead ? "rows after the next" : whole ? "next rows" : "next block") + ", at least " +
                                     std::to_string(p.prefetch_min) + " elements ahead)");
            if (p.block_sums_in_pieces()) os << "; its sums in two levels: each lane's join the " << (whole ? "row's" : "block's") << " every " << p.sum_block << " elements";
            os << "\n";
        } else if (additive && !p.rows && p.row_sums_in_pieces()) {
            os << "    " << (cached ? "in the kept exps' blocks" : "one loop") << ", its sums in two levels: each lane's join the row's every "
               << p.sum_block << " elements\n";
        }
        if (const std::size_t n = p.pass_groups(ps).size(); n > 1 && !p.rows)
            os << "    its reductions in " << n << " groups, each with loops of its own (accumulators in at most " << p.group_budget
               << " vector registers)\n";
        for (int r : ps.reductions) {
            os << "    reduce %" << r << " = " << node_text(g, r);
            if (g[r].op == Op::logsumexp) os << (p.lse == LseMode::online ? "   [online: running max with rescaling]" : "   [max, then sum of exp(x - max)]");
            if (r == p.kept_lse) os << " [" << node_text(g, p.kept_node) << " kept in a scratch row by the max loop, for the loops after]";
            if (r == p.cache_lse) os << " [exp(x - max) kept in a scratch row]";
            os << "\n";
        }
        if (cached)
            os << "    softmax(" << node_text(g, g[p.cache_lse].a) << ") = "
               << (p.row_is_one_block() ? "kept exp / sum (softmax - 1 at a kept exp of 1: -(sum - 1) / sum)"
                                        : "kept exp * exp(block max - max) / sum")
               << "\n";
        for (int w : ps.writes) {
            os << "    write " << g.outputs()[static_cast<std::size_t>(w)].name.view() << " = "
               << node_text(g, g.outputs()[static_cast<std::size_t>(w)].root);
            if (p.write_prefetched(p.output_slot(w))) os << " (its rows two blocks ahead prefetched for writing: a row is part of a cache line or one)";
            os << "\n";
        }
        if (k + 1 == p.passes.size() && p.pipelined)
            os << "    (pipelined: this pass of a row runs inside the next row's exp loop, block by block, ahead of its index by a skew that keeps their addresses half a page apart and its stores aligned; the last row's after the rows)\n";
        for (int y : p.labels_after_loop(ps, k + 1 == p.passes.size()))
            os << "    (the loop takes onehot(" << node_text(g, y) << ") as 0; the element at " << node_text(g, y)
               << " is computed before it and stored after it)\n";
        if (cached && p.stream_min_bytes)
            os << "    (streaming stores " << (p.pipelined ? "of each row's aligned whole vectors" : "in rows on a vector boundary")
               << " when the batch reads and writes " << p.stream_min_bytes
               << " bytes of rows or more)\n";
        bool lse = false;
        for (int r : ps.reductions) lse = lse || g[r].op == Op::logsumexp;
        if (lse) os << "    then a row with a logsumexp of -inf (fully masked): skipped (outputs 0, not counted)\n";
    }
    stage(1 << 20);
    if (p.batched_tail)
        os << "  (the logsumexps' log1p and the scalars after the " << (p.passes.size() == 1 ? "pass" : "passes") << ": per batch of " << p.vector_width
           << " rows, the log1p as one vector)\n";
    for (const Output& o : g.outputs())
        if (!p.vector_node[static_cast<std::size_t>(o.root)]) os << "  output " << o.name.view() << " = %" << o.root << " (per row, summed over rows)\n";
    return os.str();
}

}  // namespace lossjit::jit
