// Codegen: Plan -> LLVM IR. See codegen.hpp for the kernel's ABI and schedule.hpp for the passes.
//
// Structure of the emitted function:
//   for each row r in [row_begin, row_end):
//     row bases of every slot; labels
//     stage 0 (scalars of depth 0, e.g. gathers at(u, y)), pass 0, stage 1, pass 1, ...
//     each pass: one vectorized loop over the row (unrolled, masked tail), accumulating all of
//     the pass's reductions; two-pass logsumexp adds a max loop before it, per block of the row;
//     the last pass also stores the vector outputs
//     final stage: scalar outputs, stored per row and summed
//   skipped rows (a label equal to ignore_index, checked before anything of the row is read;
//   or a logsumexp of -inf, checked after the pass that computes it): every output of the row
//   is written as 0 (vector outputs by a plain store loop) and row_state[r] says why
// Scalar nodes are computed lazily, at the end of the latest stage block (which dominates all
// later code of the row); gathers are forced before the passes so in-place gradients are safe.
#include "codegen.hpp"

#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/MDBuilder.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

#include <array>
#include <cmath>
#include <functional>
#include <limits>

#include "vecmath.hpp"

namespace lossjit::jit {
namespace {

using namespace llvm;

struct Ctx {
    enum Mode { scalar, gather, lanes } mode = scalar;
    Value* index = nullptr;  // gather: i64 element; lanes: i64 first element
    Value* mask = nullptr;   // lanes: <VW x i1>, or null for a full vector
    std::vector<Value*> memo;
};

class Em;
using ValueFn = Value* (*)(Em&, int node, Ctx&);
using MathFn = Value* (*)(Em&, int node, Value* a, Value* b);

struct OpEmitter {
    ValueFn value = nullptr;  // the node's value in a context (scalar row, gather, lanes)
    MathFn math = nullptr;    // elementwise ops: the arithmetic on scalars or vectors
};

const std::array<OpEmitter, op_count>& table();

class Em {
public:
    Em(LLVMContext& c, const Plan& p, const Target& t, Module& m) : C(c), P(p), T(t), M(m), B(c) {
        F = P.compute == DType::f64 ? Type::getDoubleTy(C) : Type::getFloatTy(C);
        VW = P.vector_width;
        VF = FixedVectorType::get(F, static_cast<unsigned>(VW));
        I64 = Type::getInt64Ty(C);
        I32 = Type::getInt32Ty(C);
        D = Type::getDoubleTy(C);
        const std::size_t n = static_cast<std::size_t>(P.g.size());
        scal.assign(n, nullptr);
        reduced.assign(n, nullptr);
        lse_hi.assign(n, nullptr);
        lse_lo.assign(n, nullptr);
        slot_of.assign(n, -1);
        for (std::size_t s = 0; s < P.slots.size(); ++s)
            if (!P.slots[s].output) slot_of[static_cast<std::size_t>(P.slot_node[s])] = static_cast<int>(s);
    }

    LLVMContext& C;
    const Plan& P;
    const Target& T;
    Module& M;
    IRBuilder<> B;
    Type *F, *I64, *I32, *D;
    FixedVectorType* VF;
    int VW;
    Function* fn = nullptr;
    Value *K = nullptr, *Kf = nullptr;
    std::vector<Value*> slot_ptr, slot_stride, slot_scale, row_base;
    std::vector<Value*> scal, reduced;
    // per logsumexp node reduced in a pass: lse = hi + lo with hi the row's max and
    // lo = log(sum exp(x - hi)) = log1p(sum over all but one maximal element), kept apart so that
    // x - lse = (x - hi) - lo loses nothing when x is near the max (p near 1: softmax - 1)
    std::vector<Value*> lse_hi, lse_lo;
    std::vector<int> slot_of;
    std::vector<Value*> label_val;  // per node: the row's label as i64
    Instruction* stage_end = nullptr;
    Ctx row_ctx;

    bool vec(int i) const { return i >= 0 && P.vector_node[static_cast<std::size_t>(i)]; }
    Constant* cf(double v, Type* t = nullptr) { return ConstantFP::get(t ? t : F, v); }
    Value* splat(Value* s) { return s->getType()->isVectorTy() ? s : B.CreateVectorSplat(static_cast<unsigned>(VW), s); }

    // Across rows (Plan::rows): lanes are VW consecutive rows; every node's value is a vector,
    // a per-row scalar one value per lane, a vector node at column j element j of each row.
    bool rows = false;
    Value* rowmask = nullptr;           // <VW x i1>: the lanes holding rows of [row_begin, row_end)
    std::vector<Value*> lane_off;       // per slot: <VW x i32> lane * stride (elements)
    AllocaInst* rows_exp = nullptr;     // the cached exps, K vectors (Plan::cache_lse)
    // The elements `col` (i64, or <VW x i64> per lane) of the block's rows of a slot.
    Value* rows_ptrs(int slot, Value* col) {
        Value* c32 = col->getType()->isVectorTy() ? B.CreateTrunc(col, FixedVectorType::get(I32, static_cast<unsigned>(VW)))
                                                  : splat(B.CreateTrunc(col, I32));
        Value* idx = B.CreateSExt(B.CreateAdd(lane_off[static_cast<std::size_t>(slot)], c32), FixedVectorType::get(I64, static_cast<unsigned>(VW)));
        return B.CreateGEP(storage(P.slots[static_cast<std::size_t>(slot)].dtype), row_base[static_cast<std::size_t>(slot)], idx);
    }
    Value* rows_load(int slot, Value* col) {
        const DType d = P.slots[static_cast<std::size_t>(slot)].dtype;
        Type* vt = FixedVectorType::get(storage(d), static_cast<unsigned>(VW));
        return B.CreateMaskedGather(vt, rows_ptrs(slot, col), Align(size_of(d)), rowmask, Constant::getNullValue(vt));
    }
    Type* storage(DType d) {
        switch (d) {
        case DType::f32: return Type::getFloatTy(C);
        case DType::f64: return D;
        case DType::bf16: return Type::getInt16Ty(C);
        case DType::i32: return I32;
        case DType::i64: return I64;
        }
        return F;
    }
    Type* with_lanes(Type* s, Value* like) {
        if (auto* vt = dyn_cast<FixedVectorType>(like->getType())) return FixedVectorType::get(s, vt->getNumElements());
        return s;
    }

