// Row by row: the kernel function's body when the rows are long (not Plan::rows). See
// codegen.hpp for the kernel's ABI and schedule.hpp for the passes.
//
// Structure:
//   for each row r in [row_begin, row_end):
//     row bases of every slot; labels
//     stage 0 (scalars of depth 0, e.g. gathers at(u, y)), pass 0, stage 1, pass 1, ...
//     each pass: one vectorized loop over the row (unrolled, masked tail), accumulating all of
//     the pass's reductions; two-pass logsumexp adds a max loop before it, per block of the row;
//     the last pass also stores the vector outputs
//     final stage: scalar outputs, stored per row and summed
//   Plan::batched_tail: the rows in batches of VW, the final stage after each batch's rows:
//     for each row of the batch: as above up to the last pass; its first pass's reductions
//     and its gathers kept by lane
//     the logsumexps' log1p, one vector for the batch
//     for each row of the batch not skipped: the final stage
//   skipped rows (a label equal to ignore_index, checked before anything of the row is read;
//   or a logsumexp of -inf, checked after the pass that computes it): every output of the row
//   is written as 0 (vector outputs by a plain store loop) and row_state[r] says why
// Scalar nodes are computed lazily, at the end of the latest stage block (which dominates all
// later code of the row); gathers are forced before the passes so in-place gradients are safe.
#include "codegen_emitter.hpp"

#include <llvm/IR/IntrinsicsX86.h>
#include <llvm/IR/MDBuilder.h>

