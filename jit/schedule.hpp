// The schedule: from a Graph to a row program with the fewest passes over a row.
//
// Every node gets a depth: the number of row passes that must finish before it can be computed.
// Leaves and elementwise ops take their arguments' depth; a reduction over a vector of depth d is
// accumulated in pass d and is known from depth d + 1 on; softmax(v) and log_softmax(v) need
// logsumexp(v); at(v, y) is a gather (v evaluated at one index), so it needs no pass of its own;
// reductions of scalars fold (sum(s) = K s). Pass p accumulates every reduction of depth p at once
// (independent reductions ride along); vector outputs are written in the last pass, after every
// read of the row, so a gradient may overwrite its logits in place. Scalar nodes are computed
// between passes, in "stages". No LLVM here.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "lossjit/graph.hpp"
#include "lossjit/kernel.hpp"

namespace lossjit::jit {

// What the code generator targets: found once per process from the host CPU.
struct Target {
    std::string cpu;       // e.g. znver5
    std::string features;  // LLVM feature string, e.g. +avx512f,+avx2,...
    int vector_bits = 128;
    bool masked_memory = false;  // masked loads/stores in the ISA (AVX-512, AVX for 32/64-bit)
    bool avx512 = false;         // AVX-512F (vscalefps in exp)
    bool bf16_convert = false;   // AVX512-BF16 and -DQ: fp32 -> bf16 in one instruction
    std::size_t l2_bytes = 512 * 1024;  // sizes two-pass blocks
    std::size_t l3_bytes = 0;           // 0: unknown (no streaming stores)
};

enum class LseMode : unsigned char { online, two_pass };

struct Pass {
    std::vector<int> reductions;  // nodes reduced in this pass (logsumexp included)
    std::vector<int> writes;      // indices into Plan::outputs of vector outputs written here
};

// Generic K: row lengths a kernel runs, from min to max (0: no bound), multiples of `multiple`.
struct RowLengths {
    std::size_t min = 0, max = 0, multiple = 1;
    bool any() const { return min <= 1 && max == 0 && multiple == 1; }
};

struct Plan {
    Graph g;                  // compacted; params replaced by constants; logsumexp nodes added
    std::vector<int> depth;   // per node
    std::vector<int> lse_of;  // per softmax/log_softmax node: its logsumexp node, else -1
    std::vector<Pass> passes;
    std::vector<Slot> slots;  // the kernel's arguments: inputs then outputs
    // The slot of the Graph's output w (outputs follow the inputs, in the Graph's order).
    std::size_t output_slot(int w) const { return slots.size() - g.outputs().size() + static_cast<std::size_t>(w); }
    std::vector<int> slot_node;  // per slot: the input node, or for outputs the root node
    DType compute = DType::f32;  // f32 or f64
    std::size_t K = 0;           // 0 = generic
    // Generic K: the rows this plan's kernel runs (make_plans gives generic K a kernel for each
    // range of lengths where knowing it wins).
    RowLengths lengths;
    // What is known at compile time of the rows the kernel runs: the longest (0: unknown), the
    // shortest, and whether every length is a multiple of n.
    std::size_t longest() const { return K ? K : lengths.max; }
    std::size_t shortest() const { return K ? K : lengths.min; }
    bool lengths_multiple_of(std::size_t n) const { return (K ? K : lengths.multiple) % n == 0; }
    // Whether the kernel runs rows of k elements.
    bool admits(std::size_t k) const {
        return K ? k == K : k >= lengths.min && (lengths.max == 0 || k <= lengths.max) && k % lengths.multiple == 0;
    }
    LseMode lse = LseMode::two_pass;
    std::size_t block = 0;       // elements per block in two-pass logsumexp
    // A two-pass loop prefetches the inputs max(block, prefetch_min) elements ahead (the next
    // block, or rows enough to cover memory's latency when a row is one short block); with the
    // max ahead, max(2K, prefetch_min), and in a kernel of several passes not at all (prefetch).
    std::size_t prefetch_min = 0;
    bool prefetch = true;
    // The cached softmax's last pass stores its one vector output with non-temporal (streaming)
    // stores in rows that start on a vector boundary (pipelined: from each row's first aligned
    // vector), when the batch reads and writes at least this many bytes of its row arrays (0:
    // never; see schedule.cpp for when it applies).
    std::size_t stream_min_bytes = 0;
    // Elements per block of a one-pass loop's two-level sums (see codegen_row_pass.cpp): each
    // lane adds up at most sum_terms terms before they join the row's sum.
    static constexpr int sum_terms = 64;
    std::size_t sum_block = 0;
    // Loops run in pieces of sum_block elements, each lane's sums joining the row's (or a
    // two-pass block's) at a piece's end, where a row (or a block) can be longer than that.
    bool row_sums_in_pieces() const { return longest() == 0 || longest() > sum_block; }
    // Rows within one two-pass block, known at compile time (the across-rows kernel's rows are
    // one block too)
    bool row_is_one_block() const { return rows || (longest() != 0 && longest() <= block); }
    bool block_sums_in_pieces() const { return (longest() == 0 ? block : std::min(longest(), block)) > sum_block; }
    int vector_width = 4;        // elements per vector
    int unroll = 1;
    // Row by row, a pass's reductions run in groups, each with loops of its own over the row, so
    // that the accumulators of a group fit in half the vector registers (group_budget of them):
    // a pass of 64 logsumexps had 256 max accumulators in one loop, spilled in every iteration,
    // and its register allocation grew faster than the loss. The last group writes the pass's
    // vector outputs.
    int group_budget = 16;
    std::vector<Pass> pass_groups(const Pass& ps) const;
    // The last pass without reductions of its own: the labels of the onehots its writes read. Its
    // loop takes onehot as 0 in every lane; the writes' elements at these labels are computed
    // before the loop and stored after it (codegen_row_pass.cpp), or across rows put in at the
    // labels' columns (codegen_rows.cpp).
    std::vector<int> labels_after_loop(const Pass& ps, bool last) const;
    bool masked_loop = false;  // one loop with every iteration masked (AVX-512), no separate tail
    int opt_level = 2;
    DType label_dtype = DType::i64;
    std::vector<bool> vector_node;  // per node: shape == vector
    // The logsumexp node whose exp(x - block max) values the pass reducing it keeps in a
    // per-thread scratch row, so that softmax of the same argument in the last pass is a load
    // and a multiply instead of a second exp (-1: none). See scratch_elems.
    int cache_lse = -1;
    // Whether node i is that softmax (of cache_lse's argument): read as kept exps times a factor.
    bool cached_softmax(int i) const { return g[i].op == Op::softmax && lse_of[static_cast<std::size_t>(i)] == cache_lse; }
    // Across rows: lanes are VW consecutive rows, for rows of up to rows_max_k elements known
    // at compile time (longest()); see codegen_rows.cpp.
    bool rows = false;
    static constexpr std::size_t rows_max_k = 32;
    // Across rows, a vector output whose rows are not whole cache lines, or are one line, has
    // them prefetched for writing two blocks ahead: each row's masked store writes part of a
    // line, which takes a read for ownership first, and the hardware prefetchers, following
    // the loads, do not issue those ahead. fwd+bwd, one thread (Zen 4): 1048576x10 2.7 -> 4.6
    // GB/s (outputs in memory), 1048576x24 1.16-1.36x, 65536x10 1.02-1.04x (in the L3), 8192x10
    // 0.99x (in the L2). Rows of one line (fp32 K = 16, bf16 K = 32) gain where the arrays
    // outgrow the cache (1048576x16 1.31x, 262144x16 1.35-1.40x, 102400x16 1.50x, bf16
    // 1048576x32 1.22-1.25x) for 1-4% where they do not (8192x16 0.96x, 65536x16 0.99x). Rows
    // of two lines (fp32 K = 32) lost from memory (1048576x32 0.73x, 262144x32 0.80x; the first
    // line of each row alone 0.90x), and prefetching the inputs too gained nothing (their
    // streams the hardware follows).
    bool write_prefetched(std::size_t slot) const {
        const Slot& s = slots[slot];
        const std::size_t bytes = K * size_of(s.dtype);
        return rows && s.vector && s.output && (bytes % 64 != 0 || bytes == 64);
    }
    // Long rows (over 1024 elements) whose last pass only writes, in the compute type, a function
    // of the cached softmax, onehots and the row's scalars (pending_row_scalars: cross-entropy,
    // label smoothing, z-loss, class weights): that pass of row r runs inside the exp loop of row
    // r + 1, so that the stores of one row and the arithmetic of the next share the time
    // (codegen_row.cpp).
    bool pipelined = false;
    // Row by row, each row one two-pass block (of at most 4 KB where a gradient pass follows,
    // not pipelined): the first pass's logsumexps take the max of row r + 1 in row r's exp
    // loop, whose arithmetic the next row's stream from memory then runs under instead of after;
    // that row skips its max loop unless row r was skipped (codegen_row_pass.cpp). Only where
    // the logsumexps' arguments read nothing of a row but its vector inputs' elements (no
    // label, no per-row scalar).
    bool max_ahead = false;
    // Row by row, one pass that writes no vector output (a loss alone), or a pass of reductions
    // and then a gradient pass that reads them only through the cached softmax of a row that is
    // one block (kept exp / sum: softmax cross-entropy's): the logsumexps' log1p and the final
    // stage run per batch of VW rows instead of per row, the log1p as one vector for the batch
    // (codegen_row.cpp). Each row's log1p was a chain of some 40 scalar operations whose wait
    // held the next row's exp loop back.
    bool batched_tail = false;
    // Row by row, AVX-512, fp32 math, every vector input and output bf16: the loops' copies go
    // in pairs over 2 VW elements, one 512-bit load of 2 VW bf16, the even elements in one
    // vector (a shift) and the odd in the other (a mask), with no widening shuffle; a write
    // rejoins the two into one store (Em::bf16_pair), the kept exps
    // sit in the scratch row in the pairs' order (Em::scratch_index), onehot takes a pair's
    // columns (Em::lane_indices), and the reductions do not depend on their elements' order
    // (no onehot in them). The masked tail takes its elements in order (codegen_loops.cpp,
    // Em::load_lanes). Unroll 2.
    bool bf16_pairs = false;
    // Row by row, a two-pass logsumexp (kept_lse) whose argument costs more than keeping it
    // (soft-capping's cap tanh(u / cap)): its max loop stores the values of kept_node (the
    // argument, or its costly part that the last pass reads too: tanh(u / cap)) in the scratch
    // row past the cached exps (kept_offset), and its exp loop and the passes after read them
    // there instead of computing them again. -1: none.
    int kept_lse = -1, kept_node = -1;
    bool uses_scratch() const { return (cache_lse >= 0 || kept_node >= 0) && !rows; }
    // Elements (of the compute type) of the per-thread scratch row for rows of K: the cached
    // exp values, one block max per block, and a kept node's values from a 64-byte boundary. 0
    // when the kernel needs none.
    std::size_t kept_offset(std::size_t K) const { return (K + 16 + (K + block - 1) / block + 15) / 16 * 16; }
    std::size_t scratch_elems(std::size_t K) const {
        return !uses_scratch() ? 0 : kept_node >= 0 ? kept_offset(K) + K + 16 : K + 16 + (K + block - 1) / block;
    }
    // Bytes a row of K elements reads and writes in the row arrays (the vector slots).
    std::size_t row_bytes(std::size_t K) const {
        std::size_t b = 0;
        for (const Slot& s : slots)
            if (s.vector) b += K * size_of(s.dtype);
        return b;
    }
};

// lengths (generic K only): the plan of a kernel for rows of those lengths (default: any).
Plan make_plan(const Graph& g, const CompileOptions& o, const Target& t, RowLengths lengths = {});
// The plans of a compile(): for a known K one; for generic K a kernel for each range of lengths
// where knowing it wins (rows of up to Plan::rows_max_k across rows; rows of one block short
// enough for the max ahead; long rows, pipelined with streaming stores: of a multiple of the
// vector width, the others of one block, of several), then one for any length.
// Kernel::run takes the first that admits the batch's K.
std::vector<Plan> make_plans(const Graph& g, const CompileOptions& o, const Target& t);

// Plan::pipelined: whether the last pass's write (node root) reads nothing of its row but the
// cached softmax, onehots (which its loop takes as 0) and per-row scalars other than a
// logsumexp itself, through elementwise ops; if so, those scalars (constants and the row length
// aside), which the pending row keeps (codegen_row.cpp), are put in `scalars`.
bool pending_row_scalars(const Plan& p, int root, std::vector<int>& scalars);

// Whether codegen's emitter table (codegen_ops.cpp) has an entry for the op; every op that can
// appear in a Graph (all but Op::wildcard) must.
bool has_emitter(Op op);

// "1 to 32 elements", "1025 elements or more, a multiple of 16", "any length".
std::string to_string(const RowLengths& l);
// The printable schedule (Kernel::schedule()).
std::string to_string(const Plan& p);
// One node as infix text (inputs by name).
std::string node_text(const Graph& g, int i);
// The whole graph, one node a line.
std::string graph_text(const Graph& g);

}  // namespace lossjit::jit