    // storage -> compute type
    Value* to_compute(Value* x, DType d) {
        if (d == DType::bf16) {
            Value* w = B.CreateZExt(x, with_lanes(I32, x));
            w = B.CreateShl(w, 16);
            Value* f = B.CreateBitCast(w, with_lanes(Type::getFloatTy(C), x));
            return F->isDoubleTy() ? B.CreateFPExt(f, with_lanes(F, x)) : f;
        }
        if (d == DType::i32 || d == DType::i64) return B.CreateSIToFP(x, with_lanes(F, x));
        Type* want = with_lanes(F, x);
        if (x->getType() == want) return x;
        return F->isDoubleTy() ? B.CreateFPExt(x, want) : B.CreateFPTrunc(x, want);
    }
    // compute type -> storage, rounding to nearest even for bf16
    Value* to_storage(Value* x, DType d) {
        if (d == DType::bf16) {
            Type* f32 = with_lanes(Type::getFloatTy(C), x);
            if (x->getType() != f32) x = B.CreateFPTrunc(x, f32);
            Type* i32 = with_lanes(I32, x);
            Value* bits = B.CreateBitCast(x, i32);
            Value* lsb = B.CreateAnd(B.CreateLShr(bits, 16), ConstantInt::get(i32, 1));
            Value* rounded = B.CreateLShr(B.CreateAdd(B.CreateAdd(bits, ConstantInt::get(i32, 0x7fff)), lsb), 16);
            Value* quiet = B.CreateOr(B.CreateLShr(bits, 16), ConstantInt::get(i32, 0x40));
            Value* r = B.CreateSelect(B.CreateFCmpUNO(x, x), quiet, rounded);
            return B.CreateTrunc(r, with_lanes(Type::getInt16Ty(C), x));
        }
        Type* want = with_lanes(storage(d), x);
        if (x->getType() == want) return x;
        return want->getScalarType()->isDoubleTy() ? B.CreateFPExt(x, want) : B.CreateFPTrunc(x, want);
    }

    Value* element_ptr(int slot, Value* index) {
        return B.CreateGEP(storage(P.slots[static_cast<std::size_t>(slot)].dtype), row_base[static_cast<std::size_t>(slot)], index);
    }
    Value* load_lanes(int slot, Ctx& c) {
        const DType d = P.slots[static_cast<std::size_t>(slot)].dtype;
        Type* vt = FixedVectorType::get(storage(d), static_cast<unsigned>(VW));
        Value* p = element_ptr(slot, c.index);
        const Align al(size_of(d));
        Value* x = c.mask ? static_cast<Value*>(B.CreateMaskedLoad(vt, p, al, c.mask, Constant::getNullValue(vt))) : B.CreateAlignedLoad(vt, p, al);
        return to_compute(x, d);
    }
    Value* load_one(int slot, Value* index) {
        const DType d = P.slots[static_cast<std::size_t>(slot)].dtype;
        return to_compute(B.CreateAlignedLoad(storage(d), element_ptr(slot, index), Align(size_of(d))), d);
    }

    // A label as an i64 index: from a label input, or any scalar rounded toward zero.
    Value* label_index(int i) {
        if (label_val[static_cast<std::size_t>(i)]) return label_val[static_cast<std::size_t>(i)];
        Value* v = S(i);
        return B.CreateFPToSI(v, with_lanes(I64, v));
    }

    // The value of node i: per row (scalar nodes) or in a context (vector nodes).
    Value* S(int i) {
        Value*& v = scal[static_cast<std::size_t>(i)];
        if (v) return v;
        IRBuilderBase::InsertPointGuard guard(B);
        if (stage_end) B.SetInsertPoint(stage_end);
        v = table()[static_cast<std::size_t>(P.g[i].op)].value(*this, i, row_ctx);
        return v;
    }
    Value* V(int i, Ctx& c) {
        if (!vec(i)) {
            Value* s = S(i);
            return c.mode == Ctx::lanes ? splat(s) : s;
        }
        if (c.mode == Ctx::scalar) throw error("codegen: vector node %" + std::to_string(i) + " needed as a scalar");
        Value*& m = c.memo[static_cast<std::size_t>(i)];
        if (!m) m = table()[static_cast<std::size_t>(P.g[i].op)].value(*this, i, c);
        return m;
    }
    Ctx lanes_ctx(Value* index, Value* mask) {
        Ctx c;
        c.mode = Ctx::lanes;
        c.index = index;
        c.mask = mask;
        c.memo.assign(static_cast<std::size_t>(P.g.size()), nullptr);
        return c;
    }
    Value* gather(int v, Value* index) {
        if (!vec(v)) return S(v);
        Ctx c;
        c.mode = Ctx::gather;
        c.index = index;
        c.memo.assign(static_cast<std::size_t>(P.g.size()), nullptr);
        return V(v, c);
    }

    // Horizontal reductions.
    Value* hsum(Value* v) {
        CallInst* r = B.CreateFAddReduce(cf(-0.0), v);
        r->setHasAllowReassoc(true);
        return r;
    }
    // max over lanes, NaN ignored unless every lane is NaN (llvm.vector.reduce.fmax), as a tree:
    // LLVM expands the intrinsic into a serial chain of lanes, on every row's critical path
    Value* hmax(Value* v) {
        auto* vt = cast<FixedVectorType>(v->getType());
        for (unsigned n = vt->getNumElements(); n > 1; n /= 2) {
            std::vector<int> lo, hi;
            for (unsigned l = 0; l < n / 2; ++l) {
                lo.push_back(static_cast<int>(l));
                hi.push_back(static_cast<int>(l + n / 2));
            }
            v = B.CreateBinaryIntrinsic(Intrinsic::maxnum, B.CreateShuffleVector(v, lo), B.CreateShuffleVector(v, hi));
        }
        return B.CreateExtractElement(v, static_cast<std::uint64_t>(0));
    }
    Value* isneginf(Value* x) { return B.CreateFCmpOEQ(x, cf(-INFINITY, x->getType())); }

    // a * b where a zero factor gives zero even against +-inf (NaN still propagates), as the
    // reference's mul: x * log(y) terms vanish where the target is 0. A finite nonzero constant
    // factor needs no guard.
    Value* mul0(Value* a, Value* b, int na, int nb) {
        Value* r = B.CreateFMul(a, b);
        auto plain = [&](int n) {
            const Node& x = P.g[n];
            return x.op == Op::constant && x.value != 0 && std::isfinite(x.value);
        };
        if (plain(na) || plain(nb)) return r;
        Type* t = r->getType();
        Value* z = ConstantFP::get(t, 0.0);
        Value* za = B.CreateAnd(B.CreateFCmpOEQ(a, z), B.CreateFCmpORD(b, b));
        Value* zb = B.CreateAnd(B.CreateFCmpOEQ(b, z), B.CreateFCmpORD(a, a));
        return B.CreateSelect(B.CreateOr(za, zb), z, r);
    }

    void emit_loop(Value* begin, Value* end, const std::function<void(Value*, Value*, int)>& body, int copies = 0);
    void new_stage();
    void emit_pass(const Pass& ps, bool last);

    // exp for the kernel's target (vscalefps on AVX-512)
    Value* exp(Value* x) { return emit_exp(B, x, T.avx512); }
    // max(acc, x) ignoring a NaN x (x86's maxps: one instruction). Used where a NaN reaches the
    // result through another path anyway (logsumexp: exp(NaN - max) makes the sum NaN).
    Value* max_fast(Value* acc, Value* x) { return B.CreateSelect(B.CreateFCmpOGT(x, acc), x, acc); }
    // A horizontal reduction by a shuffle tree: the two halves combined, pairwise, down to one lane.
    template <class Combine>
    Value* shuffle_tree(Value* v, Combine combine) {
        auto* vt = cast<FixedVectorType>(v->getType());
        for (unsigned n = vt->getNumElements(); n > 1; n /= 2) {
            SmallVector<int, 16> lo, hi;
            for (unsigned l = 0; l < n / 2; ++l) {
                lo.push_back(static_cast<int>(l));
                hi.push_back(static_cast<int>(l + n / 2));
            }
            v = combine(B.CreateShuffleVector(v, lo), B.CreateShuffleVector(v, hi));
        }
        return B.CreateExtractElement(v, std::uint64_t{0});
    }
    // Horizontal max of max_fast (llvm.vector.reduce.fmax has maxnum's NaN rules and becomes a
    // serial chain of scalar compares on x86).
    Value* hmax_fast(Value* v) {
        return shuffle_tree(v, [this](Value* a, Value* b) { return max_fast(a, b); });
    }
    // Horizontal sum, halves added pairwise.
    Value* hsum_tree(Value* v) {
        return shuffle_tree(v, [this](Value* a, Value* b) { return B.CreateFAdd(a, b); });
    }