namespace lossjit::jit::codegen_detail {

void emit_row_by_row(Em& e, Value* rb, Value* re, Value* sums, const std::vector<AllocaInst*>& acc, Value* ignore, Value* state) {
    auto& B = e.B;
    auto& C = e.C;
    const Plan& P = e.P;
    Function* fn = e.fn;
    Type* I8 = Type::getInt8Ty(C);
    const std::size_t ns = P.slots.size();
    if (P.pipelined) e.pending_init();
    if (P.max_ahead) {
        e.ahead_row = B.CreateAlloca(e.I64);
        B.CreateStore(ConstantInt::get(e.I64, static_cast<std::uint64_t>(-1)), e.ahead_row);
        e.ahead_max.assign(static_cast<std::size_t>(P.g.size()), nullptr);
        for (int red : P.passes[0].reductions)
            if (P.g[red].op == Op::logsumexp) e.ahead_max[static_cast<std::size_t>(red)] = B.CreateAlloca(e.VF);
    }
    AllocaInst* skipped_acc = B.CreateAlloca(e.D);  // rows skipped for a logsumexp of -inf
    B.CreateStore(ConstantFP::get(e.D, 0.0), skipped_acc);
    AllocaInst* row = B.CreateAlloca(e.I64);
    B.CreateStore(rb, row);
    BasicBlock* cond = BasicBlock::Create(C, "row.cond", fn);
    BasicBlock* body = BasicBlock::Create(C, "row.body", fn);
    BasicBlock* next = BasicBlock::Create(C, "row.next", fn);
    BasicBlock* done = BasicBlock::Create(C, "done", fn);
    // skipped rows: one block, entered with the row's state (1 ignored, 2 logsumexp -inf)
    BasicBlock* skip = nullptr;
    std::vector<std::pair<BasicBlock*, int>> skip_from;
    MDBuilder md(C);
    auto skip_if = [&](Value* c, int why, const char* name) {
        if (!skip) skip = BasicBlock::Create(C, "row.skip", fn);
        BasicBlock* go = BasicBlock::Create(C, name, fn);
        skip_from.emplace_back(B.GetInsertBlock(), why);
        // ignored rows may be common (padding); a fully masked row is rare
        B.CreateCondBr(c, skip, go, why == 2 ? md.createBranchWeights(1, 1 << 12) : nullptr);
        B.SetInsertPoint(go);
    };
    // liveness, for forcing gathers early
    const std::vector<bool> live = live_nodes(P);
    auto gathered_before_passes = [&](int i) {
        return live[static_cast<std::size_t>(i)] && P.g[i].op == Op::at && P.depth[static_cast<std::size_t>(i)] < static_cast<int>(P.passes.size());
    };
    // Plan::batched_tail: the batch's rows [b, row_end) and, per reduction of the first pass,
    // its values by lane (a logsumexp's max, and the log1p's argument, then the log1p); and the
    // gathers taken before the passes, whose elements a gradient written in place overwrites
    struct Kept {
        int node;
        AllocaInst *value, *rest;
    };
    std::vector<Kept> kept;
    AllocaInst* batch = nullptr;
    Value *b = nullptr, *row_end = re;
    BasicBlock *flush = nullptr, *bcond = nullptr;
    if (P.batched_tail) {
        for (int red : P.passes[0].reductions)
            kept.push_back({red, B.CreateAlloca(e.VF), P.g[red].op == Op::logsumexp ? B.CreateAlloca(e.VF) : nullptr});
        for (int i = 0; i < P.g.size(); ++i)
            if (gathered_before_passes(i)) kept.push_back({i, B.CreateAlloca(e.VF), nullptr});
        batch = B.CreateAlloca(e.I64);
        B.CreateStore(rb, batch);
        bcond = BasicBlock::Create(C, "batch.cond", fn);
        BasicBlock* bbody = BasicBlock::Create(C, "batch.body", fn);
        flush = BasicBlock::Create(C, "batch.flush", fn);
        B.CreateBr(bcond);
        B.SetInsertPoint(bcond);
        b = B.CreateLoad(e.I64, batch);
        B.CreateCondBr(B.CreateICmpSLT(b, re), bbody, done);
        B.SetInsertPoint(bbody);
        row_end = B.CreateBinaryIntrinsic(Intrinsic::smin, B.CreateAdd(b, ConstantInt::get(e.I64, static_cast<std::uint64_t>(e.VW))), re);
        for (const Kept& k : kept)
            if (k.rest) B.CreateStore(ConstantFP::get(e.VF, 0.0), k.rest);  // skipped rows' lanes: 0, not garbage
        B.CreateStore(b, row);
    }
    B.CreateBr(cond);
    B.SetInsertPoint(cond);
    Value* r = B.CreateLoad(e.I64, row);
    B.CreateCondBr(B.CreateICmpSLT(r, row_end), body, P.batched_tail ? flush : done);
    B.SetInsertPoint(body);

    // row bases and labels
    auto row_setup = [&](Value* at) {
        e.row_base.assign(ns, nullptr);
        for (std::size_t s = 0; s < ns; ++s)
            e.row_base[s] = B.CreateGEP(e.storage(P.slots[s].dtype), e.slot_ptr[s], B.CreateMul(at, e.slot_stride[s]));
        e.label_val.assign(static_cast<std::size_t>(P.g.size()), nullptr);
        for (std::size_t s = 0; s < ns; ++s)
            if (!P.slots[s].output && P.slots[s].kind == InputKind::label) {
                Value* y = B.CreateLoad(e.storage(P.slots[s].dtype), e.row_base[s]);
                if (P.slots[s].dtype == DType::i32) y = B.CreateSExt(y, e.I64);
                e.label_val[static_cast<std::size_t>(P.slot_node[s])] = y;
            }
    };
    row_setup(r);
    e.kept_ready = false;  // Plan::kept_node: stored by this row's max loop, when it has run
    // Plan::batched_tail: this row's lane of a kept value
    Value* lane = P.batched_tail ? B.CreateSub(r, b) : nullptr;
    auto keep_lane = [&](AllocaInst* a, Value* v) { B.CreateStore(v, B.CreateGEP(e.F, a, lane)); };
    if (P.max_ahead) {
        Value* r1 = B.CreateAdd(r, ConstantInt::get(e.I64, 1));
        Value* more = B.CreateICmpSLT(r1, re);
        e.row_index = r;
        e.next_row = B.CreateSelect(more, r1, ConstantInt::get(e.I64, static_cast<std::uint64_t>(-1)));
        e.next_base.assign(ns, nullptr);
        for (std::size_t s = 0; s < ns; ++s)
            e.next_base[s] = B.CreateSelect(more, B.CreateGEP(e.storage(P.slots[s].dtype), e.row_base[s], e.slot_stride[s]), e.row_base[s]);
    }
    // a label equal to ignore_index: the row is skipped before anything else of it is read
    {
        Value* ign = nullptr;
        for (std::size_t s = 0; s < ns; ++s)
            if (!P.slots[s].output && P.slots[s].kind == InputKind::label) {
                Value* eq = B.CreateICmpEQ(e.label_val[static_cast<std::size_t>(P.slot_node[s])], ignore);
                ign = ign ? B.CreateOr(ign, eq) : eq;
            }
        if (ign) skip_if(ign, 1, "row.valid");
    }

    for (std::size_t k = 0; k < P.passes.size(); ++k) {
        e.new_stage();
        // gathers read the row: do them before the passes that may overwrite it
        for (int i = 0; i < P.g.size(); ++i)
            if (gathered_before_passes(i) && P.depth[static_cast<std::size_t>(i)] <= static_cast<int>(k)) e.S(i);
        for (const Kept& kg : kept)  // the batch keeps them as they are taken (no value live through the passes)
            if (P.g[kg.node].op == Op::at && P.depth[static_cast<std::size_t>(kg.node)] == static_cast<int>(k)) keep_lane(kg.value, e.S(kg.node));
        if (P.pipelined && k + 1 == P.passes.size()) {
            e.pending_carry();  // the next row's exp loop, or the end, runs this pass
            continue;
        }
        const std::vector<Pass> groups = P.pass_groups(P.passes[k]);
        for (std::size_t j = 0; j < groups.size(); ++j) e.emit_pass(groups[j], k + 1 == P.passes.size() && j + 1 == groups.size(), k == 0 && P.max_ahead);
        // a logsumexp of -inf (every element -inf: a fully masked row): the row is skipped
        Value* neg = nullptr;
        for (int red : P.passes[k].reductions)
            if (P.g[red].op == Op::logsumexp) {
                const auto n = static_cast<std::size_t>(red);
                Value* c = P.batched_tail ? e.lse_is_neginf(e.lse_hi[n], e.lse_rest[n]) : e.isneginf(e.reduced[n]);
                neg = neg ? B.CreateOr(neg, c) : c;
            }
        if (neg) skip_if(neg, 2, "row.unmasked");
    }
    // the final stage: scalar outputs stored and summed
    auto final_stage = [&] {
        e.new_stage();
        for (std::size_t s = 0; s < ns; ++s) {
            if (!acc[s]) continue;
            Value* v = e.S(P.slot_node[s]);
            Value* d = e.F->isDoubleTy() ? v : B.CreateFPExt(v, e.D);
            B.CreateStore(B.CreateFAdd(B.CreateLoad(e.D, acc[s]), d), acc[s]);
            // an unbound per-row output points at a scratch value with stride 0 (no branch here)
            const DType dt = P.slots[s].dtype;
            B.CreateAlignedStore(e.to_storage(v, dt), e.row_base[s], Align(size_of(dt)));
        }
    };
    if (P.batched_tail) {
        for (const Kept& k : kept) {
            const auto n = static_cast<std::size_t>(k.node);
            if (P.g[k.node].op == Op::at) continue;  // kept already
            keep_lane(k.value, k.rest ? e.lse_hi[n] : e.reduced[n]);
            if (k.rest) keep_lane(k.rest, e.lse_rest[n]);
        }
    } else {
        final_stage();
    }
    B.CreateStore(ConstantInt::get(I8, 0), B.CreateGEP(I8, state, r));
    B.CreateBr(next);

    if (skip) {
        // every output of the row is 0; scalar outputs add nothing to the sums
        B.SetInsertPoint(skip);
        PHINode* why = B.CreatePHI(I8, static_cast<unsigned>(skip_from.size()));
        for (auto& [from, w] : skip_from) why->addIncoming(ConstantInt::get(I8, static_cast<std::uint64_t>(w)), from);
        B.CreateStore(why, B.CreateGEP(I8, state, r));
        Value* masked = B.CreateICmpEQ(why, ConstantInt::get(I8, 2));
        B.CreateStore(B.CreateFAdd(B.CreateLoad(e.D, skipped_acc), B.CreateSelect(masked, ConstantFP::get(e.D, 1.0), ConstantFP::get(e.D, 0.0))),
                      skipped_acc);
        bool any_vector = false;
        for (std::size_t s = 0; s < ns; ++s) any_vector = any_vector || (P.slots[s].output && P.slots[s].vector);
        if (any_vector)
            e.emit_loop(ConstantInt::get(e.I64, 0), e.K, [&](Value* i, Value* mask, int) {
                for (std::size_t s = 0; s < ns; ++s) {
                    if (!P.slots[s].output || !P.slots[s].vector) continue;
                    const DType d = P.slots[s].dtype;
                    Value* z = Constant::getNullValue(FixedVectorType::get(e.storage(d), static_cast<unsigned>(e.VW)));
                    Value* p = e.element_ptr(static_cast<int>(s), i);
                    if (mask) B.CreateMaskedStore(z, p, Align(size_of(d)), mask);
                    else B.CreateAlignedStore(z, p, Align(size_of(d)));
                }
            });
        for (std::size_t s = 0; s < ns; ++s)
            if (acc[s]) {
                const DType dt = P.slots[s].dtype;
                B.CreateAlignedStore(e.to_storage(e.cf(0.0), dt), e.row_base[s], Align(size_of(dt)));
            }
        B.CreateBr(next);
    }

    B.SetInsertPoint(next);
    B.CreateStore(B.CreateAdd(r, ConstantInt::get(e.I64, 1)), row);
    B.CreateBr(cond);

    if (P.batched_tail) {
        // the batch's log1p, then the final stage of each of its rows that was not skipped
        B.SetInsertPoint(flush);
        for (const Kept& k : kept)
            if (k.rest) B.CreateStore(emit_log1p(B, B.CreateLoad(e.VF, k.rest)), k.rest);
        BasicBlock* fcond = BasicBlock::Create(C, "tail.cond", fn);
        BasicBlock* fbody = BasicBlock::Create(C, "tail.body", fn);
        BasicBlock* frow = BasicBlock::Create(C, "tail.row", fn);
        BasicBlock* fnext = BasicBlock::Create(C, "tail.next", fn);
        BasicBlock* fdone = BasicBlock::Create(C, "tail.done", fn);
        B.CreateStore(b, row);
        B.CreateBr(fcond);
        B.SetInsertPoint(fcond);
        Value* r2 = B.CreateLoad(e.I64, row);
        B.CreateCondBr(B.CreateICmpSLT(r2, row_end), fbody, fdone);
        B.SetInsertPoint(fbody);
        B.CreateCondBr(B.CreateICmpEQ(B.CreateLoad(I8, B.CreateGEP(I8, state, r2)), ConstantInt::get(I8, 0)), frow, fnext);
        B.SetInsertPoint(frow);
        row_setup(r2);
        std::fill(e.scal.begin(), e.scal.end(), nullptr);  // the row's scalars, anew
        e.cache_M = e.cache_total = e.cache_rest = nullptr;  // the row body's: a softmax here is from the lse
        Value* tail_lane = B.CreateSub(r2, b);
        for (const Kept& k : kept) {
            const auto n = static_cast<std::size_t>(k.node);
            Value* v = B.CreateLoad(e.F, B.CreateGEP(e.F, k.value, tail_lane));
            if (k.rest) {
                e.lse_hi[n] = v;
                e.lse_lo[n] = B.CreateLoad(e.F, B.CreateGEP(e.F, k.rest, tail_lane));
                v = B.CreateFAdd(v, e.lse_lo[n]);
            }
            e.reduced[n] = v;
        }
        final_stage();
        B.CreateBr(fnext);
        B.SetInsertPoint(fnext);
        B.CreateStore(B.CreateAdd(r2, ConstantInt::get(e.I64, 1)), row);
        B.CreateBr(fcond);
        B.SetInsertPoint(fdone);
        B.CreateStore(row_end, batch);
        B.CreateBr(bcond);
    }

    B.SetInsertPoint(done);
    if (P.pipelined) e.pending_pass();
    for (std::size_t s = 0; s < ns; ++s)
        if (acc[s]) {
            Value* p = B.CreateConstGEP1_64(e.D, sums, s);
            B.CreateStore(B.CreateFAdd(B.CreateLoad(e.D, p), B.CreateLoad(e.D, acc[s])), p);
        }
    {
        Value* p = B.CreateConstGEP1_64(e.D, sums, ns);
        B.CreateStore(B.CreateFAdd(B.CreateLoad(e.D, p), B.CreateLoad(e.D, skipped_acc)), p);
    }
    // streaming stores are weakly ordered: fenced before the caller (another thread) reads them
    if (P.stream_min_bytes) B.CreateIntrinsic(Intrinsic::x86_sse_sfence, {}, {});
    B.CreateRetVoid();
}

// Plan::pipelined. A row's last pass (its gradient from the kept exps, onehots and the row's
// scalars, which it keeps: jit::pending_row_scalars) waits, as the pending row, for the next
// row's exp loop: there, block by block, each vector of the pending row is read from the
// scratch row before this row's exp replaces it, computed and stored. The scratch
// row serves both (each element read, then written, once). With no row pending (the first row
// of a call, or after a fully masked one) the pending row is the scratch row itself: each
// vector is stored there just before this row's exp replaces it, so that it is one loop
// (emitting it twice, with and without a pending row, cost 28% more compile() at K = 32000)
// and no memory more (Plan::pipelined wants the gradient in the compute type). A row skipped
// for its label leaves the pending one pending; after the rows, the last one's pass runs alone.
void Em::pending_init() {
    const DType d = P.slots[P.output_slot(P.passes.back().writes[0])].dtype;
    pending.row = alloca(B.getInt1Ty());
    pending.out = alloca(B.getPtrTy());
    pending.M = alloca(F);
    pending.total = alloca(F);
    pending.factor = alloca(F);
    pending.stream = alloca(B.getInt1Ty());
    pending.y = alloca(I64);
    pending.at_y = alloca(storage(d));
    pending.label = !P.labels_after_loop(P.passes.back(), true).empty();
    std::vector<int> scalars;
    pending_row_scalars(P, P.g.outputs()[static_cast<std::size_t>(P.passes.back().writes[0])].root, scalars);
    for (int i : scalars) pending.scalars.emplace_back(i, alloca(F));
    for (AllocaInst* a : {pending.M, pending.factor}) B.CreateStore(cf(0.0), a);  // then a past row's
    for (auto& [i, a] : pending.scalars) B.CreateStore(cf(0.0), a);
    B.CreateStore(cf(1.0), pending.total);
    B.CreateStore(ConstantInt::get(I64, 0), pending.y);
    pending_none();
}

// The scratch row stands in, with plain stores (its factor and label element are never used).
void Em::pending_none() {
    B.CreateStore(B.getFalse(), pending.row);
    B.CreateStore(scratch, pending.out);
    B.CreateStore(B.getFalse(), pending.stream);
}

void Em::pending_carry() {
    const Pass& ps = P.passes.back();
    const std::size_t slot = P.output_slot(ps.writes[0]);
    if (cache_sum) whole_row_softmax();  // the row is one block: its factor, and the label's element from it
    B.CreateStore(row_base[slot], pending.out);
    B.CreateStore(cache_M, pending.M);
    B.CreateStore(cache_total, pending.total);
    if (row_factor) B.CreateStore(row_factor, pending.factor);
    for (auto& [i, a] : pending.scalars) B.CreateStore(S(i), a);
    // its whole vectors are aligned wherever the row starts (pending_skewed_start)
    B.CreateStore(P.stream_min_bytes ? stream_call : B.getFalse(), pending.stream);
    if (pending.label) {  // while this row's inputs are intact
        const LabelElement a = label_element(P.labels_after_loop(ps, true)[0], ps.writes[0]);
        B.CreateStore(a.y, pending.y);
        B.CreateStore(a.v, pending.at_y);
    }
    B.CreateStore(B.getTrue(), pending.row);
    cache_factor = cache_top = row_factor = row_top = nullptr;
}

Value* Em::pending_block_factor(Value* b0) {
    if (P.row_is_one_block()) return B.CreateLoad(F, pending.factor);
    Value* bm = B.CreateLoad(F, scratch_block_max(B.CreateUDiv(b0, ConstantInt::get(I64, static_cast<std::int64_t>(P.block)))));
    return softmax_factor(bm, B.CreateLoad(F, pending.M), B.CreateLoad(F, pending.total));
}

// The write's value as the pass would compute it, at the pending row's factor and scalars (the
// current row's set aside meanwhile), its onehots 0.
void Em::pending_vector(Value* i, Value* mask) {
    const int w = P.passes.back().writes[0];
    const std::size_t slot = P.output_slot(w);
    const DType d = P.slots[slot].dtype;
    Value* const factor = cache_factor;
    Value* const top = cache_top;
    const bool off = onehot_off;
    std::vector<Value*> current;
    for (auto& [n, a] : pending.scalars) {
        current.push_back(scal[static_cast<std::size_t>(n)]);
        scal[static_cast<std::size_t>(n)] = B.CreateLoad(F, a);
    }
    cache_factor = splat(pending_factor);
    cache_top = nullptr;
    onehot_off = true;
    Ctx c = lanes_ctx(i, mask);
    Value* v = B.CreateFMul(V(P.g.outputs()[static_cast<std::size_t>(w)].root, c), splat(slot_scale[slot]));
    cache_factor = factor;
    cache_top = top;
    onehot_off = off;
    for (std::size_t k = 0; k < current.size(); ++k) scal[static_cast<std::size_t>(pending.scalars[k].first)] = current[k];
    Value* out = B.CreateGEP(storage(d), B.CreateLoad(B.getPtrTy(), pending.out), i);
    Value* stream = P.stream_min_bytes ? B.CreateLoad(B.getInt1Ty(), pending.stream) : nullptr;
    if (stream && pending.label) stream = streams_but_label(stream, i, B.CreateLoad(I64, pending.y));
    store_output(to_storage(v, d), out, d, mask, stream);
}

// The pending row's stores and this row's loads, at the same index in rows whose distance is a
// multiple of 4 KB (rows of 1024 fp32 elements in place, or arrays whose bases are as far apart
// as the rows: 64x256000 and 512x32768 with the gradient and logits both page-aligned), have
// addresses equal in their low 12 bits, which the CPU takes for a dependence at first: fwd+bwd
// 64x256000 11.8 GB/s, with the gradient 1 KB further 14.0; 512x32768 12.3 against 16.5. The
// pending row runs ahead of this row's index by a skew that puts its stores half a page away
// from this row's loads (a whole number of vectors, returned here), plus the elements that
// align its stores (pending_skewed_start).
Value* Em::pending_row_skew() {
    std::size_t logits = 0;  // the row's first vector input, which the exp loop reads
    while (P.slots[logits].output || !P.slots[logits].vector) ++logits;
    Value* apart = B.CreateSub(B.CreatePtrToInt(B.CreateLoad(B.getPtrTy(), pending.out), I64), B.CreatePtrToInt(row_base[logits], I64));
    Value* bytes = B.CreateAnd(B.CreateSub(ConstantInt::get(I64, 2048), apart), ConstantInt::get(I64, 4095));
    const auto vector_bytes = static_cast<std::uint64_t>(VW) * size_of(P.compute);
    return B.CreateUDiv(B.CreateAnd(bytes, ConstantInt::get(I64, ~(vector_bytes - 1))), ConstantInt::get(I64, size_of(P.compute)));
}

// A block of the pending row before the exp loop: its elements up to its first aligned store (a
// masked vector), its whole aligned vectors up to `ahead` elements after those, and its part of
// a vector past its last whole one (masked). The exp loop then does the rest
// (pending_skewed_vector). Aligned, every whole vector of any row streams: rows of a length not
// a multiple of the vector width, or a gradient not on a vector boundary, had their stores
// across cache lines and plain (fwd+bwd 512x32000 with the gradient 4 bytes off its boundary
// 8.0 GB/s against 15.9). (One loop of masked vectors for the first two, emitted once, stored
// them plainly: 4096x2000 12 -> 8.3 GB/s.)
void Em::pending_skewed_start(Value* b0, Value* be, Value* ahead) {
    const auto vector_bytes = static_cast<std::uint64_t>(VW) * size_of(P.compute);
    Value* out = B.CreatePtrToInt(B.CreateGEP(F, B.CreateLoad(B.getPtrTy(), pending.out), b0), I64);
    Value* align = B.CreateUDiv(B.CreateAnd(B.CreateNeg(out), ConstantInt::get(I64, vector_bytes - 1)), ConstantInt::get(I64, size_of(P.compute)));
    Value* len = B.CreateSub(be, b0);
    Value* head = B.CreateSelect(B.CreateICmpULT(align, len), align, len);
    Value* whole = B.CreateAnd(B.CreateSub(len, head), ConstantInt::get(I64, ~static_cast<std::uint64_t>(VW - 1)));
    Value* first = B.CreateAdd(b0, head);  // the first aligned store
    pending_end = B.CreateAdd(first, whole);
    pending_skew = B.CreateAdd(head, B.CreateSelect(B.CreateICmpULT(ahead, whole), ahead, whole));
    auto part = [&](Value* at, Value* end) {  // [at, end), less than a vector
        BasicBlock* run = BasicBlock::Create(C, "pending.part", fn);
        BasicBlock* done = BasicBlock::Create(C, "pending.part.done", fn);
        B.CreateCondBr(B.CreateICmpULT(at, end), run, done);
        B.SetInsertPoint(run);
        pending_vector(at, lanes_before(at, end));
        B.CreateBr(done);
        B.SetInsertPoint(done);
    };
    part(b0, first);
    emit_loop(first, B.CreateAdd(b0, pending_skew), [&](Value* i, Value* mask, int) { pending_vector(i, mask); }, 1, false, true);
    part(pending_end, be);
}

void Em::pending_skewed_vector(Value* i) {
    Value* j = B.CreateAdd(i, pending_skew);
    BasicBlock* run = BasicBlock::Create(C, "pending.vector", fn);
    BasicBlock* done = BasicBlock::Create(C, "pending.vector.done", fn);
    B.CreateCondBr(B.CreateICmpULT(j, pending_end), run, done);
    B.SetInsertPoint(run);
    pending_vector(j, nullptr);
    B.CreateBr(done);
    B.SetInsertPoint(done);
}

void Em::pending_finish() {
    if (pending.label) {  // a row was pending: its element at the label (not into the scratch row)
        const std::size_t slot = P.output_slot(P.passes.back().writes[0]);
        BasicBlock* put = BasicBlock::Create(C, "pending.label", fn);
        BasicBlock* next = BasicBlock::Create(C, "pending.done", fn);
        B.CreateCondBr(B.CreateLoad(B.getInt1Ty(), pending.row), put, next);
        B.SetInsertPoint(put);
        const LabelElement a{slot, B.CreateLoad(I64, pending.y), B.CreateLoad(storage(P.slots[slot].dtype), pending.at_y)};
        store_label_element(a, B.CreateLoad(B.getPtrTy(), pending.out));
        B.CreateBr(next);
        B.SetInsertPoint(next);
    }
    pending_none();
}

void Em::pending_pass() {
    BasicBlock* run = BasicBlock::Create(C, "pending.pass", fn);
    BasicBlock* exit = BasicBlock::Create(C, "pending.exit", fn);
    B.CreateCondBr(B.CreateLoad(B.getInt1Ty(), pending.row), run, exit);
    B.SetInsertPoint(run);
    // from the row's first element, its vectors need not be aligned: plain stores (one row a call)
    B.CreateStore(B.getFalse(), pending.stream);
    for_each_block([&](Value* b0, Value* be) {
        pending_factor = pending_block_factor(b0);
        emit_loop(b0, be, [&](Value* i, Value* mask, int) { pending_vector(i, mask); });
        pending_factor = nullptr;
    });
    pending_finish();
    B.CreateBr(exit);
    B.SetInsertPoint(exit);
}

}  // namespace lossjit::jit::codegen_detail
