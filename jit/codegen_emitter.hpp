// The code generator's shared state and helpers (internal to jit/codegen*.cpp): the Em
// ("emitter") holds the Plan, the IRBuilder and the per-row values; Ctx says where a vector node
// is evaluated (one scalar row value, one gathered element, or VW lanes). Files:
//   codegen.cpp           emit_module: the function's signature and entry, then one of
//   codegen_row.cpp         row by row (one row at a time, vectors along the row)
//   codegen_row_pass.cpp    one pass over a row: reductions and vector outputs (Em::emit_pass)
//   codegen_rows.cpp        across rows (short rows: lanes are VW consecutive rows)
//   codegen_loops.cpp       the vector loop over [begin, end) and stage blocks
//   codegen_ops.cpp         the emitter table: one entry per op
#pragma once

#include <array>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/IntrinsicsX86.h>
#include <llvm/IR/MDBuilder.h>

#include "llvm.hpp"
#include "schedule.hpp"
#include "vecmath.hpp"

namespace lossjit::jit::codegen_detail {

using namespace llvm;

struct Ctx {
    enum Mode { scalar, gather, lanes } mode = scalar;
    Value* index = nullptr;  // gather: i64 element; lanes: i64 first element
    Value* mask = nullptr;   // lanes: <VW x i1>, or null for a full vector
    // lanes, Plan::bf16_pairs: -1, the VW elements from index; 0 or 1, the even or odd ones of
    // the 2 VW from index
    int pair = -1;
    std::vector<Value*> memo;
};

class Em;
using ValueFn = Value* (*)(Em&, int node, Ctx&);
using MathFn = Value* (*)(Em&, int node, Value* a, Value* b);

struct OpEmitter {
    ValueFn value = nullptr;  // the node's value in a context (scalar row, gather, lanes)
    MathFn math = nullptr;    // elementwise ops: the arithmetic on scalars or vectors
};

// The emitter of every op, indexed by Op (codegen_ops.cpp).
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
        lse_rest.assign(n, nullptr);
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
    // Plan::batched_tail: lo's argument, log1p(rest) = lo, left to the batch (lse_lo and the
    // logsumexp's value stay null in the row)
    std::vector<Value*> lse_rest;
    std::vector<int> slot_of;
    std::vector<Value*> label_val;  // per node: the row's label as i64
    Instruction* stage_end = nullptr;
    Ctx row_ctx;

    bool vec(int i) const { return i >= 0 && P.vector_node[static_cast<std::size_t>(i)]; }
    Constant* cf(double v, Type* t = nullptr) { return ConstantFP::get(t ? t : F, v); }
    Value* splat(Value* s) { return s->getType()->isVectorTy() ? s : B.CreateVectorSplat(static_cast<unsigned>(VW), s); }
    // <VW x i32> 0, 1, .., VW - 1
    Constant* lane_iota() {
        std::vector<Constant*> iota;
        for (int l = 0; l < VW; ++l) iota.push_back(ConstantInt::get(I32, static_cast<std::uint64_t>(l)));
        return ConstantVector::get(iota);
    }
    // <VW x i32> i, i + 1, .., i + VW - 1: the element indices of the vector at i64 i
    Value* lane_indices(Value* i) { return B.CreateAdd(splat(B.CreateTrunc(i, I32)), lane_iota()); }
    // The mask of the vector at element i's lanes before element end (a partial vector's).
    Value* lanes_before(Value* i, Value* end) {
        Value* lanes = lane_indices(i);  // first, in a statement of its own: C++ leaves the order of arguments open
        return B.CreateICmpSLT(lanes, splat(B.CreateTrunc(end, I32)));
    }
    // the element indices of a lanes context's vector (in pairs: i + 2l + pair)
    Value* lane_indices(const Ctx& c) {
        if (c.pair < 0) return lane_indices(c.index);
        std::vector<Constant*> at;
        for (int l = 0; l < VW; ++l) at.push_back(ConstantInt::get(I32, static_cast<std::uint64_t>(2 * l + c.pair)));
        return B.CreateAdd(splat(B.CreateTrunc(c.index, I32)), ConstantVector::get(at));
    }