    // cached softmax (Plan::cache_lse): the scratch row, and while the last pass is emitted,
    // the current block's factor exp(block max - max) / sum (a vector)
    Value* scratch = nullptr;
    Value* cache_factor = nullptr;
    Value *cache_M = nullptr, *cache_lo = nullptr;  // the row's logsumexp = max + lo
    Value* scratch_block_max(Value* block_index) {
        Value* base = B.CreateGEP(F, scratch, B.CreateAdd(K, ConstantInt::get(I64, 16)));
        return B.CreateGEP(F, base, block_index);
    }
    AllocaInst* alloca(Type* t) {
        IRBuilder<> e(&fn->getEntryBlock(), fn->getEntryBlock().begin());
        return e.CreateAlloca(t);
    }
};

// ---- loops -------------------------------------------------------------------------------

void Em::emit_loop(Value* begin, Value* end, const std::function<void(Value*, Value*, int)>& body, int copies) {
    const int U = copies > 0 ? copies : P.unroll;
    AllocaInst* iv = alloca(I64);
    B.CreateStore(begin, iv);
    std::vector<Constant*> iota;
    for (int l = 0; l < VW; ++l) iota.push_back(ConstantInt::get(I32, static_cast<std::uint64_t>(l)));
    if (U == 1 && P.masked_loop) {
        // One loop, every iteration masked: with AVX-512's mask registers a masked load, store or
        // accumulation costs what an unmasked one does, and the body is emitted once (half the
        // code for LLVM to optimize and select: JIT latency).
        BasicBlock* bodyb = BasicBlock::Create(C, "masked.body", fn);
        BasicBlock* exit = BasicBlock::Create(C, "masked.exit", fn);
        B.CreateCondBr(B.CreateICmpSLT(begin, end), bodyb, exit);
        B.SetInsertPoint(bodyb);
        Value* i = B.CreateLoad(I64, iv);
        Value* lanes = B.CreateAdd(splat(B.CreateTrunc(i, I32)), ConstantVector::get(iota));
        body(i, B.CreateICmpSLT(lanes, splat(B.CreateTrunc(end, I32))), 0);
        Value* next = B.CreateAdd(i, ConstantInt::get(I64, VW));
        B.CreateStore(next, iv);
        B.CreateCondBr(B.CreateICmpSLT(next, end), bodyb, exit);
        B.SetInsertPoint(exit);
        return;
    }
    auto counted = [&](int step, int copies, const char* name) {
        BasicBlock* cond = BasicBlock::Create(C, std::string(name) + ".cond", fn);
        BasicBlock* bodyb = BasicBlock::Create(C, std::string(name) + ".body", fn);
        BasicBlock* exit = BasicBlock::Create(C, std::string(name) + ".exit", fn);
        B.CreateBr(cond);
        B.SetInsertPoint(cond);
        Value* i = B.CreateLoad(I64, iv);
        B.CreateCondBr(B.CreateICmpSLE(B.CreateAdd(i, ConstantInt::get(I64, step)), end), bodyb, exit);
        B.SetInsertPoint(bodyb);
        for (int u = 0; u < copies; ++u) body(B.CreateAdd(i, ConstantInt::get(I64, u * VW)), nullptr, u);
        B.CreateStore(B.CreateAdd(i, ConstantInt::get(I64, step)), iv);
        B.CreateBr(cond);
        B.SetInsertPoint(exit);
    };
    counted(VW * U, U, U > 1 ? "unrolled" : "vector");
    // masked tail: the lanes still inside [i, end); a loop when more than one vector may remain
    BasicBlock* tail = BasicBlock::Create(C, "tail", fn);
    BasicBlock* done = BasicBlock::Create(C, "tail.done", fn);
    B.CreateCondBr(B.CreateICmpSLT(B.CreateLoad(I64, iv), end), tail, done);
    B.SetInsertPoint(tail);
    Value* i = B.CreateLoad(I64, iv);
    Value* lanes = B.CreateAdd(splat(B.CreateTrunc(i, I32)), ConstantVector::get(iota));
    Value* mask = B.CreateICmpSLT(lanes, splat(B.CreateTrunc(end, I32)));
    body(i, mask, 0);
    if (U > 1) {
        Value* next = B.CreateAdd(i, ConstantInt::get(I64, VW));
        B.CreateStore(next, iv);
        B.CreateCondBr(B.CreateICmpSLT(next, end), tail, done);
    } else {
        B.CreateBr(done);
    }
    B.SetInsertPoint(done);
}

void Em::new_stage() {
    BasicBlock* st = BasicBlock::Create(C, "stage", fn);
    B.CreateBr(st);
    B.SetInsertPoint(st);
    BasicBlock* next = BasicBlock::Create(C, "pass", fn);
    stage_end = B.CreateBr(next);
    B.SetInsertPoint(next);
}

// ---- one pass over the row -----------------------------------------------------------------

struct Red {
    int node;
    Op op;
    bool two_pass = false;
    std::vector<AllocaInst*> a, b, c;  // per unroll copy: accumulator(s)
    // two-pass logsumexp over blocks: the running max M, the number C of elements equal to it
    // and the sum R of exp(x - M) over the others (sum exp(x - M) = C + R)
    AllocaInst *M = nullptr, *Cnt = nullptr, *Sum = nullptr;
};

void Em::emit_pass(const Pass& ps, bool last) {
    const int U = P.unroll;
    const int UM = std::max(U, 4);  // accumulators of the max loops (load + max: latency bound)
    std::vector<Red> reds;
    bool any_two = false;
    for (int r : ps.reductions) {
        Red x;
        x.node = r;
        x.op = P.g[r].op;
        x.two_pass = x.op == Op::logsumexp && P.lse == LseMode::two_pass;
        any_two = any_two || x.two_pass;
        for (int u = 0; u < U; ++u) {
            x.a.push_back(alloca(VF));
            if (x.op == Op::logsumexp) x.b.push_back(alloca(VF));
            if (x.two_pass) x.c.push_back(alloca(VF));
        }
        if (x.two_pass) {
            x.M = alloca(F);
            x.Cnt = alloca(F);
            x.Sum = alloca(F);
            for (int u = U; u < UM; ++u) x.a.push_back(alloca(VF));
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
                    B.CreateStore(ConstantFP::get(VF, 0.0), r.c[static_cast<std::size_t>(u)]);
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
    // next row when the row is one block), so the next max loop reads from cache and memory
    // traffic overlaps the arithmetic.
    Value* ahead = nullptr;
    if (any_two) {
        Value* blk = ConstantInt::get(I64, static_cast<std::int64_t>(P.block));
        ahead = B.CreateSelect(B.CreateICmpSGT(K, blk), blk, K);
    }
    auto main_body = [&](Value* i, Value* mask, int u) {
        Ctx c = lanes_ctx(i, mask);
        if (ahead && !mask)
            for (std::size_t s = 0; s < P.slots.size(); ++s)
                if (!P.slots[s].output && P.slots[s].vector && P.slots[s].kind != InputKind::weights)
                    B.CreateIntrinsic(Intrinsic::prefetch, {B.getPtrTy()},
                                      {element_ptr(static_cast<int>(s), B.CreateAdd(i, ahead)), B.getInt32(0), B.getInt32(3), B.getInt32(1)});
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
                Value* s = B.CreateLoad(VF, Sa);
                if (r.two_pass) {
                    // elements equal to the block's max are counted, not summed: the sum of the
                    // others keeps its precision (a 1 in the accumulator would round it away)
                    Value* bm = splat(block_max[k]);
                    Value* e = exp(B.CreateFSub(x, bm));
                    Value* top = B.CreateFCmpOEQ(x, bm);
                    if (mask) top = B.CreateAnd(top, mask);
                    Value* zero = ConstantFP::get(VF, 0.0);
                    B.CreateStore(B.CreateFAdd(s, B.CreateSelect(top, zero, keep(e, zero))), Sa);
                    AllocaInst* Ca = r.c[static_cast<std::size_t>(u)];
                    B.CreateStore(B.CreateFAdd(B.CreateLoad(VF, Ca), B.CreateSelect(top, ConstantFP::get(VF, 1.0), zero)), Ca);
                    if (r.node == P.cache_lse) {
                        Value* p = B.CreateGEP(F, scratch, i);
                        if (mask) B.CreateMaskedStore(e, p, Align(P.compute == DType::f64 ? 8 : 4), mask);
                        else B.CreateAlignedStore(e, p, Align(P.compute == DType::f64 ? 8 : 4));
                    }
                    break;
                }
                // online: running max m and the sum s of exp(x - m) over the lane's elements but
                // its (one) maximal element, whose exp(0) = 1 is implicit: one exp per element
                Value* m = B.CreateLoad(VF, A);
                Value* gt = B.CreateFCmpOGT(x, m);
                Value* e = exp(B.CreateSelect(gt, B.CreateFSub(m, x), B.CreateFSub(x, m)));
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
        for (int w : ps.writes) {
            const std::size_t slot = P.slots.size() - P.g.outputs().size() + static_cast<std::size_t>(w);
            Value* v = B.CreateFMul(V(P.g.outputs()[static_cast<std::size_t>(w)].root, c), scale[slot]);
            const DType d = P.slots[slot].dtype;
            Value* st = to_storage(v, d);
            Value* p = element_ptr(static_cast<int>(slot), i);
            if (mask) B.CreateMaskedStore(st, p, Align(size_of(d)), mask);
            else B.CreateAlignedStore(st, p, Align(size_of(d)));
        }
    };
    for (int w : ps.writes) {
        const std::size_t slot = P.slots.size() - P.g.outputs().size() + static_cast<std::size_t>(w);
        scale[slot] = splat(slot_scale[slot]);
    }

    // for (b0 = 0; b0 < K; b0 += block) body(b0, min(b0 + block, K))
    auto for_each_block = [&](const std::function<void(Value*, Value*)>& body_of_block) {
        AllocaInst* bs = alloca(I64);
        B.CreateStore(ConstantInt::get(I64, 0), bs);
        BasicBlock* cond = BasicBlock::Create(C, "block.cond", fn);
        BasicBlock* body = BasicBlock::Create(C, "block.body", fn);
        BasicBlock* exit = BasicBlock::Create(C, "block.exit", fn);
        B.CreateBr(cond);
        B.SetInsertPoint(cond);
        Value* b0 = B.CreateLoad(I64, bs);
        B.CreateCondBr(B.CreateICmpSLT(b0, K), body, exit);
        B.SetInsertPoint(body);
        Value* b1 = B.CreateAdd(b0, ConstantInt::get(I64, static_cast<std::int64_t>(P.block)));
        body_of_block(b0, B.CreateSelect(B.CreateICmpSLT(b1, K), b1, K));
        B.CreateStore(b1, bs);
        B.CreateBr(cond);
        B.SetInsertPoint(exit);
    };

    init_main();
    if (!any_two && last && P.cache_lse >= 0) {
        // softmax from the kept exps: blocks as in the pass that kept them, each with its factor
        auto block = [&](Value* b0, Value* be) {
            Value* bm = B.CreateLoad(F, scratch_block_max(B.CreateUDiv(b0, ConstantInt::get(I64, static_cast<std::int64_t>(P.block)))));
            cache_factor = splat(exp(B.CreateFSub(B.CreateFSub(bm, cache_M), cache_lo)));
            emit_loop(b0, be, main_body);
            cache_factor = nullptr;
        };
        if (P.K != 0 && P.K <= P.block) block(ConstantInt::get(I64, 0), K);
        else for_each_block(block);
    } else if (!any_two) {
        emit_loop(ConstantInt::get(I64, 0), K, main_body);
    } else {
        for (Red& r : reds)
            if (r.two_pass) {
                B.CreateStore(cf(-INFINITY), r.M);
                B.CreateStore(cf(0.0), r.Cnt);
                B.CreateStore(cf(0.0), r.Sum);
            }
        for_each_block([&](Value* b0, Value* be) {
            for (Red& r : reds)
                if (r.two_pass)
                    for (int u = 0; u < UM; ++u) B.CreateStore(ConstantFP::get(VF, -INFINITY), r.a[static_cast<std::size_t>(u)]);
            // The block's max ignores NaN (x86 max): a NaN element makes its exp, so the sum, NaN.
            emit_loop(b0, be, [&](Value* i, Value* mask, int u) {
                Ctx c = lanes_ctx(i, mask);
                for (Red& r : reds) {
                    if (!r.two_pass) continue;
                    AllocaInst* A = r.a[static_cast<std::size_t>(u)];
                    Value* acc = B.CreateLoad(VF, A);
                    Value* m = max_fast(acc, V(P.g[r.node].a, c));
                    B.CreateStore(mask ? B.CreateSelect(mask, m, acc) : m, A);
                }
            }, UM);
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
                    B.CreateStore(ConstantFP::get(VF, 0.0), r.c[static_cast<std::size_t>(u)]);
                }
            }
            emit_loop(b0, be, main_body);
            for (std::size_t k = 0; k < reds.size(); ++k) {
                Red& r = reds[k];
                if (!r.two_pass) continue;
                Value* v = B.CreateLoad(VF, r.b[0]);
                Value* w = B.CreateLoad(VF, r.c[0]);
                for (int u = 1; u < U; ++u) {
                    v = B.CreateFAdd(v, B.CreateLoad(VF, r.b[static_cast<std::size_t>(u)]));
                    w = B.CreateFAdd(w, B.CreateLoad(VF, r.c[static_cast<std::size_t>(u)]));
                }
                Value* sb = hsum(v);  // the block: sum exp(x - bm) = cb + sb
                Value* cb = hsum(w);
                Value* bm = bm_raw[k];
                if (P.K != 0 && P.K <= P.block) {  // the whole row is one block: nothing to merge
                    B.CreateStore(sb, r.Sum);
                    B.CreateStore(cb, r.Cnt);
                    B.CreateStore(bm, r.M);
                    continue;
                }
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
                B.CreateStore(B.CreateFAdd(t1, t2), r.Sum);
                B.CreateStore(B.CreateFAdd(c1, c2), r.Cnt);
                B.CreateStore(Mn, r.M);
            }
        });
    }

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
                rest = B.CreateFAdd(B.CreateFSub(B.CreateLoad(F, r.Cnt), cf(1.0)), B.CreateLoad(F, r.Sum));
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
            Value* lo = emit_log1p(B, rest);
            lse_hi[static_cast<std::size_t>(r.node)] = hi;
            lse_lo[static_cast<std::size_t>(r.node)] = lo;
            res = B.CreateFAdd(hi, lo);
            if (r.node == P.cache_lse) {
                cache_M = hi;
                cache_lo = lo;
            }
            break;
        }
        default: break;
        }
        reduced[static_cast<std::size_t>(r.node)] = res;
        scal[static_cast<std::size_t>(r.node)] = res;
    }
}

