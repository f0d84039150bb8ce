// Codegen: Plan -> LLVM IR. See codegen.hpp for the kernel's ABI, schedule.hpp for the passes and
// codegen_emitter.hpp for the files of the code generator.
#include "codegen.hpp"

#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

#include "codegen_emitter.hpp"

namespace lossjit::jit {
namespace codegen_detail {

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

namespace {

// The function, its arguments and the entry block's loads, then the body of its strategy.
void emit_function(Em& e, const std::string& name) {
    auto& B = e.B;
    auto& C = e.C;
    const Plan& P = e.P;
    Type* ptr = PointerType::getUnqual(C);
    auto* fty = FunctionType::get(Type::getVoidTy(C), {e.I64, e.I64, e.I64, ptr, ptr, ptr, ptr, e.I64, ptr, e.I64}, false);
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
    Value* stream_stores = &*arg++;
    for (unsigned i : {3u, 4u, 5u, 6u, 8u}) fn->addParamAttr(i, Attribute::NoAlias);

    BasicBlock* entry = BasicBlock::Create(C, "entry", fn);
    B.SetInsertPoint(entry);
    e.K = P.K ? static_cast<Value*>(ConstantInt::get(e.I64, P.K)) : kval;
    e.Kf = B.CreateSIToFP(e.K, e.F);
    const std::size_t ns = P.slots.size();
    if (P.uses_scratch()) e.scratch = B.CreateLoad(ptr, B.CreateConstGEP1_64(ptr, data, ns));  // after the slots
    if (P.stream_min_bytes) e.stream_call = B.CreateICmpNE(stream_stores, ConstantInt::get(e.I64, 0));
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
    if (P.rows) emit_across_rows(e, rb, re, sums, acc, ignore, state);
    else emit_row_by_row(e, rb, re, sums, acc, ignore, state);
}

}  // namespace
}  // namespace codegen_detail

std::unique_ptr<llvm::Module> emit_module(llvm::LLVMContext& ctx, const Plan& plan, const Target& target,
                                          const std::string& name) {
    auto m = std::make_unique<llvm::Module>(name, ctx);
    codegen_detail::Em e(ctx, plan, target, *m);
    codegen_detail::emit_function(e, name);
    std::string msg;
    llvm::raw_string_ostream os(msg);
    if (llvm::verifyModule(*m, &os)) throw error("codegen produced invalid IR: " + os.str());
    return m;
}

}  // namespace lossjit::jit