    // Across rows (Plan::rows): lanes are VW consecutive rows; every node's value is a vector,
    // a per-row scalar one value per lane, a vector node at column j element j of each row.
    bool rows = false;
    Value* rowmask = nullptr;           // <VW x i1>: the lanes holding rows of [row_begin, row_end)
    std::vector<Value*> lane_off;       // per slot: <VW x i32> lane * stride (elements)
    AllocaInst* rows_exp = nullptr;     // the cached exps, K vectors (Plan::cache_lse)
    // per vector input slot: the block's columns, K vectors in a stack array (staged once per
    // block by a transposing load or by gathers); null for the other slots
    std::vector<AllocaInst*> rows_cols;
    // Column `col` of a block's stack array of K vectors (rows_cols, rows_exp): at i64 col, the
    // vector; at <VW x i64> col, lane l's element of column col[l] (a gather from the stack, its
    // i32 index extended here, in the gather's block, so that X86 selects one vgatherdps).
    Value* rows_staged(AllocaInst* cols, Value* col) {
        if (!col->getType()->isVectorTy()) return B.CreateAlignedLoad(VF, B.CreateGEP(VF, cols, col), Align(64));
        const auto n = static_cast<unsigned>(VW);
        Value* at = B.CreateAdd(B.CreateMul(B.CreateTrunc(col, FixedVectorType::get(I32, n)), splat(ConstantInt::get(I32, n))), lane_iota());
        Value* ptrs = B.CreateGEP(F, cols, B.CreateSExt(at, FixedVectorType::get(I64, n)));
        return B.CreateMaskedGather(VF, ptrs, Align(size_of(P.compute)), rowmask, Constant::getNullValue(VF));
    }
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
    // One value per row of the block (a label, a per-row output): contiguous when the slot's
    // stride is 1 (a column), gathered or scattered otherwise. A per-row output of stride 0 is
    // an unbound one (a bound one is refused: kernel.cpp), whose scratch nobody reads: not written.
    Value* rows_load_column(int slot) {
        const DType d = P.slots[static_cast<std::size_t>(slot)].dtype;
        Type* vt = FixedVectorType::get(storage(d), static_cast<unsigned>(VW));
        Value* contiguous = nullptr;
        Value* strided = nullptr;
        BasicBlock *from_contiguous = nullptr, *from_strided = nullptr;
        if_stride_one(slot, [&] {
            contiguous = B.CreateMaskedLoad(vt, row_base[static_cast<std::size_t>(slot)], Align(size_of(d)), rowmask, Constant::getNullValue(vt));
            from_contiguous = B.GetInsertBlock();
        }, [&] {
            strided = rows_load(slot, ConstantInt::get(I64, 0));
            from_strided = B.GetInsertBlock();
        });
        PHINode* v = B.CreatePHI(vt, 2);
        v->addIncoming(contiguous, from_contiguous);
        v->addIncoming(strided, from_strided);
        return v;
    }
    void rows_store_column(int slot, Value* v, Value* mask) {
        const DType d = P.slots[static_cast<std::size_t>(slot)].dtype;
        if_stride_one(slot, [&] { B.CreateMaskedStore(v, row_base[static_cast<std::size_t>(slot)], Align(size_of(d)), mask); },
                      [&] {
                          BasicBlock* scatter = BasicBlock::Create(C, "stride.scatter", fn);
                          BasicBlock* done = BasicBlock::Create(C, "stride.done", fn);
                          B.CreateCondBr(B.CreateICmpEQ(slot_stride[static_cast<std::size_t>(slot)], ConstantInt::get(I64, 0)), done, scatter);
                          B.SetInsertPoint(scatter);
                          B.CreateMaskedScatter(v, rows_ptrs(slot, ConstantInt::get(I64, 0)), Align(size_of(d)), mask);
                          B.CreateBr(done);
                          B.SetInsertPoint(done);
                      });
    }
    // if (the slot's stride is 1) one(); else other();
    void if_stride_one(int slot, const std::function<void()>& one, const std::function<void()>& other) {
        BasicBlock* yes = BasicBlock::Create(C, "stride.one", fn);
        BasicBlock* no = BasicBlock::Create(C, "stride.other", fn);
        BasicBlock* join = BasicBlock::Create(C, "stride.join", fn);
        B.CreateCondBr(B.CreateICmpEQ(slot_stride[static_cast<std::size_t>(slot)], ConstantInt::get(I64, 1)), yes, no);
        B.SetInsertPoint(yes);
        one();
        B.CreateBr(join);
        B.SetInsertPoint(no);
        other();
        B.CreateBr(join);
        B.SetInsertPoint(join);
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

    // x rounded to bf16, to nearest even (a NaN quieted), as an i32 whose low 16 bits hold it
    Value* bf16_bits(Value* x) {
        Type* f32 = with_lanes(Type::getFloatTy(C), x);
        if (x->getType() != f32) x = B.CreateFPTrunc(x, f32);
        Type* i32 = with_lanes(I32, x);
        Value* bits = B.CreateBitCast(x, i32);
        Value* lsb = B.CreateAnd(B.CreateLShr(bits, 16), ConstantInt::get(i32, 1));
        Value* rounded = B.CreateLShr(B.CreateAdd(B.CreateAdd(bits, ConstantInt::get(i32, 0x7fff)), lsb), 16);
        Value* quiet = B.CreateOr(B.CreateLShr(bits, 16), ConstantInt::get(i32, 0x40));
        return B.CreateSelect(B.CreateFCmpUNO(x, x), quiet, rounded);
    }
    // Whether x converts to bf16 with AVX512-BF16's vcvtne(2)ps2bf16: round to nearest even, a
    // NaN quieted, as bf16_bits; one instruction for the VW or 2 VW elements bf16_bits takes 9
    // or 20 for (bf16 fwd+bwd 1.06-1.18x in cache on a Zen 4, the subnormal test included).
    bool bf16_by_instruction(Value* x) const {
        auto* vt = dyn_cast<FixedVectorType>(x->getType());
        return T.bf16_convert && vt && vt->getNumElements() == 16 && vt->getElementType()->isFloatTy();
    }
    // `by_instruction`, or `in_integers` where a lane of xs is an fp32 subnormal: the instruction
    // reads those as 0, and bf16 keeps them (it has fp32's exponent range). One vfpclassps per
    // vector (AVX512-DQ) and a branch that is not taken in practice: bf16 fwd+bwd 1.03-1.05x
    // against LLVM's llvm.is.fpclass (an and, an add and an integer compare per vector).
    Value* bf16_unless_subnormal(const std::vector<Value*>& xs, const std::function<Value*()>& by_instruction,
                                 const std::function<Value*()>& in_integers) {
        Value* any = nullptr;
        for (Value* x : xs) {
            Value* sub = B.CreateCall(Intrinsic::getDeclaration(&M, Intrinsic::x86_avx512_fpclass_ps_512), {x, B.getInt32(0x20)});
            any = any ? B.CreateOr(any, sub) : sub;
        }
        Value* some = B.CreateOrReduce(any);
        BasicBlock* fast = BasicBlock::Create(C, "bf16.cvt", fn);
        BasicBlock* slow = BasicBlock::Create(C, "bf16.subnormal", fn);
        BasicBlock* join = BasicBlock::Create(C, "bf16.done", fn);
        B.CreateCondBr(some, slow, fast, MDBuilder(C).createBranchWeights(1, 1 << 20));
        B.SetInsertPoint(fast);
        Value* f = by_instruction();
        B.CreateBr(join);
        B.SetInsertPoint(slow);
        Value* sl = in_integers();
        BasicBlock* slow_end = B.GetInsertBlock();
        B.CreateBr(join);
        B.SetInsertPoint(join);
        PHINode* r = B.CreatePHI(f->getType(), 2);
        r->addIncoming(f, fast);
        r->addIncoming(sl, slow_end);
        return r;
    }
    // x rounded to bf16, as bits of the storage type (i16 lanes)
    Value* bf16_of(Value* x) {
        Type* i16 = with_lanes(Type::getInt16Ty(C), x);
        auto in_integers = [&] { return B.CreateTrunc(bf16_bits(x), i16); };
        if (!bf16_by_instruction(x)) return in_integers();
        return bf16_unless_subnormal({x}, [&] {
            return B.CreateBitCast(B.CreateCall(Intrinsic::getDeclaration(&M, Intrinsic::x86_avx512bf16_cvtneps2bf16_512), {x}), i16);
        }, in_integers);
    }
    // Plan::bf16_pairs: a pair's even and odd elements (VW each) as the 2 VW bf16 bits of their
    // elements in order
    Value* bf16_pair(Value* even, Value* odd) {
        auto* out = FixedVectorType::get(Type::getInt16Ty(C), static_cast<unsigned>(2 * VW));
        auto in_integers = [&] { return B.CreateBitCast(B.CreateOr(bf16_bits(even), B.CreateShl(bf16_bits(odd), 16)), out); };
        if (!bf16_by_instruction(even)) return in_integers();
        return bf16_unless_subnormal({even, odd}, [&] {
            // [even 0..VW-1 | odd 0..VW-1], interleaved by one vpermw
            Value* halves = B.CreateBitCast(B.CreateCall(Intrinsic::getDeclaration(&M, Intrinsic::x86_avx512bf16_cvtne2ps2bf16_512), {odd, even}), out);
            SmallVector<int, 32> order;
            for (int i = 0; i < 2 * VW; ++i) order.push_back(i % 2 * VW + i / 2);
            return B.CreateShuffleVector(halves, halves, order);
        }, in_integers);
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
        if (d == DType::bf16) return bf16_of(x);
        Type* want = with_lanes(storage(d), x);
        if (x->getType() == want) return x;
        return want->getScalarType()->isDoubleTy() ? B.CreateFPExt(x, want) : B.CreateFPTrunc(x, want);
    }

    Value* element_ptr(int slot, Value* index) {
        return B.CreateGEP(storage(P.slots[static_cast<std::size_t>(slot)].dtype), row_base[static_cast<std::size_t>(slot)], index);
    }
    Value* load_lanes(int slot, Ctx& c) {
        const DType d = P.slots[static_cast<std::size_t>(slot)].dtype;
        if (c.pair >= 0) {  // bf16 (Plan::bf16_pairs): 2 VW elements as VW i32, each an even element's bits below an odd's
            auto* vi = FixedVectorType::get(I32, static_cast<unsigned>(VW));
            Value* w = B.CreateAlignedLoad(vi, element_ptr(slot, c.index), Align(size_of(d)));
            Value* bits = c.pair == 0 ? B.CreateShl(w, 16) : B.CreateAnd(w, ConstantInt::get(vi, 0xffff0000u));
            return B.CreateBitCast(bits, VF);
        }
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
        return row_scalar(i, [&] { return table()[static_cast<std::size_t>(P.g[i].op)].value(*this, i, row_ctx); });
    }
    // Node i's per-row scalar, computed once per row at the end of the latest stage block (before
    // the pass that needs it, so before an in-place output overwrites its inputs). For a vector
    // node, whose value lives in its context, this is a scalar it needs besides (softmax - onehot).
    Value* row_scalar(int i, const std::function<Value*()>& compute) {
        Value*& v = scal[static_cast<std::size_t>(i)];
        if (v) return v;
        IRBuilderBase::InsertPointGuard guard(B);
        if (stage_end) B.SetInsertPoint(stage_end);
        v = compute();
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
        c.pair = mask ? -1 : loop_pair;
        c.memo.assign(static_cast<std::size_t>(P.g.size()), nullptr);
        return c;
    }
    Ctx gather_ctx(Value* index) {
        Ctx c;
        c.mode = Ctx::gather;
        c.index = index;
        c.memo.assign(static_cast<std::size_t>(P.g.size()), nullptr);
        return c;
    }
    Value* gather(int v, Value* index) {
        if (!vec(v)) return S(v);
        Ctx c = gather_ctx(index);
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
        return shuffle_tree(v, [this](Value* a, Value* b) { return B.CreateBinaryIntrinsic(Intrinsic::maxnum, a, b); });
    }
    Value* isneginf(Value* x) { return B.CreateFCmpOEQ(x, cf(-INFINITY, x->getType())); }
    // Whether a logsumexp hi + log1p(rest) is -inf, without waiting for the log1p: exactly when
    // hi is -inf and rest is no NaN (rest >= 0 where hi is finite: its maximal element counts;
    // an all -inf row has hi -inf and rest >= -1)
    Value* lse_is_neginf(Value* hi, Value* rest) { return B.CreateAnd(isneginf(hi), B.CreateFCmpORD(rest, rest)); }

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

    // pairs: a body whose lanes contexts take Em::loop_pair (a pass's loops), in bf16 pairs
    // where the plan has them; whole: end - begin is known to be a multiple of the loop's step
    // (no tail)
    void emit_loop(Value* begin, Value* end, const std::function<void(Value*, Value*, int)>& body, int copies = 0, bool pairs = false,
                   bool whole = false);
    void new_stage();
    // max_ahead: the pass whose logsumexps' maxes come from, and go to, the neighbouring rows
    void emit_pass(const Pass& ps, bool last, bool max_ahead = false);
    // Plan::max_ahead, row by row: the row whose maxes the previous row's exp loop took (-1:
    // none), those maxes (lanes) per logsumexp node; this row's index, the row after it (-1 at
    // the end of the call's rows) and that row's bases (this row's at the end: their maxes go
    // unused), set per row by codegen_row.cpp.
    AllocaInst* ahead_row = nullptr;
    std::vector<AllocaInst*> ahead_max;
    Value *row_index = nullptr, *next_row = nullptr;
    std::vector<Value*> next_base;
    // for (b0 = lo; b0 < hi; b0 += size) body(b0, min(b0 + size, hi)), over the row by default
    // (size 0: Plan::block); no loop when a known K fits one block (less IR to optimize and
    // select: JIT latency)
    void for_each_block(const std::function<void(Value*, Value*)>& body_of_block, std::size_t size = 0, Value* lo = nullptr, Value* hi = nullptr);
    // A write's element at a label (Plan::labels_after_loop): computed as a gather, before the
    // loop that may overwrite the inputs in place; stored after it, into the row given.
    struct LabelElement {
        std::size_t slot;
        Value* y;
        Value* v;  // in the output's storage type
    };
    LabelElement label_element(int label, int w);
    void store_label_element(const LabelElement& a, Value* row);

    // exp for the kernel's target (vscalefps on AVX-512)
    Value* exp(Value* x) { return emit_exp(B, x, T.avx512); }
    // exp of x - max(x) (<= 0, -inf or NaN), as in a logsumexp: no upper clamp needed
    Value* exp_nonpositive(Value* x) { return emit_exp_nonpositive(B, x, T.avx512); }
    // the same for exps that are only added up, not kept: one fma less, and on AVX-512 as two
    // factors for the fma that adds the term to its sum (emit_exp_summand, lse_accumulate)
    ExpTerm exp_summand(Value* x) { return emit_exp_summand(B, x, T.avx512); }
    // llvm.prefetch of the data at p, for reading or for writing (prefetchw), with LLVM's
    // locality: 3 into the L1 (prefetcht0), 2 into the L2 (prefetcht1)
    void prefetch(Value* p, bool write, int locality) {
        B.CreateIntrinsic(Intrinsic::prefetch, {B.getPtrTy()}, {p, B.getInt32(write ? 1 : 0), B.getInt32(locality), B.getInt32(1)});
    }
    // max(acc, x) ignoring a NaN x (x86's maxps: one instruction). Used where a NaN reaches the
    // result through another path anyway (logsumexp: exp(NaN - max) makes the sum NaN).
    Value* max_fast(Value* acc, Value* x) { return B.CreateSelect(B.CreateFCmpOGT(x, acc), x, acc); }
    // The two-pass logsumexp's accumulation of e = exp(x - max) over the lanes of `mask` (null:
    // all): added to `sum` where x is below the max; the elements at the max are not summed but
    // counted (a 1 in the sum would round the others away), as the elements the loop ran over
    // less those below it, which `count` counts with the sum's own compare. The sum is written
    // select(lanes, sum + e, sum): one masked add (or fma) on AVX-512. An i64 `count` counts them in a
    // popcount of the compare mask on the integer units, the FP units being the row kernel's
    // limit (a popcount of the elements at the max became a knotw, 9% of the loop on Zen 5); a
    // vector one per lane (across rows, where lanes are rows) with a masked add of 1 (a second
    // compare for those at the max cost an fma pipe's slot on Zen 4).
    // A term of two factors (ExpTerm::factor) is added in one masked fma.
    void lse_accumulate(Value* x, Value* max, ExpTerm e, Value* mask, AllocaInst* sum, AllocaInst* count) {
        Value* below = B.CreateFCmpUNE(x, max);  // a NaN x is below: its e makes the sum NaN
        if (mask) below = B.CreateAnd(below, mask);
        Value* s = B.CreateLoad(VF, sum);
        Value* added = e.factor ? B.CreateIntrinsic(Intrinsic::fma, {VF}, {e.scale, e.factor, s}) : B.CreateFAdd(s, e.scale);
        B.CreateStore(B.CreateSelect(below, added, s), sum);
        if (count->getAllocatedType() == I64) {
            Value* n = B.CreateUnaryIntrinsic(Intrinsic::ctpop, B.CreateBitCast(below, B.getIntNTy(static_cast<unsigned>(VW))));
            B.CreateStore(B.CreateAdd(B.CreateLoad(I64, count), B.CreateZExt(n, I64)), count);
            return;
        }
        Value* c = B.CreateLoad(VF, count);
        B.CreateStore(B.CreateSelect(below, B.CreateFAdd(c, ConstantFP::get(VF, 1.0)), c), count);
    }

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
    // the current block's factor exp(block max - max) / sum (a vector).
    Value* scratch = nullptr;
    // While the last pass's loop is emitted: onehot is 0 in every lane, and the outputs' elements
    // at the labels are computed apart (Plan::labels_after_loop).
    bool onehot_off = false;
    Value* cache_factor = nullptr;
    // Where the row is one block (across rows; K known and at most Plan::block), the kept exps'
    // sum (maximal elements counted) and the sum but one maximal element's 1, per row: the
    // factor is then 1 / sum, a division where the exp waited on the loss's log1p, and
    // cache_top is softmax - 1 at a kept exp of 1 (a maximal element), -rest / sum: softmax - 1
    // needs no expm1 of its own (a kept exp below 1 is a softmax below 1/2: p - 1 does not cancel).
    // cache_rest is set for rows of any length, row by row (label_minus_one).
    Value *cache_sum = nullptr, *cache_rest = nullptr;
    Value* cache_top = nullptr;
    // The same two per row, unsplatted: for a gather of the cached softmax (row by row), where
    // the row is one block.
    Value *row_factor = nullptr, *row_top = nullptr;
    void whole_row_softmax() {
        row_factor = B.CreateFDiv(ConstantFP::get(cache_sum->getType(), 1.0), cache_sum);
        row_top = B.CreateFNeg(B.CreateFDiv(cache_rest, cache_sum));
        cache_factor = splat(row_factor);
        cache_top = splat(row_top);
    }
    // Plan::stream_min_bytes: whether the batch moves that much (i1, from the entry block), and
    // while the last pass is emitted, whether this row's full-vector stores are streaming ones
    // (i1; null: no choice to make)
    Value* stream_call = nullptr;
    Value* stream_row = nullptr;
    Value *cache_M = nullptr, *cache_total = nullptr;  // the row's max, and its sum of exp(x - max)
    // The factor turning a block's kept exps exp(x - bm) into softmax: exp(bm - M) / total, and at
    // the block of the max (a branch) 1 / total, the one-block kernels' factor. It waits for the
    // sum and not for its log1p, a chain of some 40 operations, nor for an exp at the block of a
    // short row (generic K fwd+bwd: 24824x33 1.94 -> 2.31 GB/s, 8192x100 4.68 -> 5.40; as
    // exp(bm - M - lo) or without the branch, 2.09 and 4.99). Where both are the row's +inf max,
    // that is the top block: finite elements keep exp(-inf) * f = 0 and the +inf ones their NaN,
    // as exp(x - lse) in the other kernels. A block of -inf alone has bm 0 (its exps 0), above a
    // max under 0: bm - M is taken as at most 0, so that its f stays finite (exp(100) was inf,
    // and its gradient 0 * inf = NaN, at a max of -100).
    Value* cached_softmax_factor(Value* bm) { return softmax_factor(bm, cache_M, cache_total); }
    Value* softmax_factor(Value* bm, Value* M, Value* total) {
        BasicBlock* top = BasicBlock::Create(C, "block.top", fn);
        BasicBlock* below = BasicBlock::Create(C, "block.below", fn);
        BasicBlock* join = BasicBlock::Create(C, "block.factor", fn);
        B.CreateCondBr(B.CreateFCmpOEQ(bm, M), top, below);
        B.SetInsertPoint(below);
        Value* e = exp(B.CreateBinaryIntrinsic(Intrinsic::minnum, B.CreateFSub(bm, M), cf(0.0)));
        BasicBlock* below_end = B.GetInsertBlock();
        B.CreateBr(join);
        B.SetInsertPoint(top);
        B.CreateBr(join);
        B.SetInsertPoint(join);
        PHINode* f = B.CreatePHI(F, 2);
        f->addIncoming(ConstantFP::get(F, 1.0), top);
        f->addIncoming(e, below_end);
        return B.CreateFDiv(f, total);
    }
    // Plan::pipelined: the row whose last pass is pending (its gradient row, max and sum of
    // exp(x - max), whether it streams, its element at the label, computed while its inputs
    // were intact, and the scalars its write reads), and while a block of the next row's exp
    // loop is emitted, that row's factor for the block.
    struct Pending {
        AllocaInst *row = nullptr, *out = nullptr, *M = nullptr, *total = nullptr, *factor = nullptr, *stream = nullptr, *y = nullptr,
                   *at_y = nullptr;
        bool label = false;  // the pass writes softmax - onehot(y): an element at y
        std::vector<std::pair<int, AllocaInst*>> scalars;  // node, value (jit::pending_row_scalars)
    } pending;
    // non-null: the exp loop also does the pending row's vector, `pending_skew` elements ahead of
    // its own while that is before the end of the block's whole vectors `pending_end`
    // (pending_skewed_vector)
    Value *pending_factor = nullptr, *pending_skew = nullptr, *pending_end = nullptr;
    // Plan::bf16_pairs: while a loop's full-vector copy is emitted, its pair (0 even, 1 odd; -1
    // none), which its lanes contexts take (emit_loop)
    int loop_pair = -1;
    void pending_init();                                  // codegen_row.cpp
    void pending_none();                                  // no row pending (the scratch row stands in)
    void pending_carry();                                 // this row becomes the pending one
    void pending_vector(Value* i, Value* mask);           // one vector of the pending row
    Value* pending_block_factor(Value* b0);               // before this row's block max is kept
    Value* pending_row_skew();                            // this row's skew, in elements
    void pending_skewed_start(Value* b0, Value* be, Value* ahead);  // a block's first pending vectors
    void pending_skewed_vector(Value* i);                 // in the exp loop at i
    void pending_finish();                                // its element at the label; none pending
    void pending_pass();                                  // the whole pass, after the rows
    // A vector output's store: masked, streaming (a branch the row always takes the same way) or plain.
    void store_output(Value* st, Value* p, DType d, Value* mask, Value* stream);
    // Whether the vector at i streams where the row does (stream) but for the vector that holds
    // the element at label y, which a plain store writes after the loop: a plain store into a line
    // just streamed out waited for it to come back from memory, 250-350 ns a row (fwd+bwd
    // 16384x512: 4.4 GB/s against 19.6 with no streaming stores at all).
    Value* streams_but_label(Value* stream, Value* i, Value* y) {
        Value* holds_label = B.CreateICmpULT(B.CreateSub(y, i), ConstantInt::get(I64, static_cast<std::uint64_t>(store_width())));
        return B.CreateLogicalAnd(stream, B.CreateNot(holds_label));
    }
    Value* row_streams(std::size_t slot);  // i1: this row's full vectors of the output stream (null: never)
    // Elements a full-vector store of an output writes: VW, or 2 VW for bf16 pairs (a pair's
    // two vectors rejoined)
    int store_width() const { return P.bf16_pairs ? 2 * VW : VW; }
    // Where the kept exp of element i (i64) or of a lanes context's first element sits in the
    // scratch row: there, bf16 pairs (Plan::bf16_pairs) keep each 2 VW elements as their even
    // ones, then their odd ones, which the loops' pair copies store and load as vectors; the
    // elements past the last whole pair of the row (the masked tail) stay in order.
    Value* scratch_index(Value* i) {
        if (!P.bf16_pairs) return i;
        const auto g = static_cast<std::uint64_t>(2 * VW);
        Value* paired = B.CreateICmpULT(i, B.CreateAnd(K, ConstantInt::get(I64, ~(g - 1))));
        Value* at = B.CreateOr(B.CreateAnd(i, ConstantInt::get(I64, ~(g - 1))),
                               B.CreateOr(B.CreateMul(B.CreateAnd(i, ConstantInt::get(I64, 1)), ConstantInt::get(I64, VW)),
                                          B.CreateLShr(B.CreateAnd(i, ConstantInt::get(I64, g - 1)), ConstantInt::get(I64, 1))));
        return B.CreateSelect(paired, at, i);
    }
    Value* scratch_index(const Ctx& c) {
        return c.pair < 0 ? c.index : B.CreateAdd(c.index, ConstantInt::get(I64, static_cast<std::uint64_t>(c.pair * VW)));
    }
    // The scratch row's values (kept exps, or a kept node's) at [i, i + VW), masked (mask
    // non-null) or not.
    Value* scratch_vector(Value* i, Value* mask) {
        Value* p = B.CreateGEP(F, scratch, i);
        const Align al(size_of(P.compute));
        return mask ? static_cast<Value*>(B.CreateMaskedLoad(VF, p, al, mask, Constant::getNullValue(VF))) : B.CreateAlignedLoad(VF, p, al);
    }
    void store_scratch(Value* i, Value* v, Value* mask) {
        Value* p = B.CreateGEP(F, scratch, i);
        const Align al(size_of(P.compute));
        if (mask) B.CreateMaskedStore(v, p, al, mask);
        else B.CreateAlignedStore(v, p, al);
    }
    // Plan::kept_node: where element i's value sits in the scratch row (Plan::kept_offset(K) + i),
    // and whether this row's max loop has stored them (a pass after it reads them)
    Value* kept_index(Value* i) {
        const auto b = static_cast<std::uint64_t>(P.block);
        Value* blocks = B.CreateUDiv(B.CreateAdd(K, ConstantInt::get(I64, b - 1)), ConstantInt::get(I64, b));
        Value* end = B.CreateAdd(B.CreateAdd(K, ConstantInt::get(I64, 16 + 15)), blocks);
        return B.CreateAdd(B.CreateAnd(end, ConstantInt::get(I64, ~std::uint64_t{15})), i);
    }
    bool kept_ready = false;
    Value* scratch_block_max(Value* block_index) {
        Value* base = B.CreateGEP(F, scratch, B.CreateAdd(K, ConstantInt::get(I64, 16)));
        return B.CreateGEP(F, base, block_index);
    }
    AllocaInst* alloca(Type* t) {
        IRBuilder<> e(&fn->getEntryBlock(), fn->getEntryBlock().begin());
        return e.CreateAlloca(t);
    }
};

// The nodes the outputs use (through their arguments and a softmax's logsumexp): only these are
// emitted, and gathers among them are forced early.
std::vector<bool> live_nodes(const Plan& P);

// The body of the kernel function after its entry block's setup (slots loaded; acc: per scalar
// output slot, its running double sum, else null), one per strategy of Plan::rows.
void emit_row_by_row(Em& e, Value* rb, Value* re, Value* sums, const std::vector<AllocaInst*>& acc, Value* ignore, Value* state);
void emit_across_rows(Em& e, Value* rb, Value* re, Value* sums, const std::vector<AllocaInst*>& acc, Value* ignore, Value* state);

}  // namespace lossjit::jit::codegen_detail