// ---- the function --------------------------------------------------------------------------

void emit_function(Em& e, const std::string& name);
void emit_rows(Em& e, Value* rb, Value* re, Value* sums, const std::vector<AllocaInst*>& acc, Value* ignore, Value* state);

}  // namespace

std::unique_ptr<llvm::Module> emit_module(llvm::LLVMContext& ctx, const Plan& plan, const Target& target,
                                          const std::string& name) {
    auto m = std::make_unique<llvm::Module>(name, ctx);
    Em e(ctx, plan, target, *m);
    emit_function(e, name);
    std::string msg;
    llvm::raw_string_ostream os(msg);
    if (llvm::verifyModule(*m, &os)) throw error("codegen produced invalid IR: " + os.str());
    return m;
}

namespace {

// The nodes the outputs use (through their arguments and a softmax's logsumexp): only these are
// emitted, and gathers among them are forced early.
std::vector<bool> live_nodes(const Plan& P) {
    std::vector<bool> live(static_cast<std::size_t>(P.g.size()), false);
    std::function<void(int)> mark = [&](int i) {
        if (i < 0 || live[static_cast<std::size_t>(i)]) return;
        live[static_cast<std::size_t>(i)] = true;
        mark(P.g[i].a);
        mark(P.g[i].b);
        mark(P.lse_of[static_cast<std::size_t>(i)]);
    };
    for (const Output& o : P.g.outputs()) mark(o.root);
    return live;
}

void emit_function(Em& e, const std::string& name) {
    using namespace llvm;
    auto& B = e.B;
    auto& C = e.C;
    const Plan& P = e.P;
    Type* ptr = PointerType::getUnqual(C);
    auto* fty = FunctionType::get(Type::getVoidTy(C), {e.I64, e.I64, e.I64, ptr, ptr, ptr, ptr, e.I64, ptr}, false);
    Function* fn = Function::Create(fty, Function::ExternalLinkage, name, e.M);
    e.fn = fn;
    fn->addFnAttr(Attribute::NoUnwind);
    if (!e.T.cpu.empty()) fn->addFnAttr("target-cpu", e.T.cpu);
    if (!e.T.features.empty()) fn->addFnAttr("target-features", e.T.features);
    fn->addFnAttr("min-legal-vector-width", std::to_string(e.VW * (P.compute == DType::f64 ? 64 : 32)));
    auto arg = fn->arg_begin();
    Value* rb = &*arg++;
    Value* re = &*arg++;
    Value* kval = &*arg++;
    Value* data = &*arg++;
    Value* strides = &*arg++;
    Value* scales = &*arg++;
    Value* sums = &*arg++;
    Value* ignore = &*arg++;
    Value* state = &*arg++;
    for (unsigned i : {3u, 4u, 5u, 6u, 8u}) fn->addParamAttr(i, Attribute::NoAlias);
    Type* I8 = Type::getInt8Ty(C);

    BasicBlock* entry = BasicBlock::Create(C, "entry", fn);
    B.SetInsertPoint(entry);
    e.K = P.K ? static_cast<Value*>(ConstantInt::get(e.I64, P.K)) : kval;
    e.Kf = B.CreateSIToFP(e.K, e.F);
    const std::size_t ns = P.slots.size();
    if (P.cache_lse >= 0 && !P.rows) e.scratch = B.CreateLoad(ptr, B.CreateConstGEP1_64(ptr, data, ns));  // after the slots
    for (std::size_t s = 0; s < ns; ++s) {
        e.slot_ptr.push_back(B.CreateLoad(ptr, B.CreateConstGEP1_64(ptr, data, s)));
        e.slot_stride.push_back(B.CreateLoad(e.I64, B.CreateConstGEP1_64(e.I64, strides, s)));
        Value* sc = B.CreateLoad(e.D, B.CreateConstGEP1_64(e.D, scales, s));
        e.slot_scale.push_back(e.F->isDoubleTy() ? sc : B.CreateFPTrunc(sc, e.F));
    }
    // per scalar output: its running sum (double)
    std::vector<AllocaInst*> acc(ns, nullptr);
    for (std::size_t s = 0; s < ns; ++s)
        if (P.slots[s].output && !P.slots[s].vector) {
            acc[s] = B.CreateAlloca(e.D);
        }
    for (std::size_t s = 0; s < ns; ++s)
        if (acc[s]) B.CreateStore(ConstantFP::get(e.D, 0.0), acc[s]);
    if (P.rows) {
        emit_rows(e, rb, re, sums, acc, ignore, state);
        return;
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
    B.CreateBr(cond);
    B.SetInsertPoint(cond);
    Value* r = B.CreateLoad(e.I64, row);
    B.CreateCondBr(B.CreateICmpSLT(r, re), body, done);
    B.SetInsertPoint(body);

    // row bases and labels
    e.row_base.assign(ns, nullptr);
    for (std::size_t s = 0; s < ns; ++s)
        e.row_base[s] = B.CreateGEP(e.storage(P.slots[s].dtype), e.slot_ptr[s], B.CreateMul(r, e.slot_stride[s]));
    e.label_val.assign(static_cast<std::size_t>(P.g.size()), nullptr);
    for (std::size_t s = 0; s < ns; ++s)
        if (!P.slots[s].output && P.slots[s].kind == InputKind::label) {
            Value* y = B.CreateLoad(e.storage(P.slots[s].dtype), e.row_base[s]);
            if (P.slots[s].dtype == DType::i32) y = B.CreateSExt(y, e.I64);
            e.label_val[static_cast<std::size_t>(P.slot_node[s])] = y;
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

    // liveness, for forcing gathers early
    const std::vector<bool> live = live_nodes(P);

    for (std::size_t k = 0; k < P.passes.size(); ++k) {
        e.new_stage();
        // gathers read the row: do them before the passes that may overwrite it
        for (int i = 0; i < P.g.size(); ++i)
            if (live[static_cast<std::size_t>(i)] && P.g[i].op == Op::at && P.depth[static_cast<std::size_t>(i)] <= static_cast<int>(k))
                e.S(i);
        e.emit_pass(P.passes[k], k + 1 == P.passes.size());
        // a logsumexp of -inf (every element -inf: a fully masked row): the row is skipped
        Value* neg = nullptr;
        for (int red : P.passes[k].reductions)
            if (P.g[red].op == Op::logsumexp) {
                Value* c = e.isneginf(e.reduced[static_cast<std::size_t>(red)]);
                neg = neg ? B.CreateOr(neg, c) : c;
            }
        if (neg) skip_if(neg, 2, "row.unmasked");
    }
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

    B.SetInsertPoint(done);
    for (std::size_t s = 0; s < ns; ++s)
        if (acc[s]) {
            Value* p = B.CreateConstGEP1_64(e.D, sums, s);
            B.CreateStore(B.CreateFAdd(B.CreateLoad(e.D, p), B.CreateLoad(e.D, acc[s])), p);
        }
    {
        Value* p = B.CreateConstGEP1_64(e.D, sums, ns);
        B.CreateStore(B.CreateFAdd(B.CreateLoad(e.D, p), B.CreateLoad(e.D, skipped_acc)), p);
    }
    B.CreateRetVoid();
}

// ---- across rows (Plan::rows) ----------------------------------------------------------------
//
// For short rows (K small and known) the lanes are VW consecutive rows: a block of rows is
// read by gathers (element j of each row), every reduction is a lane-wise accumulation over
// j = 0..K-1 (no horizontal reductions), per-row scalars (the logsumexp, the loss) are vectors,
// and outputs are stored by scatters. Each pass is a loop over j; a logsumexp keeps its argument
// in a stack array of K vectors in its max loop, and its exps in another when the last pass
// reads the softmax (Plan::cache_lse), so that each element is gathered and exp'ed once.

void emit_rows(Em& e, Value* rb, Value* re, Value* sums, const std::vector<AllocaInst*>& acc, Value* ignore, Value* state) {
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
    std::vector<Constant*> iota;
    for (unsigned l = 0; l < VW; ++l) iota.push_back(ConstantInt::get(e.I32, l));
    Value* lanes = ConstantVector::get(iota);
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
    const auto Kc = static_cast<std::uint64_t>(P.K);
    std::vector<AllocaInst*> arg_of(static_cast<std::size_t>(P.g.size()), nullptr), exp_of(static_cast<std::size_t>(P.g.size()), nullptr);
    auto array = [&] {
        IRBuilder<> eb(&fn->getEntryBlock(), fn->getEntryBlock().begin());
        AllocaInst* a = eb.CreateAlloca(ArrayType::get(e.VF, Kc));
        a->setAlignment(Align(64));
        return a;
    };
    for (const Pass& ps : P.passes)
        for (int r : ps.reductions)
            if (P.g[r].op == Op::logsumexp) {
                arg_of[static_cast<std::size_t>(r)] = array();
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
    e.label_val.assign(static_cast<std::size_t>(P.g.size()), nullptr);
    Value* ign = Constant::getNullValue(e.rowmask->getType());
    for (std::size_t s = 0; s < ns; ++s)
        if (!P.slots[s].output && P.slots[s].kind == InputKind::label) {
            Value* y = e.rows_load(static_cast<int>(s), ConstantInt::get(e.I64, 0));
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

    // for (j = 0; j < K; ++j) body(j): a loop, not unrolled (unrolling K = 10 measured no faster
    // here and doubled the compile time)
    auto columns = [&](const std::function<void(Value*)>& f) {
        BasicBlock* pre = B.GetInsertBlock();
        BasicBlock* lb = BasicBlock::Create(C, "col", fn);
        BasicBlock* lx = BasicBlock::Create(C, "col.exit", fn);
        B.CreateBr(lb);
        B.SetInsertPoint(lb);
        PHINode* j = B.CreatePHI(e.I64, 2);
        j->addIncoming(ConstantInt::get(e.I64, 0), pre);
        f(j);
        Value* j1 = B.CreateAdd(j, ConstantInt::get(e.I64, 1));
        j->addIncoming(j1, B.GetInsertBlock());
        B.CreateCondBr(B.CreateICmpULT(j1, e.K), lb, lx);
        B.SetInsertPoint(lx);
    };
    auto slot_ptr_of = [&](AllocaInst* a, Value* j) { return B.CreateGEP(e.VF, a, j); };

    const std::vector<bool> live = live_nodes(P);

    Value* cache_safe = nullptr;
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
                    B.CreateAlignedStore(x, slot_ptr_of(arg_of[static_cast<std::size_t>(r)], j), Align(64));
                    AllocaInst* A = accs[static_cast<std::size_t>(r)];
                    B.CreateStore(e.max_fast(B.CreateLoad(e.VF, A), x), A);
                }
            });
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
            const std::size_t slot = ns - P.g.outputs().size() + static_cast<std::size_t>(w);
            scale[slot] = e.splat(e.slot_scale[slot]);
        }
        Value* skip = B.CreateOr(ign, neg);
        if (last && P.cache_lse >= 0) e.cache_factor = e.exp(B.CreateFSub(B.CreateFSub(cache_safe, e.cache_M), e.cache_lo));
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
                    Value* ex = e.exp(B.CreateFSub(x, sm));
                    if (exp_of[static_cast<std::size_t>(r)]) B.CreateAlignedStore(ex, slot_ptr_of(exp_of[static_cast<std::size_t>(r)], j), Align(64));
                    Value* top = B.CreateFCmpOEQ(x, sm);
                    Value* zero = ConstantFP::get(e.VF, 0.0);
                    nv = B.CreateFAdd(acc_v, B.CreateSelect(top, zero, ex));
                    AllocaInst* Ca = cnts[static_cast<std::size_t>(r)];
                    B.CreateStore(B.CreateFAdd(B.CreateLoad(e.VF, Ca), B.CreateSelect(top, ConstantFP::get(e.VF, 1.0), zero)), Ca);
                    break;
                }
                default: throw error("codegen: " + std::string(info(n.op).name) + " is not a pass reduction");
                }
                B.CreateStore(nv, A);
            }
            for (int w : ps.writes) {
                const std::size_t slot = ns - P.g.outputs().size() + static_cast<std::size_t>(w);
                Value* v = B.CreateFMul(e.V(P.g.outputs()[static_cast<std::size_t>(w)].root, c), scale[slot]);
                v = B.CreateSelect(skip, ConstantFP::get(e.VF, 0.0), v);
                const DType d = P.slots[slot].dtype;
                B.CreateMaskedScatter(e.to_storage(v, d), e.rows_ptrs(static_cast<int>(slot), j), Align(size_of(d)), valid);
            }
        });
        e.cache_factor = nullptr;
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
                Value* rest = B.CreateFAdd(B.CreateFSub(B.CreateLoad(e.VF, cnts[static_cast<std::size_t>(r)]), ConstantFP::get(e.VF, 1.0)), v);
                Value* lo = emit_log1p(B, rest);
                e.lse_hi[static_cast<std::size_t>(r)] = hi;
                e.lse_lo[static_cast<std::size_t>(r)] = lo;
                res = B.CreateFAdd(hi, lo);
                if (r == P.cache_lse) {
                    e.cache_M = hi;
                    e.cache_lo = lo;
                    cache_safe = safe_max[static_cast<std::size_t>(r)];
                }
                Value* ni = B.CreateAnd(e.isneginf(res), e.rowmask);
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
            });
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
        B.CreateMaskedScatter(e.to_storage(v, dt), e.rows_ptrs(static_cast<int>(s), ConstantInt::get(e.I64, 0)), Align(size_of(dt)), valid);
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

