// One pass over a row (row by row): every reduction of the pass accumulated in one vector loop,
// a two-pass logsumexp's max loop per block before it, the vector outputs stored by the last pass.
#include "codegen_emitter.hpp"

namespace lossjit::jit::codegen_detail {

namespace {

struct Red {
    int node;
    Op op;
    bool two_pass = false;
    std::vector<AllocaInst*> a, b, c;  // per unroll copy: accumulator(s)
    std::vector<AllocaInst*> next;     // two-pass, max ahead: the next row's max, per unroll copy
    // Sums over long rows in two levels: a, b hold the current block's lane sums (one-pass loops:
    // Plan::sum_terms terms a lane), added into ra, rb at its end (K / block terms): fp32 lane sums
    // of K / lanes terms lost digits at large K (33 ulp per unit of spread at K = 200000). For an
    // online logsumexp ra, rb are the row's running max and sum per lane, merged with the block's.
    // A two-pass logsumexp's exp sums have only rb: the sum of its L2-sized block, into which
    // each piece of Plan::sum_block elements adds its lanes' sums of exp(x - block max).
    std::vector<AllocaInst*> ra, rb;
    // two-pass logsumexp over blocks: the running max M, the number C of elements equal to it
    // and the sum R of exp(x - M) over the others (sum exp(x - M) = C + R)
    AllocaInst *M = nullptr, *Cnt = nullptr, *Sum = nullptr;
};

}  // namespace

void Em::emit_pass(const Pass& ps, bool last, bool max_ahead) {
    const int U = P.unroll;
    const int UM = std::max(U, 4);  // accumulators of the max loops (load + max: latency bound)
    std::vector<Red> reds;
    bool any_two = false;
    auto additive = [&](const Red& x) { return x.op != Op::amax; };  // sums (an online logsumexp's too)
    // Loops run in pieces of P.sum_block elements, each lane's sums joining the row's (or a
    // two-pass block's) at a piece's end, wherever a row or a block can be longer than that.
    const bool cascade = P.row_sums_in_pieces();
    const bool pieces_in_block = P.block_sums_in_pieces();
    for (int r : ps.reductions) {
        Red x;
        x.node = r;
        x.op = P.g[r].op;
        x.two_pass = x.op == Op::logsumexp && P.lse == LseMode::two_pass;
        any_two = any_two || x.two_pass;
        for (int u = 0; u < U; ++u) {
            x.a.push_back(alloca(VF));
            if (x.op == Op::logsumexp) x.b.push_back(alloca(VF));
            if (x.two_pass) x.c.push_back(alloca(I64));  // elements below the block max
        }
        if (x.two_pass ? pieces_in_block : cascade && additive(x)) {
            for (int u = 0; u < U; ++u) {
                if (!x.two_pass) x.ra.push_back(alloca(VF));
                if (x.op == Op::logsumexp) x.rb.push_back(alloca(VF));
            }
        }
        if (x.two_pass) {
            x.M = alloca(F);
            x.Cnt = alloca(F);
            x.Sum = alloca(F);
            for (int u = U; u < UM; ++u) x.a.push_back(alloca(VF));
            if (max_ahead)
                for (int u = 0; u < U; ++u) x.next.push_back(alloca(VF));
        }
        reds.push_back(std::move(x));
    }
    // Evaluate every value this pass reads before the loops, so that lazily computed scalars
    // land in the stage block.
    for (const Red& r : reds) {
        const Node& n = P.g[r.node];
        if (!vec(n.a)) S(n.a);
        if (n.b >= 0 && !vec(n.b)) S(n.b);
    }
    auto init_main = [&] {
        for (Red& r : reds) {
            if (r.two_pass) {
                for (int u = 0; u < U; ++u) {
                    B.CreateStore(ConstantFP::get(VF, 0.0), r.b[static_cast<std::size_t>(u)]);
                    B.CreateStore(ConstantInt::get(I64, 0), r.c[static_cast<std::size_t>(u)]);
                }
                continue;
            }
            const double init = r.op == Op::amax || r.op == Op::logsumexp ? -INFINITY : 0.0;
            for (int u = 0; u < U; ++u) {
                B.CreateStore(ConstantFP::get(VF, init), r.a[static_cast<std::size_t>(u)]);
                if (r.op == Op::logsumexp) B.CreateStore(ConstantFP::get(VF, 0.0), r.b[static_cast<std::size_t>(u)]);
            }
        }
    };
    std::vector<Value*> block_max(reds.size(), nullptr);  // two-pass: this block's max (safe)
    std::vector<Value*> scale(P.slots.size(), nullptr);
    // Two-pass logsumexp: the max loop of a block streams from memory and the exp loop after it
    // computes, one after the other. The exp loop prefetches the inputs of the next block (the
    // next rows when the row is one block, Plan::prefetch_min ahead at least), so the next max
    // loop reads from cache and memory traffic overlaps the arithmetic. With the max ahead, the
    // loop reads the next row itself and prefetches the ones after (one row ahead, its prefetches
    // and its loads of the same lines ran at 10 GB/s instead of 29 in a model of the loop), or
    // none at all where a gradient pass follows (Plan::prefetch).
    Value* ahead = nullptr;
    if (any_two && P.prefetch) {
        Value* blk = ConstantInt::get(I64, static_cast<std::int64_t>(P.block));
        Value* least = ConstantInt::get(I64, static_cast<std::int64_t>(P.prefetch_min));
        ahead = max_ahead ? B.CreateMul(K, ConstantInt::get(I64, 2)) : B.CreateSelect(B.CreateICmpSGT(K, blk), blk, K);
        ahead = B.CreateSelect(B.CreateICmpSGT(ahead, least), ahead, least);
    }
    std::vector<LabelElement> at_labels;  // Plan::labels_after_loop: below
    // a lane-wise max into A over the lanes of mask (null: all); a NaN x is ignored (max_fast)
    auto take_max = [&](AllocaInst* A, Value* x, Value* mask) {
        Value* acc = B.CreateLoad(VF, A);
        Value* m = max_fast(acc, x);
        B.CreateStore(mask ? B.CreateSelect(mask, m, acc) : m, A);
    };
    std::vector<Value*> pair_even(ps.writes.size(), nullptr);  // bf16 pairs: a write's even elements
    // Plan::kept_node: the max loop of the pass that reduces kept_lse stores its values in the
    // scratch row; that pass's exp loop and the passes after read them (their contexts' value of
    // the node)
    bool stores_kept = false;
    for (const Red& r : reds) stores_kept = stores_kept || (r.two_pass && r.node == P.kept_lse);
    const bool reads_kept = kept_ready || (stores_kept && any_two);
    auto main_body = [&](Value* i, Value* mask, int u) {
        if (pending_factor) pending_skewed_vector(i);  // reads the kept exps before this row's replace them
        Ctx c = lanes_ctx(i, mask);
        if (reads_kept) c.memo[static_cast<std::size_t>(P.kept_node)] = scratch_vector(kept_index(scratch_index(c)), mask);
        // The prefetches fill the L2 only (prefetcht1, locality 2): a block or two rows ahead is
        // far more than the L1 holds, and into the L1 (prefetcht0) each held a miss buffer the
        // loop's own loads wait for. fwd on a Zen 4 (ce_probe): 512x32000 10-12 -> 19-21 GB/s,
        // 2048x4096 12 -> 17-20, 8192x1000 10-13 -> 16, 64x256000 13-15 -> 15-17; fwd+bwd
        // 512x32000 9.5 -> 12.4; the rest as before.
        if (ahead && !mask && c.pair != 1)  // (a pair's odd copy reads the even one's line)
            for (std::size_t s = 0; s < P.slots.size(); ++s)
                if (!P.slots[s].output && P.slots[s].vector && P.slots[s].kind != InputKind::weights)
                    prefetch(element_ptr(static_cast<int>(s), B.CreateAdd(i, ahead)), false, 2);
        auto keep = [&](Value* v, Value* other) { return mask ? B.CreateSelect(mask, v, other) : v; };
        for (std::size_t k = 0; k < reds.size(); ++k) {
            Red& r = reds[k];
            const Node& n = P.g[r.node];
            AllocaInst* A = r.a[static_cast<std::size_t>(u)];
            Value* x = V(n.a, c);
            switch (r.op) {
            case Op::sum:
            case Op::mean: {
                Value* acc = B.CreateLoad(VF, A);
                B.CreateStore(B.CreateFAdd(acc, keep(x, ConstantFP::get(VF, 0.0))), A);
                break;
            }
            case Op::dot: {
                Value* acc = B.CreateLoad(VF, A);
                Value* prod = mul0(x, V(n.b, c), n.a, n.b);
                B.CreateStore(B.CreateFAdd(acc, keep(prod, ConstantFP::get(VF, 0.0))), A);
                break;
            }
            case Op::amax: {
                Value* acc = B.CreateLoad(VF, A);
                Value* take = B.CreateOr(B.CreateFCmpOGT(x, acc), B.CreateFCmpUNO(x, x));
                if (mask) take = B.CreateAnd(take, mask);
                B.CreateStore(B.CreateSelect(take, x, acc), A);
                break;
            }
            case Op::logsumexp: {
                AllocaInst* Sa = r.b[static_cast<std::size_t>(u)];
                if (r.two_pass) {
                    Value* bm = splat(block_max[k]);
                    const bool kept = r.node == P.cache_lse;
                    const ExpTerm e = kept ? ExpTerm{exp_nonpositive(B.CreateFSub(x, bm)), nullptr} : exp_summand(B.CreateFSub(x, bm));
                    lse_accumulate(x, bm, e, mask, Sa, r.c[static_cast<std::size_t>(u)]);
                    if (kept) store_scratch(scratch_index(c), e.scale, mask);
                    break;
                }
                // online: running max m and the sum s of exp(x - m) over the lane's elements but
                // its (one) maximal element, whose exp(0) = 1 is implicit: one exp per element
                Value* s = B.CreateLoad(VF, Sa);
                Value* m = B.CreateLoad(VF, A);
                Value* gt = B.CreateFCmpOGT(x, m);
                Value* e = exp_term_value(B, exp_summand(B.CreateSelect(gt, B.CreateFSub(m, x), B.CreateFSub(x, m))));
                // x equal to m adds exp(0) = 1, also at +inf where x - m is NaN; -inf adds 0
                e = B.CreateSelect(B.CreateFCmpOEQ(x, m), ConstantFP::get(VF, 1.0), e);
                e = B.CreateSelect(isneginf(x), ConstantFP::get(VF, 0.0), e);
                Value* s1 = B.CreateSelect(gt, B.CreateFMul(B.CreateFAdd(s, ConstantFP::get(VF, 1.0)), e), B.CreateFAdd(s, e));
                Value* m1 = B.CreateSelect(gt, x, m);
                B.CreateStore(keep(s1, s), Sa);
                B.CreateStore(keep(m1, m), A);
                break;
            }
            default: throw error("codegen: " + std::string(info(r.op).name) + " is not a pass reduction");
            }
        }
        if (max_ahead) {  // the next row's elements: its bases stand in for this row's
            std::swap(row_base, next_base);
            Ctx cn = lanes_ctx(i, mask);
            for (Red& r : reds)
                if (r.two_pass) take_max(r.next[static_cast<std::size_t>(u)], V(P.g[r.node].a, cn), mask);
            std::swap(row_base, next_base);
        }
        for (std::size_t k = 0; k < ps.writes.size(); ++k) {
            const int w = ps.writes[k];
            const std::size_t slot = P.output_slot(w);
            Value* v = B.CreateFMul(V(P.g.outputs()[static_cast<std::size_t>(w)].root, c), scale[slot]);
            const DType d = P.slots[slot].dtype;
            if (c.pair == 0) {  // bf16 pairs: the even elements wait for the odd ones
                pair_even[k] = v;
                continue;
            }
            Value* st = c.pair == 1 ? bf16_pair(pair_even[k], v) : to_storage(v, d);
            Value* stream = stream_row;
            for (const LabelElement& a : at_labels)
                if (stream) stream = streams_but_label(stream, i, a.y);
            store_output(st, element_ptr(static_cast<int>(slot), i), d, mask, stream);
        }
    };
    for (int w : ps.writes) {
        const std::size_t slot = P.output_slot(w);
        scale[slot] = splat(slot_scale[slot]);
    }
    // Writes that read onehot(y): their elements at the labels (label inputs, which the run has
    // checked to be in [0, K); make_plan admits no other class index) are computed here, as
    // gathers (before the loop, which may overwrite the inputs in place), and stored after the
    // loop, whose lanes all take onehot as 0: the compare of every lane's column with the label
    // and the selects (softmax - 1 at the label) leave the loop, which becomes loads, multiplies
    // and stores (bf16 gradients 1.06-1.12x faster, fp32 in cache 1.04x: ce_probe).
    const bool cached_last = !any_two && last && P.cache_lse >= 0;
    if (cached_last && cache_sum) whole_row_softmax();  // the row is one block: its factors
    for (int l : P.labels_after_loop(ps, last))
        for (int w : ps.writes) at_labels.push_back(label_element(l, w));
    onehot_off = !at_labels.empty();

    // Two-level sums (Red::ra): the row's accumulators start empty, each block's are added into
    // them at its end and start again; after the row they are where the finish reads them. The
    // row's are volatile: kept in memory, touched once a block, rather than promoted to values
    // the register allocator carries through the loop (JIT latency: 203 M -> 197 M instructions
    // for the generic cross-entropy kernel).
    std::vector<Red*> cascaded;
    for (Red& r : reds)
        if (!r.ra.empty() || !r.rb.empty()) cascaded.push_back(&r);
    auto for_each_cascaded = [&](const std::function<void(Red&, std::size_t)>& f) {
        for (Red* r : cascaded)
            for (std::size_t u = 0; u < static_cast<std::size_t>(U); ++u) f(*r, u);
    };
    // empty: a sum of 0, an online logsumexp's max -inf and sum 0 (in_memory: the row's)
    auto reset = [&](Red& r, AllocaInst* sum_or_max, AllocaInst* lse_sum, bool in_memory = false) {
        B.CreateStore(ConstantFP::get(VF, r.op == Op::logsumexp ? -INFINITY : 0.0), sum_or_max, in_memory);
        if (lse_sum) B.CreateStore(ConstantFP::get(VF, 0.0), lse_sum, in_memory);
    };
    auto flush_block_sums = [&] {
        for_each_cascaded([&](Red& r, std::size_t u) {
            if (r.two_pass) {  // the same reference (the block max): a plain sum
                B.CreateStore(B.CreateFAdd(B.CreateLoad(VF, r.rb[u], true), B.CreateLoad(VF, r.b[u])), r.rb[u], true);
                B.CreateStore(ConstantFP::get(VF, 0.0), r.b[u]);
                return;
            }
            AllocaInst *A = r.a[u], *RA = r.ra[u];
            if (r.op != Op::logsumexp) {
                B.CreateStore(B.CreateFAdd(B.CreateLoad(VF, RA, true), B.CreateLoad(VF, A)), RA, true);
                reset(r, A, nullptr);
                return;
            }
            // lanes: the row's (M, S) and the block's (m, s), each a sum of exp(x - max) = 1 + S
            // (its max element's 1 implicit), merged as the loop merges an element: the part at
            // the new max keeps its sum, the other adds 1 + its sum scaled by exp(its max - new
            // max); an empty other part (-inf) adds 0, a tie (also +inf, where the difference is
            // NaN) 1 + its sum. A NaN sum stays NaN.
            Value *m = B.CreateLoad(VF, A), *s = B.CreateLoad(VF, r.b[u]);
            Value *M = B.CreateLoad(VF, RA, true), *S = B.CreateLoad(VF, r.rb[u], true);
            Value* Mn = B.CreateBinaryIntrinsic(Intrinsic::maxnum, M, m);
            Value* row_top = B.CreateFCmpOEQ(M, Mn);
            Value* other = B.CreateSelect(row_top, m, M);
            Value* w = B.CreateSelect(isneginf(other), ConstantFP::get(VF, 0.0),
                                      B.CreateSelect(B.CreateFCmpOEQ(other, Mn), ConstantFP::get(VF, 1.0), exp_nonpositive(B.CreateFSub(other, Mn))));
            Value* one = ConstantFP::get(VF, 1.0);
            Value* Sn = B.CreateSelect(row_top, B.CreateFAdd(S, B.CreateFMul(B.CreateFAdd(one, s), w)),
                                       B.CreateFAdd(s, B.CreateFMul(B.CreateFAdd(one, S), w)));
            B.CreateStore(Mn, RA, true);
            B.CreateStore(Sn, r.rb[u], true);
            reset(r, A, r.b[u]);
        });
    };

    // The main loop over [c0, ce), its lane sums then added into the block's or the row's.
    auto summed_loop = [&](Value* c0, Value* ce) {
        emit_loop(c0, ce, main_body, 0, true);
        flush_block_sums();
    };
    // The main loop over a block of the two-pass and cached loops: in pieces of P.sum_block
    // elements where a block can be longer.
    auto block_main_loop = [&](Value* b0, Value* be) {
        if (pieces_in_block) for_each_block(summed_loop, P.sum_block, b0, be);
        else summed_loop(b0, be);
    };

    init_main();
    for_each_cascaded([&](Red& r, std::size_t u) {
        if (!r.two_pass) reset(r, r.ra[u], r.rb.empty() ? nullptr : r.rb[u], true);
    });
    if (cached_last) {
        // softmax from the kept exps: blocks as in the pass that kept them, each with its factor
        // (one block: from the sums, above)
        auto block = [&](Value* b0, Value* be) {
            if (!cache_sum) {
                Value* bm = B.CreateLoad(F, scratch_block_max(B.CreateUDiv(b0, ConstantInt::get(I64, static_cast<std::int64_t>(P.block)))));
                cache_factor = splat(cached_softmax_factor(bm));
            }
            block_main_loop(b0, be);
        };
        // (a loss without gradients can end in a pass of reductions alone)
        stream_row = ps.writes.empty() ? nullptr : row_streams(P.output_slot(ps.writes[0]));
        for_each_block(block);
        stream_row = nullptr;
    } else if (!any_two && !cascaded.empty()) {
        for_each_block(summed_loop, P.sum_block);
    } else if (!any_two) {
        emit_loop(ConstantInt::get(I64, 0), K, main_body, 0, true);
    } else {
        for (Red& r : reds)
            if (r.two_pass) {
                B.CreateStore(cf(-INFINITY), r.M);
                B.CreateStore(cf(0.0), r.Cnt);
                B.CreateStore(cf(0.0), r.Sum);
            }
        // Plan::pipelined: the exp loop of the group that keeps the exps also does the pending
        // row's last pass (with no row pending, into the scratch row itself)
        bool keeps = false;
        for (const Red& r : reds) keeps = keeps || r.node == P.cache_lse;
        const bool pipe = P.pipelined && keeps;
        Value* skew = pipe ? pending_row_skew() : nullptr;
        for_each_block([&](Value* b0, Value* be) {
            Value* factor = pipe ? pending_block_factor(b0) : nullptr;
            for (Red& r : reds)
                if (r.two_pass)
                    for (int u = 0; u < UM; ++u) B.CreateStore(ConstantFP::get(VF, -INFINITY), r.a[static_cast<std::size_t>(u)]);
            // The block's max ignores NaN (x86 max): a NaN element makes its exp, so the sum, NaN.
            auto max_loop = [&] {
                emit_loop(b0, be, [&](Value* i, Value* mask, int u) {
                    Ctx c = lanes_ctx(i, mask);
                    if (stores_kept) store_scratch(kept_index(scratch_index(c)), V(P.kept_node, c), mask);
                    for (Red& r : reds)
                        if (r.two_pass) take_max(r.a[static_cast<std::size_t>(u)], V(P.g[r.node].a, c), mask);
                }, UM, true);
            };
            if (max_ahead) {  // the lanes' maxes the previous row's exp loop took, if it ran
                BasicBlock* carried = BasicBlock::Create(C, "max.carried", fn);
                BasicBlock* scan = BasicBlock::Create(C, "max.scan", fn);
                BasicBlock* join = BasicBlock::Create(C, "max.join", fn);
                B.CreateCondBr(B.CreateICmpEQ(B.CreateLoad(I64, ahead_row), row_index), carried, scan);
                B.SetInsertPoint(carried);
                for (Red& r : reds)
                    if (r.two_pass) B.CreateStore(B.CreateLoad(VF, ahead_max[static_cast<std::size_t>(r.node)]), r.a[0]);
                B.CreateBr(join);
                B.SetInsertPoint(scan);
                max_loop();
                B.CreateBr(join);
                B.SetInsertPoint(join);
                for (Red& r : reds)
                    for (AllocaInst* A : r.next) B.CreateStore(ConstantFP::get(VF, -INFINITY), A);
            } else {
                max_loop();
            }
            std::vector<Value*> bm_raw(reds.size(), nullptr);
            for (std::size_t k = 0; k < reds.size(); ++k) {
                Red& r = reds[k];
                if (!r.two_pass) continue;
                Value* v = B.CreateLoad(VF, r.a[0]);
                for (int u = 1; u < UM; ++u) v = max_fast(v, B.CreateLoad(VF, r.a[static_cast<std::size_t>(u)]));
                Value* bm = hmax_fast(v);
                bm_raw[k] = bm;
                // an all -inf block: subtract 0 instead, so exp(-inf - 0) = 0 (and NaN stays NaN)
                block_max[k] = B.CreateSelect(isneginf(bm), cf(0.0), bm);
                if (r.node == P.cache_lse)
                    B.CreateStore(block_max[k], scratch_block_max(B.CreateUDiv(b0, ConstantInt::get(I64, static_cast<std::int64_t>(P.block)))));
                for (int u = 0; u < U; ++u) {
                    B.CreateStore(ConstantFP::get(VF, 0.0), r.b[static_cast<std::size_t>(u)]);
                    B.CreateStore(ConstantInt::get(I64, 0), r.c[static_cast<std::size_t>(u)]);
                    if (!r.rb.empty()) B.CreateStore(ConstantFP::get(VF, 0.0), r.rb[static_cast<std::size_t>(u)], true);
                }
            }
            pending_factor = factor;
            if (pipe) pending_skewed_start(b0, be, skew);
            block_main_loop(b0, be);
            pending_factor = pending_skew = pending_end = nullptr;
            if (max_ahead) {  // the next row's maxes, for its pass
                for (Red& r : reds) {
                    if (r.next.empty()) continue;
                    Value* v = B.CreateLoad(VF, r.next[0]);
                    for (std::size_t u = 1; u < r.next.size(); ++u) v = max_fast(v, B.CreateLoad(VF, r.next[u]));
                    B.CreateStore(v, ahead_max[static_cast<std::size_t>(r.node)]);
                }
                B.CreateStore(next_row, ahead_row);
            }
            for (std::size_t k = 0; k < reds.size(); ++k) {
                Red& r = reds[k];
                if (!r.two_pass) continue;
                const std::vector<AllocaInst*>& sums = r.rb.empty() ? r.b : r.rb;
                Value* v = B.CreateLoad(VF, sums[0], !r.rb.empty());
                Value* w = B.CreateLoad(I64, r.c[0]);
                for (int u = 1; u < U; ++u) {
                    v = B.CreateFAdd(v, B.CreateLoad(VF, sums[static_cast<std::size_t>(u)], !r.rb.empty()));
                    w = B.CreateAdd(w, B.CreateLoad(I64, r.c[static_cast<std::size_t>(u)]));
                }
                Value* sb = hsum(v);  // the block: sum exp(x - bm) = cb + sb
                Value* cb = B.CreateUIToFP(B.CreateSub(B.CreateSub(be, b0), w), F);  // elements at bm
                Value* bm = bm_raw[k];
                auto store_row = [&](Value* sum, Value* cnt, Value* max) {
                    B.CreateStore(sum, r.Sum);
                    B.CreateStore(cnt, r.Cnt);
                    B.CreateStore(max, r.M);
                };
                if (P.row_is_one_block()) {  // nothing to merge
                    store_row(sb, cb, bm);
                    continue;
                }
                // The row's first block has nothing to merge with either (the merge would give
                // the same bits: 0 + sb, 0 + cb, bm): a generic kernel's short rows, one block,
                // skip its two exps, which held each row's chain (fwd 24824x33 2.9 -> 4.6 GB/s).
                BasicBlock* first = BasicBlock::Create(C, "block.first", fn);
                BasicBlock* merge = BasicBlock::Create(C, "block.merge", fn);
                BasicBlock* merged = BasicBlock::Create(C, "block.merged", fn);
                B.CreateCondBr(B.CreateICmpEQ(b0, ConstantInt::get(I64, 0)), first, merge);
                B.SetInsertPoint(first);
                store_row(sb, cb, bm);
                B.CreateBr(merged);
                B.SetInsertPoint(merge);
                Value* Mo = B.CreateLoad(F, r.M);
                Value* Co = B.CreateLoad(F, r.Cnt);
                Value* So = B.CreateLoad(F, r.Sum);
                Value* Mn = B.CreateBinaryIntrinsic(Intrinsic::maxnum, Mo, bm);
                // a part whose max is the new max keeps its count; another goes into the sum, scaled
                // (an all -inf part has count 0 and sum 0 or NaN: 0 * exp(-inf) = 0, NaN stays)
                Value* old_top = B.CreateFCmpOEQ(Mo, Mn);
                Value* blk_top = B.CreateFCmpOEQ(bm, Mn);
                Value* t1 = B.CreateSelect(old_top, So, B.CreateFMul(B.CreateFAdd(Co, So), exp(B.CreateFSub(Mo, Mn))));
                Value* t2 = B.CreateSelect(blk_top, sb, B.CreateFMul(B.CreateFAdd(cb, sb), exp(B.CreateFSub(bm, Mn))));
                Value* c1 = B.CreateSelect(old_top, Co, cf(0.0));
                Value* c2 = B.CreateSelect(blk_top, cb, cf(0.0));
                store_row(B.CreateFAdd(t1, t2), B.CreateFAdd(c1, c2), Mn);
                B.CreateBr(merged);
                B.SetInsertPoint(merged);
            }
        });
        if (pipe) pending_finish();
    }

    onehot_off = false;
    cache_factor = cache_top = row_factor = row_top = nullptr;
    for (const LabelElement& a : at_labels) store_label_element(a, row_base[a.slot]);

    for_each_cascaded([&](Red& r, std::size_t u) {  // the row's sums, where the finish reads them
        if (r.two_pass) return;
        B.CreateStore(B.CreateLoad(VF, r.ra[u], true), r.a[u]);
        if (!r.rb.empty()) B.CreateStore(B.CreateLoad(VF, r.rb[u], true), r.b[u]);
    });

    // finish: horizontal reductions, results known from the next stage on
    for (Red& r : reds) {
        Value* res = nullptr;
        switch (r.op) {
        case Op::sum:
        case Op::mean:
        case Op::dot: {
            Value* v = B.CreateLoad(VF, r.a[0]);
            for (int u = 1; u < U; ++u) v = B.CreateFAdd(v, B.CreateLoad(VF, r.a[static_cast<std::size_t>(u)]));
            res = hsum(v);
            if (r.op == Op::mean) res = B.CreateFDiv(res, Kf);
            break;
        }
        case Op::amax: {
            Value* v = B.CreateLoad(VF, r.a[0]);
            for (int u = 1; u < U; ++u) {
                Value* w = B.CreateLoad(VF, r.a[static_cast<std::size_t>(u)]);
                v = B.CreateSelect(B.CreateOr(B.CreateFCmpOGT(w, v), B.CreateFCmpUNO(w, w)), w, v);
            }
            res = B.CreateFPMaximumReduce(v);
            break;
        }
        case Op::logsumexp: {
            // lse = hi + lo, hi the max, lo = log1p(the sum of exp(x - hi) but one 1): an all
            // -inf row has no element counted, so log1p(-1) = -inf
            Value *hi, *rest;
            if (r.two_pass) {
                hi = B.CreateLoad(F, r.M);
                Value *cnt = B.CreateLoad(F, r.Cnt), *sum = B.CreateLoad(F, r.Sum);
                rest = B.CreateFAdd(B.CreateFSub(cnt, cf(1.0)), sum);
                if (r.node == P.cache_lse) {
                    cache_total = B.CreateFAdd(cnt, sum);
                    cache_rest = rest;
                    if (P.row_is_one_block()) cache_sum = cache_total;  // Em::cache_sum
                }
            } else {
                std::vector<Value*> ms, ss;
                Value* mv = nullptr;
                for (int u = 0; u < U; ++u) {
                    ms.push_back(B.CreateLoad(VF, r.a[static_cast<std::size_t>(u)]));
                    ss.push_back(B.CreateLoad(VF, r.b[static_cast<std::size_t>(u)]));
                    mv = mv ? B.CreateBinaryIntrinsic(Intrinsic::maxnum, mv, ms.back()) : ms.back();
                }
                hi = hmax(mv);
                Value* Ms = splat(hi);
                Value *tot = nullptr, *cnt = nullptr;
                Value* one = ConstantFP::get(VF, 1.0);
                Value* zero = ConstantFP::get(VF, 0.0);
                for (int u = 0; u < U; ++u) {
                    // lane: its sum s besides its max m, whose own 1 is implicit. Lanes at the
                    // row's max are counted (their 1s), the others scaled by f = exp(m - hi)
                    // (f = 0 for an all -inf lane: s is 0 there, or NaN and kept)
                    Value* m = ms[static_cast<std::size_t>(u)];
                    Value* s = ss[static_cast<std::size_t>(u)];
                    Value* top = B.CreateFCmpOEQ(m, Ms);
                    Value* f = B.CreateSelect(top, one, exp(B.CreateFSub(m, Ms)));
                    Value* t = B.CreateFAdd(B.CreateFMul(s, f), B.CreateSelect(top, zero, f));
                    Value* c = B.CreateSelect(top, one, zero);
                    tot = tot ? B.CreateFAdd(tot, t) : t;
                    cnt = cnt ? B.CreateFAdd(cnt, c) : c;
                }
                rest = B.CreateFAdd(B.CreateFSub(hsum(cnt), cf(1.0)), hsum(tot));
            }
            lse_hi[static_cast<std::size_t>(r.node)] = hi;
            if (r.node == P.cache_lse) cache_M = hi;
            if (P.batched_tail) {
                lse_rest[static_cast<std::size_t>(r.node)] = rest;
                break;
            }
            Value* lo = emit_log1p(B, rest);
            lse_lo[static_cast<std::size_t>(r.node)] = lo;
            res = B.CreateFAdd(hi, lo);
            break;
        }
        default: break;
        }
        reduced[static_cast<std::size_t>(r.node)] = res;
        scal[static_cast<std::size_t>(r.node)] = res;
    }
    kept_ready = kept_ready || stores_kept;
}

void Em::for_each_block(const std::function<void(Value*, Value*)>& body_of_block, std::size_t size, Value* lo, Value* hi) {
    if (size == 0) size = P.block;
    if (!lo && P.longest() != 0 && P.longest() <= size) {
        body_of_block(ConstantInt::get(I64, 0), K);
        return;
    }
    if (!lo) lo = ConstantInt::get(I64, 0), hi = K;
    AllocaInst* bs = alloca(I64);
    B.CreateStore(lo, bs);
    BasicBlock* cond = BasicBlock::Create(C, "block.cond", fn);
    BasicBlock* body = BasicBlock::Create(C, "block.body", fn);
    BasicBlock* exit = BasicBlock::Create(C, "block.exit", fn);
    B.CreateBr(cond);
    B.SetInsertPoint(cond);
    Value* b0 = B.CreateLoad(I64, bs);
    B.CreateCondBr(B.CreateICmpSLT(b0, hi), body, exit);
    B.SetInsertPoint(body);
    Value* b1 = B.CreateAdd(b0, ConstantInt::get(I64, static_cast<std::int64_t>(size)));
    body_of_block(b0, B.CreateSelect(B.CreateICmpSLT(b1, hi), b1, hi));
    B.CreateStore(b1, bs);
    B.CreateBr(cond);
    B.SetInsertPoint(exit);
}

Em::LabelElement Em::label_element(int label, int w) {
    const std::size_t slot = P.output_slot(w);
    Value* y = label_index(label);
    Ctx g = gather_ctx(y);
    Value* v = B.CreateFMul(V(P.g.outputs()[static_cast<std::size_t>(w)].root, g), slot_scale[slot]);
    return {slot, y, to_storage(v, P.slots[slot].dtype)};
}

void Em::store_label_element(const LabelElement& a, Value* row) {
    const DType d = P.slots[a.slot].dtype;
    B.CreateAlignedStore(a.v, B.CreateGEP(storage(d), row, a.y), Align(size_of(d)));
}

// Streaming stores for a row whose output starts on a vector boundary: K a multiple of the
// vector width (Plan::stream_min_bytes), every full vector of the row is aligned. Null: never.
Value* Em::row_streams(std::size_t slot) {
    if (!P.stream_min_bytes) return nullptr;
    const auto vbytes = static_cast<std::int64_t>(store_width()) * static_cast<std::int64_t>(size_of(P.slots[slot].dtype));
    Value* addr = B.CreatePtrToInt(row_base[slot], I64);
    return B.CreateAnd(stream_call, B.CreateICmpEQ(B.CreateAnd(addr, ConstantInt::get(I64, vbytes - 1)), ConstantInt::get(I64, 0)));
}

void Em::store_output(Value* st, Value* p, DType d, Value* mask, Value* stream) {
    if (mask) {
        B.CreateMaskedStore(st, p, Align(size_of(d)), mask);
    } else if (stream) {  // a branch the row always takes the same way
        BasicBlock* nt_bb = BasicBlock::Create(C, "store.stream", fn);
        BasicBlock* plain_bb = BasicBlock::Create(C, "store.plain", fn);
        BasicBlock* done = BasicBlock::Create(C, "store.done", fn);
        B.CreateCondBr(stream, nt_bb, plain_bb);
        B.SetInsertPoint(nt_bb);
        const auto lanes = cast<FixedVectorType>(st->getType())->getNumElements();
        StoreInst* nt = B.CreateAlignedStore(st, p, Align(static_cast<std::uint64_t>(lanes) * size_of(d)));
        nt->setMetadata(LLVMContext::MD_nontemporal, MDNode::get(C, {ConstantAsMetadata::get(B.getInt32(1))}));
        B.CreateBr(done);
        B.SetInsertPoint(plain_bb);
        B.CreateAlignedStore(st, p, Align(size_of(d)));
        B.CreateBr(done);
        B.SetInsertPoint(done);
    } else {
        B.CreateAlignedStore(st, p, Align(size_of(d)));
    }
}

}  // namespace lossjit::jit::codegen_detail
