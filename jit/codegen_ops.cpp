// The emitter table: one entry per op, giving the node's value in a context (and, for
// elementwise ops, the arithmetic on scalars or vectors).
#include "codegen_emitter.hpp"

namespace lossjit::jit::codegen_detail {

namespace {

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
            if (AllocaInst* cols = e.rows_cols[static_cast<std::size_t>(slot)]; cols && !c.index->getType()->isVectorTy())
                return e.rows_staged(cols, c.index);
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

// x - logsumexp(x) of a softmax or log_softmax node i in context c; a logsumexp reduced in a
// pass is taken as hi + lo, (x - max) - log(sum), exact near the max.
Value* minus_logsumexp(Em& e, int i, Ctx& c) {
    const Node& n = e.P.g[i];
    const int l = e.P.lse_of[static_cast<std::size_t>(i)];
    auto lanes = [&](Value* s) { return c.mode == Ctx::lanes ? e.splat(s) : s; };
    if (Value* hi = e.lse_hi[static_cast<std::size_t>(l)])
        return e.B.CreateFSub(e.B.CreateFSub(e.V(n.a, c), lanes(hi)), lanes(e.lse_lo[static_cast<std::size_t>(l)]));
    return e.B.CreateFSub(e.V(n.a, c), lanes(e.S(l)));
}

// Whether softmax node i in context c is the cached one (Plan::cache_lse): kept exps times a factor.
// A gather is one where the row is one block (Em::row_factor).
bool cached_softmax(Em& e, int i, const Ctx& c) {
    const bool here = c.mode == Ctx::lanes ? e.cache_factor != nullptr : c.mode == Ctx::gather && e.row_factor;
    return here && e.P.cached_softmax(i);
}
// A gather of the cached softmax where no row factor is (a row of several blocks, or before the
// last pass): exp(x_y - max) / sum, from the sums and not the log1p (Plan::batched_tail).
bool gathered_from_sums(Em& e, int i, const Ctx& c) {
    return c.mode == Ctx::gather && e.cache_total && e.P.cached_softmax(i);
}
// The kept exps exp(x - block max) of context c.
Value* kept_exp(Em& e, Ctx& c) {
    if (e.rows) return e.rows_staged(e.rows_exp, c.index);
    if (c.mode == Ctx::gather) return e.B.CreateAlignedLoad(e.F, e.B.CreateGEP(e.F, e.scratch, e.scratch_index(c.index)), Align(e.P.compute == DType::f64 ? 8 : 4));
    return e.scratch_vector(e.scratch_index(c), c.mask);
}
// The cached softmax's factor and top (Em::cache_top) in context c.
Value* cache_factor(Em& e, const Ctx& c) { return c.mode == Ctx::gather ? e.row_factor : e.cache_factor; }
Value* cache_top(Em& e, const Ctx& c) { return c.mode == Ctx::gather ? e.row_top : e.cache_top; }

Value* v_softmax(Em& e, int i, Ctx& c) {
    if (cached_softmax(e, i, c)) return e.B.CreateFMul(kept_exp(e, c), cache_factor(e, c));
    if (gathered_from_sums(e, i, c)) return e.B.CreateFDiv(e.exp(e.B.CreateFSub(e.V(e.P.g[i].a, c), e.cache_M)), e.cache_total);
    Value* x = minus_logsumexp(e, i, c);
    return e.P.g[i].op == Op::softmax ? e.exp(x) : x;
}

// softmax(sm's argument) - 1 at the label, the gather context g: expm1(x_y - lse); for the
// cached softmax, from its logsumexp's max M, sum total and rest = total - 1, known before the
// log1p (Plan::batched_tail leaves that to the batch): -rest / total where x_y is the max, else
// exp(x_y - M) / total - 1, where p_y <= 1/2 (the max's 1 is in the sum): no cancellation.
Value* label_minus_one(Em& e, int sm, Ctx& g) {
    if (!gathered_from_sums(e, sm, g)) return emit_expm1(e.B, minus_logsumexp(e, sm, g));
    auto& B = e.B;
    Value* d = B.CreateFSub(e.V(e.P.g[sm].a, g), e.cache_M);  // NaN at a +inf max: NaN, as expm1
    Value* top = B.CreateFNeg(B.CreateFDiv(e.cache_rest, e.cache_total));
    Value* below = B.CreateFSub(e.V(sm, g), e.cf(1.0));  // the softmax's gather from the sums
    return B.CreateSelect(B.CreateFCmpOEQ(d, e.cf(0.0)), top, below);
}

// softmax(x) - onehot(y), the cross-entropy gradient: at the label's column it cancels as
// p_y -> 1 (fp32 gives 0 where the value is -1.5e-8, an error of 100%), so there it is
// label_minus_one instead, one scalar per row, or from a cached softmax whose row is one block
// (across rows, or K known within Plan::block) minus the others' share (Em::cache_top); every
// element keeps its relative digits.
Value* v_sub(Em& e, int i, Ctx& c) {
    const Node& n = e.P.g[i];
    if (e.onehot_off && c.mode == Ctx::lanes && e.P.g[n.b].op == Op::onehot) return e.V(n.a, c);
    if (!e.vec(i) || e.P.g[n.a].op != Op::softmax || e.P.g[n.b].op != Op::onehot) return v_elementwise(e, i, c);
    if (cache_top(e, c) && cached_softmax(e, n.a, c)) {
        auto& B = e.B;
        Value* kept = kept_exp(e, c);
        Value* one = ConstantFP::get(kept->getType(), 1.0);
        Value* p = B.CreateFMul(kept, cache_factor(e, c));
        Value* at_label = B.CreateSelect(B.CreateFCmpOEQ(kept, one), cache_top(e, c), B.CreateFSub(p, one));
        return B.CreateSelect(B.CreateFCmpOEQ(e.V(n.b, c), one), at_label, p);
    }
    const int y = e.P.g[n.b].a;
    Value* at_label = e.row_scalar(i, [&] {
        Ctx g = e.gather_ctx(e.label_index(y));
        return label_minus_one(e, n.a, g);
    });
    // the element at the onehot's own label (Plan::labels_after_loop's gather): that alone
    if (c.mode == Ctx::gather && c.index == e.label_index(y)) return at_label;
    Value* d = v_elementwise(e, i, c);
    Value* hit = e.B.CreateFCmpOEQ(e.V(n.b, c), ConstantFP::get(d->getType(), 1.0));
    return e.B.CreateSelect(hit, d->getType()->isVectorTy() ? e.splat(at_label) : at_label, d);
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
    if (e.onehot_off && c.mode == Ctx::lanes) return ConstantFP::get(e.VF, 0.0);
    Value* y = e.label_index(n.a);
    if (e.rows) {  // y: the rows' labels; c.index: column j or, gathering, the rows' columns
        auto* v32 = FixedVectorType::get(e.I32, static_cast<unsigned>(e.VW));
        Value* j = c.index->getType()->isVectorTy() ? e.B.CreateTrunc(c.index, v32) : e.splat(e.B.CreateTrunc(c.index, e.I32));
        Value* hit = e.B.CreateICmpEQ(e.B.CreateTrunc(y, v32), j);
        return e.B.CreateSelect(hit, ConstantFP::get(e.VF, 1.0), ConstantFP::get(e.VF, 0.0));
    }
    if (c.mode == Ctx::gather) return e.B.CreateSelect(e.B.CreateICmpEQ(c.index, y), e.cf(1.0), e.cf(0.0));
    Value* hit = e.B.CreateICmpEQ(e.lane_indices(c), e.splat(e.B.CreateTrunc(y, e.I32)));
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
            // pow(-inf, p) = pow(+inf, p) for a non-integer p (C's pow), where sqrt would give NaN
            Value* x = B.CreateSelect(B.CreateFCmpOEQ(a, ConstantFP::getInfinity(t, true)), ConstantFP::getInfinity(t), a);
            Value* s = B.CreateUnaryIntrinsic(Intrinsic::sqrt, x);
            Value* r = B.CreateFMul(ipow(x, static_cast<long>(std::floor(std::fabs(p)))), s);
            return p < 0 ? B.CreateFDiv(one(), r) : r;
        }
    }
    // general: exp(b log|a|), signed for negative a and integer b
    Value* r = e.exp(B.CreateFMul(b, emit_log(B, B.CreateUnaryIntrinsic(Intrinsic::fabs, a))));
    Value* fl = B.CreateUnaryIntrinsic(Intrinsic::floor, b);
    Value* isint = B.CreateFCmpOEQ(fl, b);
    Value* half = B.CreateFMul(b, ConstantFP::get(t, 0.5));
    Value* odd = B.CreateAnd(isint, B.CreateFCmpONE(B.CreateUnaryIntrinsic(Intrinsic::floor, half), half));
    // a negative base with a non-integer exponent: NaN, except pow(-inf, b) = pow(+inf, b)
    Value* neg_inf = B.CreateFCmpOEQ(a, ConstantFP::getInfinity(t, true));
    Value* neg = B.CreateSelect(isint, B.CreateSelect(odd, B.CreateFNeg(r), r), B.CreateSelect(neg_inf, r, ConstantFP::getNaN(t)));
    r = B.CreateSelect(B.CreateFCmpOLT(a, ConstantFP::get(t, 0.0)), neg, r);
    r = B.CreateSelect(B.CreateFCmpOEQ(b, ConstantFP::get(t, 0.0)), one(), r);
    // pow(1, b) = 1, and pow(-1, +-inf) = 1 (C's pow), where b log|a| is inf * 0
    Value* b_inf = B.CreateFCmpOEQ(B.CreateUnaryIntrinsic(Intrinsic::fabs, b), ConstantFP::getInfinity(t));
    Value* unit = B.CreateOr(B.CreateFCmpOEQ(a, one()), B.CreateAnd(B.CreateFCmpOEQ(a, ConstantFP::get(t, -1.0)), b_inf));
    return B.CreateSelect(unit, one(), r);
}

Value* m_minmax(Em& e, int i, Value* a, Value* b) {
    auto& B = e.B;
    Value* pick = e.P.g[i].op == Op::min ? B.CreateFCmpOLT(a, b) : B.CreateFCmpOGT(a, b);
    Value* r = B.CreateSelect(pick, a, b);           // b when b is NaN
    return B.CreateSelect(B.CreateFCmpUNO(a, a), a, r);  // a when a is NaN
}

}  // namespace

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
        set(Op::sub, v_sub, m_sub);
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


}  // namespace lossjit::jit::codegen_detail

namespace lossjit::jit {

bool has_emitter(Op op) {
    const codegen_detail::OpEmitter& x = codegen_detail::table()[static_cast<std::size_t>(op)];
    if (x.value == nullptr) return false;
    return info(op).cls != OpClass::elementwise || x.math != nullptr;
}

}  // namespace lossjit::jit::codegen_detail