// ---- the emitter table ---------------------------------------------------------------------

Value* v_leaf(Em& e, int i, Ctx& c) {
    const Node& n = e.P.g[i];
    switch (n.op) {
    case Op::constant: return e.rows ? static_cast<Value*>(ConstantFP::get(e.VF, n.value)) : e.cf(n.value);
    case Op::row_length: return e.Kf;
    case Op::input: {
        const int slot = e.slot_of[static_cast<std::size_t>(i)];
        if (slot < 0) throw error("codegen: input '" + std::string(n.name.view()) + "' has no slot");
        if (e.rows) {
            if (n.kind == InputKind::label) return e.B.CreateSIToFP(e.label_val[static_cast<std::size_t>(i)], e.VF);
            const DType d = e.P.slots[static_cast<std::size_t>(slot)].dtype;
            if (n.shape == Shape::scalar) return e.to_compute(e.rows_load(slot, ConstantInt::get(e.I64, 0)), d);
            return e.to_compute(e.rows_load(slot, c.index), d);
        }
        if (n.kind == InputKind::label) return e.B.CreateSIToFP(e.label_val[static_cast<std::size_t>(i)], e.F);
        if (n.shape == Shape::scalar) return e.load_one(slot, ConstantInt::get(e.I64, 0));
        if (c.mode == Ctx::lanes) return e.load_lanes(slot, c);
        return e.load_one(slot, c.index);
    }
    default: throw error("codegen: a pattern wildcard cannot be compiled");
    }
}

