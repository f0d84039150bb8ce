// Across rows (Plan::rows): see the comment of emit_across_rows.
#include "codegen_emitter.hpp"

namespace lossjit::jit::codegen_detail {
namespace {

// The transpose of a VW x VW matrix given as its VW rows (null: a row of no interest), as the
// classic register transpose, in stages X86 selects at once as single instructions (a generic
// two-input shuffle costs ISel many matching attempts and may become a permute with a constant
// index vector): first within every 128-bit block (unpacklo/hi_ps, then unpacklo/hi_pd: a 4 x 4
// transpose of each group of 4 rows), then across blocks (vperm2f128, shuf_f32x4: a transpose
// of the blocks). Where each element lands is tracked as the shuffles are built, so the columns
// are found in the result whatever order the stages leave them in. VW log2(VW) shuffles.
struct Tracked {
    Value* v;
    std::vector<unsigned> at;  // per lane: row * VW + column of the element it holds
};

Tracked shuffle(IRBuilderBase& B, const Tracked& x, const Tracked& y, const SmallVector<int, 32>& mask) {
    Tracked t{B.CreateShuffleVector(x.v, y.v, mask), {}};
    const auto n = static_cast<int>(x.at.size());
    for (int m : mask) t.at.push_back(m < n ? x.at[static_cast<std::size_t>(m)] : y.at[static_cast<std::size_t>(m - n)]);
    return t;
}

// pairs (m[first + 2i step], m[first + (2i + 1) step]) of the n vectors m[first + k step] shuffled
// by (lo, hi) into m[first + i step] and m[first + (i + n/2) step]
void unshuffle(IRBuilderBase& B, std::vector<Tracked>& m, unsigned first, unsigned step, unsigned n, const SmallVector<int, 32>& lo,
               const SmallVector<int, 32>& hi) {
    std::vector<Tracked> out(n);
    for (unsigned i = 0; i < n / 2; ++i) {
        const Tracked& x = m[first + 2 * i * step];
        const Tracked& y = m[first + (2 * i + 1) * step];
        out[i] = shuffle(B, x, y, lo);
        out[i + n / 2] = shuffle(B, x, y, hi);
    }
    for (unsigned i = 0; i < n; ++i) m[first + i * step] = std::move(out[i]);
}

std::vector<Value*> transpose(IRBuilderBase& B, const std::vector<Value*>& rows, unsigned VW, Type* vt) {
    const unsigned per = std::min(VW, 128 / vt->getScalarSizeInBits());  // elements per block
    const unsigned blocks = VW / per;
    std::vector<Tracked> m(VW);
    for (unsigned r = 0; r < VW; ++r) {
        m[r].v = rows[r] ? rows[r] : PoisonValue::get(vt);
        for (unsigned l = 0; l < VW; ++l) m[r].at.push_back(r * VW + l);
    }
    // within blocks, units of w elements: lo = x0 y0 x1 y1 .., hi the same of the block's
    // upper halves (unpcklps, unpckhps for w = 1; unpcklpd, unpckhpd for w = 2 floats)
    for (unsigned w = 1; w < per; w *= 2) {
        SmallVector<int, 32> lo, hi;
        for (unsigned p = 0; p < VW; ++p) {
            const unsigned base = p / per * per, u = p % per / w, src = (u % 2 ? VW : 0) + base + u / 2 * w + p % w;
            lo.push_back(static_cast<int>(src));
            hi.push_back(static_cast<int>(src + per / 2));
        }
        for (unsigned g = 0; g < VW; g += per) unshuffle(B, m, g, 1, per, lo, hi);
    }
    // An arithmetic fence (no instruction) between the two halves: the X86 DAG combiner looks for
    // a cheaper shuffle through every chain of shuffles it meets, and through four stages that
    // search was half of the compile time (K = 10: 214 M -> 141 M instructions in compile(), the
    // same code; poison rows stay constants, so their shuffles still fold away)
    if (blocks > 1)
        for (Tracked& t : m)
            if (!isa<Constant>(t.v)) t.v = B.CreateArithmeticFence(t.v, t.v->getType());
    // across blocks: the even blocks of x then of y, and the odd ones (vperm2f128, shuf_f32x4)
    for (unsigned s = 1; s < blocks; s *= 2) {
        SmallVector<int, 32> even, odd;
        for (unsigned p = 0; p < VW; ++p) {
            const unsigned q = p / per, src = (q < blocks / 2 ? 2 * q * per : VW + 2 * (q - blocks / 2) * per) + p % per;
            even.push_back(static_cast<int>(src));
            odd.push_back(static_cast<int>(src + per));
        }
        for (unsigned c = 0; c < per; ++c) unshuffle(B, m, c, per, blocks, even, odd);
    }
    std::vector<Value*> cols(VW, nullptr);
    for (const Tracked& t : m) {
        const unsigned j = t.at[0] % VW;
        for (unsigned l = 0; l < VW; ++l)
            if (t.at[l] != l * VW + j) throw error("codegen: the row transpose left lane " + std::to_string(l) + " misplaced");
        cols[j] = t.v;
    }
    return cols;
}

}  // namespace

// For short rows (K small and known) the lanes are VW consecutive rows: every reduction is a
// lane-wise accumulation over the columns j = 0..K-1 (no horizontal reductions), per-row scalars
// (the logsumexp, the loss) are vectors. A block's vector inputs are staged once as K column
// vectors in a stack array: each row read by one vector load per VW columns, then transposed in
// registers (no gathers: they cost several times more). Vector outputs go the other way: columns
// into a stack array, transposed into rows, one masked store per row and VW columns. Each pass is
// a loop over j; a logsumexp reads its argument from a stack array of K vectors (the staged
// input itself, or computed in its max loop), and keeps its exps in another when the last pass
// reads the softmax (Plan::cache_lse), so that each element is read and exp'ed once.

void emit_across_rows(Em& e, Value* rb, Value* re, Value* sums, const std::vector<AllocaInst*>& acc, Value* ignore, Value* state) {
    auto& B = e.B;
    auto& C = e.C;
    const Plan& P = e.P;
    Function* fn = e.fn;
    const std::size_t ns = P.slots.size();
    const unsigned VW = static_cast<unsigned>(e.VW);
    e.rows = true;
    e.Kf = e.splat(e.Kf);
    auto* VD = FixedVectorType::get(e.D, VW);
    auto* VI64 = FixedVectorType::get(e.I64, VW);
    Type* I8 = Type::getInt8Ty(C);
    auto* VI8 = FixedVectorType::get(I8, VW);
    Value* lanes = e.lane_iota();
    e.lane_off.assign(ns, nullptr);
    for (std::size_t s = 0; s < ns; ++s) e.lane_off[s] = B.CreateMul(lanes, e.splat(B.CreateTrunc(e.slot_stride[s], e.I32)));
    // per scalar output: a vector of per-lane running sums (double); the count of masked rows
    std::vector<AllocaInst*> vacc(ns, nullptr);
    for (std::size_t s = 0; s < ns; ++s)
        if (acc[s]) {
            vacc[s] = e.alloca(VD);
            B.CreateStore(ConstantFP::get(VD, 0.0), vacc[s]);
        }
    AllocaInst* masked_acc = e.alloca(e.D);
    B.CreateStore(ConstantFP::get(e.D, 0.0), masked_acc);
    // per logsumexp: the argument and (cached) the exps, K vectors each
    const auto Kc = static_cast<std::uint64_t>(P.longest());
    std::vector<AllocaInst*> arg_of(static_cast<std::size_t>(P.g.size()), nullptr), exp_of(static_cast<std::size_t>(P.g.size()), nullptr);
    auto array = [&] {
        IRBuilder<> eb(&fn->getEntryBlock(), fn->getEntryBlock().begin());
        AllocaInst* a = eb.CreateAlloca(ArrayType::get(e.VF, Kc));
        a->setAlignment(Align(64));
        return a;
    };
    const std::vector<bool> live = live_nodes(P);
    // staged columns: of every vector input the outputs use, and of every vector output
    e.rows_cols.assign(ns, nullptr);
    std::vector<AllocaInst*> out_cols(ns, nullptr);
    for (std::size_t s = 0; s < ns; ++s) {
        if (!P.slots[s].vector) continue;
        if (P.slots[s].output) out_cols[s] = array();
        else if (live[static_cast<std::size_t>(P.slot_node[s])]) e.rows_cols[s] = array();
    }
    std::vector<bool> arg_staged(static_cast<std::size_t>(P.g.size()), false);
    for (const Pass& ps : P.passes)
        for (int r : ps.reductions)
            if (P.g[r].op == Op::logsumexp) {
                // the argument: an input's staged columns as they are, else computed into its own
                const int a = P.g[r].a;
                const int in_slot = P.g[a].op == Op::input ? e.slot_of[static_cast<std::size_t>(a)] : -1;
                AllocaInst* staged = in_slot >= 0 ? e.rows_cols[static_cast<std::size_t>(in_slot)] : nullptr;
                arg_staged[static_cast<std::size_t>(r)] = staged != nullptr;
                arg_of[static_cast<std::size_t>(r)] = staged ? staged : array();
                if (r == P.cache_lse) e.rows_exp = exp_of[static_cast<std::size_t>(r)] = array();
            }

    AllocaInst* row = e.alloca(e.I64);
    B.CreateStore(rb, row);
    BasicBlock* cond = BasicBlock::Create(C, "rows.cond", fn);
    BasicBlock* body = BasicBlock::Create(C, "rows.body", fn);
    BasicBlock* done = BasicBlock::Create(C, "rows.done", fn);
    B.CreateBr(cond);
    B.SetInsertPoint(cond);
    Value* r0 = B.CreateLoad(e.I64, row);
    B.CreateCondBr(B.CreateICmpSLT(r0, re), body, done);
    B.SetInsertPoint(body);
    // valid: lanes holding rows of [row_begin, row_end); skipped rows (an ignored label, a
    // logsumexp of -inf) are read no further than their label and get 0 in every output
    Value* valid = B.CreateICmpSLT(B.CreateAdd(e.splat(B.CreateTrunc(r0, e.I32)), lanes), e.splat(B.CreateTrunc(re, e.I32)));
    e.rowmask = valid;
    e.row_base.assign(ns, nullptr);
    for (std::size_t s = 0; s < ns; ++s)
        e.row_base[s] = B.CreateGEP(e.storage(P.slots[s].dtype), e.slot_ptr[s], B.CreateMul(r0, e.slot_stride[s]));
    // Plan::write_prefetched: each line a row reaches from its start, row by row from the
    // first, one add each (offsets from the block's base would be 16 loop invariants, hoisted
    // and spilled). One prefetch per line of the block's span instead ran slower (1048576x24
    // 0.80x); one, two and four blocks ahead alike. compile() of the K = 10 loss and gradient
    // kernel: 134.5 -> 140.5 M instructions.
    for (std::size_t s = 0; s < ns; ++s) {
        if (!P.write_prefetched(s)) continue;
        Type* st = e.storage(P.slots[s].dtype);
        Value* row = B.CreateGEP(st, e.row_base[s], B.CreateMul(ConstantInt::get(e.I64, 2 * VW), e.slot_stride[s]));
        for (unsigned l = 0; l < VW; ++l, row = B.CreateGEP(st, row, e.slot_stride[s]))
            for (std::size_t at = 0; at < P.K * size_of(P.slots[s].dtype); at += 64)
                e.prefetch(B.CreateConstGEP1_64(I8, row, at), true, 3);
    }
    e.label_val.assign(static_cast<std::size_t>(P.g.size()), nullptr);
    Value* ign = Constant::getNullValue(e.rowmask->getType());
    for (std::size_t s = 0; s < ns; ++s)
        if (!P.slots[s].output && P.slots[s].kind == InputKind::label) {
            Value* y = e.rows_load_column(static_cast<int>(s));
            if (P.slots[s].dtype == DType::i32) y = B.CreateSExt(y, VI64);
            ign = B.CreateOr(ign, B.CreateAnd(valid, B.CreateICmpEQ(y, e.splat(ignore))));
            // an ignored label reads as 0 (a valid index for gathers, which the load mask skips)
            e.label_val[static_cast<std::size_t>(P.slot_node[s])] = B.CreateSelect(ign, Constant::getNullValue(VI64), y);
        }
    e.rowmask = B.CreateAnd(valid, B.CreateNot(ign));
    Value* neg = Constant::getNullValue(e.rowmask->getType());  // a logsumexp of -inf so far
    std::fill(e.scal.begin(), e.scal.end(), nullptr);
    std::fill(e.reduced.begin(), e.reduced.end(), nullptr);
    std::fill(e.lse_hi.begin(), e.lse_hi.end(), nullptr);
    std::fill(e.lse_lo.begin(), e.lse_lo.end(), nullptr);

    // for (j = 0; j < K; ++j) body(j): a loop, or unrolled where the block's columns go straight
    // from the transposes into a max loop, or from a loop of writes alone into the transposes
    // (rows of one chunk: unroll_short). Then the columns stay in registers instead of a round
    // trip through the stack, and the loop's counting goes (65536 x 10 fwd+bwd 1.08x, fwd
    // 1.04x, bf16 1.05x; 32768 x 32 1.07x). compile() at K = 10: 126 -> 142 M instructions.
    // The exp loops stay loops: unrolled as well, they ran no faster and added 40% more.
    const bool unroll_short = P.K != 0 && P.K <= static_cast<std::size_t>(VW);
    // for (i = 0; i < K; i += step) body(i), as a loop (K >= 1)
    auto loop_to_k = [&](const char* name, unsigned step, const std::function<void(Value*)>& body) {
        BasicBlock* pre = B.GetInsertBlock();
        BasicBlock* lb = BasicBlock::Create(C, name, fn);
        BasicBlock* lx = BasicBlock::Create(C, std::string(name) + ".exit", fn);
        B.CreateBr(lb);
        B.SetInsertPoint(lb);
        PHINode* i = B.CreatePHI(e.I64, 2);
        i->addIncoming(ConstantInt::get(e.I64, 0), pre);
        body(i);
        Value* next = B.CreateAdd(i, ConstantInt::get(e.I64, step));
        i->addIncoming(next, B.GetInsertBlock());
        B.CreateCondBr(B.CreateICmpULT(next, e.K), lb, lx);
        B.SetInsertPoint(lx);
    };
    auto columns = [&](const std::function<void(Value*)>& f, bool unrolled) {
        if (!unrolled) return loop_to_k("col", 1, f);
        for (unsigned j = 0; j < static_cast<unsigned>(P.K); ++j) f(ConstantInt::get(e.I64, j));
    };
    auto slot_ptr_of = [&](AllocaInst* a, Value* j) { return B.CreateGEP(e.VF, a, j); };

    // A block's rows of a vector slot in chunks of VW columns: the chunk from column c0 holds
    // columns c0 .. c0 + width - 1 of the VW rows, row l one (masked) vector load or store at
    // its row base, whatever the stride; a VW x VW transpose turns rows into columns and back.
    // For generic K the chunks are a loop, each of width VW (columns past K are staged but never
    // read, and never stored) with its mask from K: one loop instead of max_k / VW chunks
    // spelled out, which compile() would pay for in every generic kernel.
    auto for_chunks = [&](const std::function<void(Value* c0, unsigned width, Value* lane_ok)>& f) {
        if (P.K) {
            const auto K32 = static_cast<unsigned>(P.K);
            for (unsigned c0 = 0; c0 < K32; c0 += VW) {
                const unsigned width = std::min(VW, K32 - c0);
                f(ConstantInt::get(e.I64, c0), width, B.CreateICmpULT(lanes, e.splat(ConstantInt::get(e.I32, width))));
            }
            return;
        }
        loop_to_k("chunk", VW, [&](Value* c0) {
            Value* left = B.CreateTrunc(B.CreateSub(e.K, c0), e.I32);  // columns from c0 on
            f(c0, VW, B.CreateICmpSLT(lanes, e.splat(left)));
        });
    };
    // Row l of the block, clamped to the block's last row: a block past the end of the rows
    // loads its last row again in the lanes beyond, and stores them there first (rows are
    // stored last to first), so the last row's own store comes after. Every load and store
    // then has the constant mask of its chunk's columns: a mask per row (a compare and a move
    // to a mask register each, kept for the stores) cost more than the loads.
    Value* last_row = B.CreateSub(B.CreateSub(re, r0), ConstantInt::get(e.I64, 1));
    auto row_ptr = [&](std::size_t s, unsigned l, Value* c0) {
        Value* li = ConstantInt::get(e.I64, l);
        Value* row = l == 0 ? li : B.CreateSelect(B.CreateICmpSLT(last_row, li), last_row, li);
        Value* at = B.CreateAdd(B.CreateMul(row, e.slot_stride[s]), c0);
        return B.CreateGEP(e.storage(P.slots[s].dtype), e.row_base[s], at);
    };
    auto column_ptr = [&](AllocaInst* a, Value* c0, unsigned j) { return slot_ptr_of(a, B.CreateAdd(c0, ConstantInt::get(e.I64, j))); };
    for (std::size_t s = 0; s < ns; ++s) {
        AllocaInst* cols = e.rows_cols[s];
        if (!cols) continue;
        const DType d = P.slots[s].dtype;
        auto* vt = FixedVectorType::get(e.storage(d), VW);
        for_chunks([&](Value* c0, unsigned width, Value* lane_ok) {
            std::vector<Value*> rows;
            for (unsigned l = 0; l < VW; ++l)
                rows.push_back(e.to_compute(B.CreateMaskedLoad(vt, row_ptr(s, l, c0), Align(size_of(d)), lane_ok, Constant::getNullValue(vt)), d));
            std::vector<Value*> col = transpose(B, rows, VW, e.VF);
            for (unsigned j = 0; j < width; ++j)  // skipped rows read as 0, whatever they hold
                B.CreateAlignedStore(B.CreateSelect(e.rowmask, col[j], ConstantFP::get(e.VF, 0.0)), column_ptr(cols, c0, j), Align(64));
        });
    }
    // the vector outputs written by a pass, from their staged columns
    auto store_outputs = [&](const Pass& ps) {
        for (int w : ps.writes) {
            const std::size_t s = P.output_slot(w);
            const DType d = P.slots[s].dtype;
            for_chunks([&](Value* c0, unsigned width, Value* lane_ok) {
                std::vector<Value*> col(VW, nullptr);
                for (unsigned j = 0; j < width; ++j) col[j] = B.CreateAlignedLoad(e.VF, column_ptr(out_cols[s], c0, j), Align(64));
                std::vector<Value*> rows = transpose(B, col, VW, e.VF);
                for (unsigned l = VW; l-- > 0;) B.CreateMaskedStore(e.to_storage(rows[l], d), row_ptr(s, l, c0), Align(size_of(d)), lane_ok);
            });
        }
    };

    Value* neg_new = nullptr;  // lanes found masked by the last pass's own logsumexp
    for (std::size_t k = 0; k < P.passes.size(); ++k) {
        const Pass& ps = P.passes[k];
        const bool last = k + 1 == P.passes.size();
        e.new_stage();
        for (int i = 0; i < P.g.size(); ++i)
            if (live[static_cast<std::size_t>(i)] && P.g[i].op == Op::at && P.depth[static_cast<std::size_t>(i)] <= static_cast<int>(k)) e.S(i);
        for (int r : ps.reductions) {  // scalars the pass reads, into the stage block
            const Node& n = P.g[r];
            if (!e.vec(n.a)) e.S(n.a);
            if (n.b >= 0 && !e.vec(n.b)) e.S(n.b);
        }
        // logsumexp: the max loop, keeping the argument
        std::vector<AllocaInst*> accs(static_cast<std::size_t>(P.g.size()), nullptr), cnts(static_cast<std::size_t>(P.g.size()), nullptr);
        std::vector<Value*> safe_max(static_cast<std::size_t>(P.g.size()), nullptr), row_max(static_cast<std::size_t>(P.g.size()), nullptr);
        bool any_lse = false;
        for (int r : ps.reductions) any_lse = any_lse || P.g[r].op == Op::logsumexp;
        if (any_lse) {
            for (int r : ps.reductions)
                if (P.g[r].op == Op::logsumexp) {
                    accs[static_cast<std::size_t>(r)] = e.alloca(e.VF);
                    B.CreateStore(ConstantFP::get(e.VF, -INFINITY), accs[static_cast<std::size_t>(r)]);
                }
            columns([&](Value* j) {
                Ctx c = e.lanes_ctx(j, nullptr);
                for (int r : ps.reductions) {
                    if (P.g[r].op != Op::logsumexp) continue;
                    Value* x = e.V(P.g[r].a, c);
                    if (!arg_staged[static_cast<std::size_t>(r)]) B.CreateAlignedStore(x, slot_ptr_of(arg_of[static_cast<std::size_t>(r)], j), Align(64));
                    AllocaInst* A = accs[static_cast<std::size_t>(r)];
                    B.CreateStore(e.max_fast(B.CreateLoad(e.VF, A), x), A);
                }
            }, unroll_short);
            for (int r : ps.reductions)
                if (P.g[r].op == Op::logsumexp) {
                    Value* m = B.CreateLoad(e.VF, accs[static_cast<std::size_t>(r)]);
                    row_max[static_cast<std::size_t>(r)] = m;
                    // an all -inf row: subtract 0 instead, so exp(-inf - 0) = 0 (NaN stays NaN)
                    safe_max[static_cast<std::size_t>(r)] = B.CreateSelect(e.isneginf(m), ConstantFP::get(e.VF, 0.0), m);
                }
        }
        // the main loop: every reduction, then the writes
        for (int r : ps.reductions) {
            const Op op = P.g[r].op;
            accs[static_cast<std::size_t>(r)] = e.alloca(e.VF);
            B.CreateStore(ConstantFP::get(e.VF, op == Op::amax ? -INFINITY : 0.0), accs[static_cast<std::size_t>(r)]);
            if (op == Op::logsumexp) {
                cnts[static_cast<std::size_t>(r)] = e.alloca(e.VF);
                B.CreateStore(ConstantFP::get(e.VF, 0.0), cnts[static_cast<std::size_t>(r)]);
            }
        }
        std::vector<Value*> scale(ns, nullptr);
        for (int w : ps.writes) {
            const std::size_t slot = P.output_slot(w);
            scale[slot] = e.splat(e.slot_scale[slot]);
        }
        Value* skip = B.CreateOr(ign, neg);
        if (last && P.cache_lse >= 0) e.whole_row_softmax();  // a row is one block
        auto output_value = [&](int w, Ctx& c) {
            Value* v = B.CreateFMul(e.V(P.g.outputs()[static_cast<std::size_t>(w)].root, c), scale[P.output_slot(w)]);
            return B.CreateSelect(skip, ConstantFP::get(e.VF, 0.0), v);
        };
        // Plan::labels_after_loop: the writes' elements at the labels, per row, gathered from
        // the stack arrays before the loop, which takes onehot as 0 and puts them in at the
        // labels' columns (a compare and a select a column instead of the selects of softmax - 1)
        struct AtLabel {
            Value* y;               // <VW x i32>
            std::vector<Value*> v;  // per write
        };
        std::vector<AtLabel> at_labels;
        for (int l : P.labels_after_loop(ps, last)) {
            Value* y = e.label_index(l);
            Ctx g = e.gather_ctx(y);
            AtLabel a{B.CreateTrunc(y, FixedVectorType::get(e.I32, VW)), {}};
            for (int w : ps.writes) a.v.push_back(output_value(w, g));
            at_labels.push_back(std::move(a));
        }
        e.onehot_off = !at_labels.empty();
        columns([&](Value* j) {
            Ctx c = e.lanes_ctx(j, nullptr);
            for (int r : ps.reductions) {
                const Node& n = P.g[r];
                AllocaInst* A = accs[static_cast<std::size_t>(r)];
                Value* acc_v = B.CreateLoad(e.VF, A);
                Value* nv = nullptr;
                switch (n.op) {
                case Op::sum:
                case Op::mean: nv = B.CreateFAdd(acc_v, e.V(n.a, c)); break;
                case Op::dot: nv = B.CreateFAdd(acc_v, e.mul0(e.V(n.a, c), e.V(n.b, c), n.a, n.b)); break;
                case Op::amax: {
                    Value* x = e.V(n.a, c);
                    nv = B.CreateSelect(B.CreateOr(B.CreateFCmpOGT(x, acc_v), B.CreateFCmpUNO(x, x)), x, acc_v);
                    break;
                }
                case Op::logsumexp: {
                    // as the row-wise kernel: elements equal to the max are counted, not summed
                    Value* x = B.CreateAlignedLoad(e.VF, slot_ptr_of(arg_of[static_cast<std::size_t>(r)], j), Align(64));
                    Value* sm = safe_max[static_cast<std::size_t>(r)];
                    AllocaInst* kept = exp_of[static_cast<std::size_t>(r)];
                    // A summand's value is taken before the sum: the columns' terms are one chain
                    // (a row's lane), on which an add waits less than the fma that would take the
                    // product (the fma: fwd 1024x32 0.85x; ce_probe on a Zen 4).
                    Value* ex = kept ? e.exp_nonpositive(B.CreateFSub(x, sm)) : exp_term_value(B, e.exp_summand(B.CreateFSub(x, sm)));
                    if (kept) B.CreateAlignedStore(ex, slot_ptr_of(kept, j), Align(64));
                    e.lse_accumulate(x, sm, ExpTerm{ex, nullptr}, nullptr, A, cnts[static_cast<std::size_t>(r)]);
                    continue;
                }
                default: throw error("codegen: " + std::string(info(n.op).name) + " is not a pass reduction");
                }
                B.CreateStore(nv, A);
            }
            Value* column = at_labels.empty() ? nullptr : e.splat(B.CreateTrunc(j, e.I32));
            for (std::size_t k = 0; k < ps.writes.size(); ++k) {
                Value* v = output_value(ps.writes[k], c);
                for (const AtLabel& a : at_labels) v = B.CreateSelect(B.CreateICmpEQ(a.y, column), a.v[k], v);
                B.CreateAlignedStore(v, slot_ptr_of(out_cols[P.output_slot(ps.writes[k])], j), Align(64));
            }
        }, unroll_short && ps.reductions.empty());
        e.onehot_off = false;
        store_outputs(ps);
        e.cache_factor = e.cache_top = e.row_factor = e.row_top = nullptr;
        Value* neg_pass = nullptr;
        for (int r : ps.reductions) {
            const Node& n = P.g[r];
            Value* v = B.CreateLoad(e.VF, accs[static_cast<std::size_t>(r)]);
            Value* res = v;
            if (n.op == Op::mean) res = B.CreateFDiv(v, e.Kf);
            if (n.op == Op::logsumexp) {
                // lse = hi + lo, lo = log1p(count - 1 + the sum of the others): -inf when no
                // element counts (all -inf)
                Value* hi = row_max[static_cast<std::size_t>(r)];
                // (the elements at the max: the K columns less those below it)
                Value* cnt = B.CreateFSub(e.Kf, B.CreateLoad(e.VF, cnts[static_cast<std::size_t>(r)]));
                Value* rest = B.CreateFAdd(B.CreateFSub(cnt, ConstantFP::get(e.VF, 1.0)), v);
                Value* lo = emit_log1p(B, rest);
                e.lse_hi[static_cast<std::size_t>(r)] = hi;
                e.lse_lo[static_cast<std::size_t>(r)] = lo;
                res = B.CreateFAdd(hi, lo);
                if (r == P.cache_lse) {
                    e.cache_sum = B.CreateFAdd(cnt, v);
                    e.cache_rest = rest;
                }
                // masked rows known from hi and rest: the gradient's skip waits for no log1p
                Value* ni = B.CreateAnd(e.lse_is_neginf(hi, rest), e.rowmask);
                neg_pass = neg_pass ? B.CreateOr(neg_pass, ni) : ni;
            }
            e.reduced[static_cast<std::size_t>(r)] = res;
            e.scal[static_cast<std::size_t>(r)] = res;
        }
        if (neg_pass) {
            if (last) neg_new = B.CreateAnd(neg_pass, B.CreateNot(neg));
            neg = B.CreateOr(neg, neg_pass);
        }
    }
    // rows found masked by the last pass's own logsumexp after its writes: their outputs to 0
    if (neg_new) {
        bool any_vector = false;
        for (std::size_t s = 0; s < ns; ++s) any_vector = any_vector || (P.slots[s].output && P.slots[s].vector);
        if (any_vector)
            columns([&](Value* j) {
                for (std::size_t s = 0; s < ns; ++s) {
                    if (!P.slots[s].output || !P.slots[s].vector) continue;
                    const DType d = P.slots[s].dtype;
                    B.CreateMaskedScatter(Constant::getNullValue(FixedVectorType::get(e.storage(d), VW)), e.rows_ptrs(static_cast<int>(s), j),
                                          Align(size_of(d)), neg_new);
                }
            }, false);
    }
    e.new_stage();
    Value* skip = B.CreateOr(ign, neg);
    Value* counted = B.CreateAnd(valid, B.CreateNot(skip));
    for (std::size_t s = 0; s < ns; ++s) {
        if (!acc[s]) continue;
        Value* v = B.CreateSelect(skip, ConstantFP::get(e.VF, 0.0), e.S(P.slot_node[s]));
        Value* d = e.F->isDoubleTy() ? v : B.CreateFPExt(v, VD);
        d = B.CreateSelect(counted, d, ConstantFP::get(VD, 0.0));
        B.CreateStore(B.CreateFAdd(B.CreateLoad(VD, vacc[s]), d), vacc[s]);
        const DType dt = P.slots[s].dtype;
        e.rows_store_column(static_cast<int>(s), e.to_storage(v, dt), valid);
    }
    // row states (0 counted, 1 ignored, 2 a logsumexp of -inf) and the count of masked rows
    Value* st = B.CreateSelect(ign, ConstantVector::getSplat(ElementCount::getFixed(VW), ConstantInt::get(I8, 1)),
                               B.CreateSelect(neg, ConstantVector::getSplat(ElementCount::getFixed(VW), ConstantInt::get(I8, 2)), Constant::getNullValue(VI8)));
    B.CreateMaskedStore(st, B.CreateGEP(I8, state, r0), Align(1), valid);
    Value* nmask = B.CreateAnd(B.CreateAnd(neg, B.CreateNot(ign)), valid);
    Value* bits = B.CreateBitCast(nmask, B.getIntNTy(VW));
    Value* cnt = B.CreateUIToFP(B.CreateUnaryIntrinsic(Intrinsic::ctpop, bits), e.D);
    B.CreateStore(B.CreateFAdd(B.CreateLoad(e.D, masked_acc), cnt), masked_acc);
    B.CreateStore(B.CreateAdd(r0, ConstantInt::get(e.I64, e.VW)), row);
    B.CreateBr(cond);

    B.SetInsertPoint(done);
    for (std::size_t s = 0; s < ns; ++s)
        if (acc[s]) {
            Value* p = B.CreateConstGEP1_64(e.D, sums, s);
            B.CreateStore(B.CreateFAdd(B.CreateLoad(e.D, p), e.hsum_tree(B.CreateLoad(VD, vacc[s]))), p);
        }
    {
        Value* p = B.CreateConstGEP1_64(e.D, sums, ns);
        B.CreateStore(B.CreateFAdd(B.CreateLoad(e.D, p), B.CreateLoad(e.D, masked_acc)), p);
    }
    B.CreateRetVoid();
}

}  // namespace lossjit::jit::codegen_detail