Value* v_elementwise(Em& e, int i, Ctx& c) {
    const Node& n = e.P.g[i];
    Value* a = e.V(n.a, c);
    Value* b = n.b >= 0 ? e.V(n.b, c) : nullptr;
    return table()[static_cast<std::size_t>(n.op)].math(e, i, a, b);
}

Value* v_softmax(Em& e, int i, Ctx& c) {
    const Node& n = e.P.g[i];
    if (n.op == Op::softmax && c.mode == Ctx::lanes && e.cache_factor && e.P.lse_of[static_cast<std::size_t>(i)] == e.P.cache_lse) {
        if (e.rows) return e.B.CreateFMul(e.B.CreateAlignedLoad(e.VF, e.B.CreateGEP(e.VF, e.rows_exp, c.index), Align(64)), e.cache_factor);
        Value* p = e.B.CreateGEP(e.F, e.scratch, c.index);
        const Align al(e.P.compute == DType::f64 ? 8 : 4);
        Value* x = c.mask ? static_cast<Value*>(e.B.CreateMaskedLoad(e.VF, p, al, c.mask, Constant::getNullValue(e.VF)))
                          : e.B.CreateAlignedLoad(e.VF, p, al);
        return e.B.CreateFMul(x, e.cache_factor);
    }
    const int l = e.P.lse_of[static_cast<std::size_t>(i)];
    Value* lse = e.S(l);
    auto lanes = [&](Value* s) { return c.mode == Ctx::lanes ? e.splat(s) : s; };
    Value* x;
    if (Value* hi = e.lse_hi[static_cast<std::size_t>(l)])  // (x - max) - log(sum): exact near the max
        x = e.B.CreateFSub(e.B.CreateFSub(e.V(n.a, c), lanes(hi)), lanes(e.lse_lo[static_cast<std::size_t>(l)]));
    else
        x = e.B.CreateFSub(e.V(n.a, c), lanes(lse));
    return n.op == Op::softmax ? e.exp(x) : x;
}

// a - b, where a logsumexp operand reduced in a pass is taken as hi + lo: lse - x = (hi - x) + lo,
// so that a loss such as logsumexp(u) - at(u, y) near 0 keeps its relative precision.
Value* m_sub(Em& e, int i, Value* a, Value* b) {
    auto& B = e.B;
    const Node& n = e.P.g[i];
    auto part = [&](int node, bool high, Value* like) -> Value* {
        Value* v = high ? e.lse_hi[static_cast<std::size_t>(node)] : e.lse_lo[static_cast<std::size_t>(node)];
        return like->getType()->isVectorTy() ? e.splat(v) : v;
    };
    const bool sa = !e.vec(n.a) && e.lse_hi[static_cast<std::size_t>(n.a)] != nullptr;
    const bool sb = !e.vec(n.b) && e.lse_hi[static_cast<std::size_t>(n.b)] != nullptr;
    if (sa && sb) return B.CreateFSub(B.CreateFAdd(B.CreateFSub(part(n.a, true, a), part(n.b, true, b)), part(n.a, false, a)), part(n.b, false, b));
    if (sa) return B.CreateFAdd(B.CreateFSub(part(n.a, true, a), b), part(n.a, false, a));
    if (sb) return B.CreateFSub(B.CreateFSub(a, part(n.b, true, b)), part(n.b, false, b));
    return B.CreateFSub(a, b);
}

Value* v_onehot(Em& e, int i, Ctx& c) {
    const Node& n = e.P.g[i];
    Value* y = e.label_index(n.a);
    if (e.rows) {  // y: the rows' labels; c.index: column j or, gathering, the rows' columns
        auto* v32 = FixedVectorType::get(e.I32, static_cast<unsigned>(e.VW));
        Value* j = c.index->getType()->isVectorTy() ? e.B.CreateTrunc(c.index, v32) : e.splat(e.B.CreateTrunc(c.index, e.I32));
        Value* hit = e.B.CreateICmpEQ(e.B.CreateTrunc(y, v32), j);
        return e.B.CreateSelect(hit, ConstantFP::get(e.VF, 1.0), ConstantFP::get(e.VF, 0.0));
    }
    if (c.mode == Ctx::gather) return e.B.CreateSelect(e.B.CreateICmpEQ(c.index, y), e.cf(1.0), e.cf(0.0));
    std::vector<Constant*> iota;
    for (int l = 0; l < e.VW; ++l) iota.push_back(ConstantInt::get(e.I32, static_cast<std::uint64_t>(l)));
    Value* lanes = e.B.CreateAdd(e.splat(e.B.CreateTrunc(c.index, e.I32)), ConstantVector::get(iota));
    Value* hit = e.B.CreateICmpEQ(lanes, e.splat(e.B.CreateTrunc(y, e.I32)));
    return e.B.CreateSelect(hit, ConstantFP::get(e.VF, 1.0), ConstantFP::get(e.VF, 0.0));
}

// Reductions seen as values: the result of their pass, a gather, or a fold over a scalar.
Value* v_reduction(Em& e, int i, Ctx&) {
    const Node& n = e.P.g[i];
    if (Value* r = e.reduced[static_cast<std::size_t>(i)]) return r;
    auto& B = e.B;
    if (n.op == Op::at) return e.gather(n.a, e.label_index(n.b));
    if (e.vec(n.a) || e.vec(n.b)) throw error("codegen: reduction %" + std::to_string(i) + " used before its pass");
    Value* a = e.S(n.a);
    switch (n.op) {
    case Op::sum: return B.CreateFMul(e.Kf, a);                          // sum(s) = K s
    case Op::mean: return a;                                             // mean(s) = s
    case Op::dot: return B.CreateFMul(e.Kf, e.mul0(a, e.S(n.b), n.a, n.b));  // dot(s, t) = K s t
    case Op::logsumexp: return B.CreateFAdd(a, emit_log(B, e.Kf));      // s + log K
    case Op::amax: return a;
    default: throw error("codegen: unknown reduction");
    }
}

Value* m_pow(Em& e, int i, Value* a, Value* b) {
    auto& B = e.B;
    const Node& n = e.P.g[i];
    Type* t = a->getType();
    auto one = [&] { return ConstantFP::get(t, 1.0); };
    if (e.P.g[n.b].op == Op::constant) {
        const double p = e.P.g[n.b].value;
        auto ipow = [&](Value* x, long k) {
            Value* r = nullptr;
            Value* sq = x;
            while (k > 0) {
                if (k & 1) r = r ? B.CreateFMul(r, sq) : sq;
                k >>= 1;
                if (k) sq = B.CreateFMul(sq, sq);
            }
            return r ? r : one();
        };
        if (p == std::floor(p) && std::fabs(p) <= 64) {
            Value* r = ipow(a, static_cast<long>(std::fabs(p)));
            return p < 0 ? B.CreateFDiv(one(), r) : r;
        }
        if (p * 2 == std::floor(p * 2) && std::fabs(p) <= 64) {  // half-integer: a^k sqrt(a)
            Value* s = B.CreateUnaryIntrinsic(Intrinsic::sqrt, a);
            Value* r = B.CreateFMul(ipow(a, static_cast<long>(std::floor(std::fabs(p)))), s);
            return p < 0 ? B.CreateFDiv(one(), r) : r;
        }
    }
    // general: exp(b log|a|), signed for negative a and integer b
    Value* r = e.exp(B.CreateFMul(b, emit_log(B, B.CreateUnaryIntrinsic(Intrinsic::fabs, a))));
    Value* fl = B.CreateUnaryIntrinsic(Intrinsic::floor, b);
    Value* isint = B.CreateFCmpOEQ(fl, b);
    Value* half = B.CreateFMul(b, ConstantFP::get(t, 0.5));
    Value* odd = B.CreateAnd(isint, B.CreateFCmpONE(B.CreateUnaryIntrinsic(Intrinsic::floor, half), half));
    Value* neg = B.CreateSelect(isint, B.CreateSelect(odd, B.CreateFNeg(r), r), ConstantFP::getNaN(t));
    r = B.CreateSelect(B.CreateFCmpOLT(a, ConstantFP::get(t, 0.0)), neg, r);
    r = B.CreateSelect(B.CreateFCmpOEQ(b, ConstantFP::get(t, 0.0)), one(), r);
    return B.CreateSelect(B.CreateFCmpOEQ(a, one()), one(), r);
}

Value* m_minmax(Em& e, int i, Value* a, Value* b) {
    auto& B = e.B;
    Value* pick = e.P.g[i].op == Op::min ? B.CreateFCmpOLT(a, b) : B.CreateFCmpOGT(a, b);
    Value* r = B.CreateSelect(pick, a, b);           // b when b is NaN
    return B.CreateSelect(B.CreateFCmpUNO(a, a), a, r);  // a when a is NaN
}

const std::array<OpEmitter, op_count>& table() {
    static const std::array<OpEmitter, op_count> t = [] {
        std::array<OpEmitter, op_count> x{};
        auto set = [&](Op o, ValueFn v, MathFn m = nullptr) { x[static_cast<std::size_t>(o)] = OpEmitter{v, m}; };
        set(Op::constant, v_leaf);
        set(Op::input, v_leaf);
        set(Op::row_length, v_leaf);
        // Op::wildcard: patterns only, never compiled
        set(Op::neg, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* { return e.B.CreateFNeg(a); });
        set(Op::exp, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* { return e.exp(a); });
        set(Op::log, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* { return emit_log(e.B, a); });
        set(Op::log1p, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* { return emit_log1p(e.B, a); });
        set(Op::expm1, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* { return emit_expm1(e.B, a); });
        set(Op::sqrt, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* { return e.B.CreateUnaryIntrinsic(Intrinsic::sqrt, a); });
        set(Op::tanh, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* { return emit_tanh(e.B, a); });
        set(Op::sigmoid, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* { return emit_sigmoid(e.B, a); });
        set(Op::softplus, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* { return emit_softplus(e.B, a); });
        set(Op::abs, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* { return e.B.CreateUnaryIntrinsic(Intrinsic::fabs, a); });
        set(Op::sign, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* {
            Type* t = a->getType();
            Value* z = ConstantFP::get(t, 0.0);
            return e.B.CreateSelect(e.B.CreateFCmpOGT(a, z), ConstantFP::get(t, 1.0),
                                    e.B.CreateSelect(e.B.CreateFCmpOLT(a, z), ConstantFP::get(t, -1.0), a));
        });
        set(Op::step, v_elementwise, [](Em& e, int, Value* a, Value*) -> Value* {
            Type* t = a->getType();
            Value* z = ConstantFP::get(t, 0.0);
            return e.B.CreateSelect(e.B.CreateFCmpOGE(a, z), ConstantFP::get(t, 1.0),
                                    e.B.CreateSelect(e.B.CreateFCmpOLT(a, z), z, a));
        });
        set(Op::add, v_elementwise, [](Em& e, int, Value* a, Value* b) -> Value* { return e.B.CreateFAdd(a, b); });
        set(Op::sub, v_elementwise, m_sub);
        set(Op::mul, v_elementwise, [](Em& e, int i, Value* a, Value* b) -> Value* { return e.mul0(a, b, e.P.g[i].a, e.P.g[i].b); });
        set(Op::div, v_elementwise, [](Em& e, int, Value* a, Value* b) -> Value* { return e.B.CreateFDiv(a, b); });
        set(Op::pow, v_elementwise, m_pow);
        set(Op::min, v_elementwise, m_minmax);
        set(Op::max, v_elementwise, m_minmax);
        set(Op::softmax, v_softmax);
        set(Op::log_softmax, v_softmax);
        set(Op::onehot, v_onehot);
        for (Op o : {Op::sum, Op::mean, Op::dot, Op::logsumexp, Op::amax, Op::at}) set(o, v_reduction);
        return x;
    }();
    return t;
}

}  // namespace

bool has_emitter(Op op) {
    const OpEmitter& x = table()[static_cast<std::size_t>(op)];
    if (x.value == nullptr) return false;
    return info(op).cls != OpClass::elementwise || x.math != nullptr;
}

}  // namespace lossjit::jit
