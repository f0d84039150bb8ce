// Loops and stage blocks of the emitted function (see codegen_emitter.hpp).
#include "codegen_emitter.hpp"

namespace lossjit::jit::codegen_detail {

void Em::emit_loop(Value* begin, Value* end, const std::function<void(Value*, Value*, int)>& body, int copies, bool pairs, bool whole) {
    const int U = copies > 0 ? copies : P.unroll;
    AllocaInst* iv = alloca(I64);
    B.CreateStore(begin, iv);
    if (U == 1 && P.masked_loop && !whole && !(isa<ConstantInt>(begin) && isa<ConstantInt>(end))) {
        // One loop, every iteration masked: with AVX-512's mask registers a masked load, store or
        // accumulation costs what an unmasked one does, and the body is emitted once (half the
        // code for LLVM to optimize and select: JIT latency).
        BasicBlock* bodyb = BasicBlock::Create(C, "masked.body", fn);
        BasicBlock* exit = BasicBlock::Create(C, "masked.exit", fn);
        B.CreateCondBr(B.CreateICmpSLT(begin, end), bodyb, exit);
        B.SetInsertPoint(bodyb);
        Value* i = B.CreateLoad(I64, iv);
        body(i, lanes_before(i, end), 0);
        Value* next = B.CreateAdd(i, ConstantInt::get(I64, VW));
        B.CreateStore(next, iv);
        B.CreateCondBr(B.CreateICmpSLT(next, end), bodyb, exit);
        B.SetInsertPoint(exit);
        return;
    }
    auto counted = [&](int step, int copies, const char* name) {
        const bool paired = pairs && P.bf16_pairs && copies % 2 == 0;
        BasicBlock* cond = BasicBlock::Create(C, std::string(name) + ".cond", fn);
        BasicBlock* bodyb = BasicBlock::Create(C, std::string(name) + ".body", fn);
        BasicBlock* exit = BasicBlock::Create(C, std::string(name) + ".exit", fn);
        B.CreateBr(cond);
        B.SetInsertPoint(cond);
        Value* i = B.CreateLoad(I64, iv);
        B.CreateCondBr(B.CreateICmpSLE(B.CreateAdd(i, ConstantInt::get(I64, step)), end), bodyb, exit);
        B.SetInsertPoint(bodyb);
        // bf16 pairs: copies 2m and 2m + 1 take the even and the odd elements of the 2 VW at
        // i + 2m VW, which the two copies in order would have taken
        for (int u = 0; u < copies; ++u) {
            loop_pair = paired ? u % 2 : -1;
            body(B.CreateAdd(i, ConstantInt::get(I64, (paired ? u - u % 2 : u) * VW)), nullptr, u);
        }
        loop_pair = -1;
        B.CreateStore(B.CreateAdd(i, ConstantInt::get(I64, step)), iv);
        B.CreateBr(cond);
        B.SetInsertPoint(exit);
    };
    // With both bounds known (K fixed at compile time, one block) the loops the trip count rules
    // out are not emitted at all, rather than left for LLVM's scalar-evolution passes to delete
    // (which cost more compile time than anything else in the pipeline: JIT latency).
    const auto* cb = dyn_cast<ConstantInt>(begin);
    const auto* ce = dyn_cast<ConstantInt>(end);
    const bool known = cb != nullptr && ce != nullptr;
    const std::int64_t n = known ? ce->getSExtValue() - cb->getSExtValue() : -1;
    const std::int64_t step = static_cast<std::int64_t>(VW) * U;
    if (!known || n >= step) counted(static_cast<int>(step), U, U > 1 ? "unrolled" : "vector");
    if (whole || (known && n % step == 0)) return;  // no tail
    if (known && n % step <= VW) {       // a tail of at most one vector: straight-line, no loop
        Value* i = B.CreateLoad(I64, iv);
        body(i, lanes_before(i, end), 0);
        return;
    }
    // masked tail: the lanes still inside [i, end); a loop when more than one vector may remain
    BasicBlock* tail = BasicBlock::Create(C, "tail", fn);
    BasicBlock* done = BasicBlock::Create(C, "tail.done", fn);
    B.CreateCondBr(B.CreateICmpSLT(B.CreateLoad(I64, iv), end), tail, done);
    B.SetInsertPoint(tail);
    Value* i = B.CreateLoad(I64, iv);
    body(i, lanes_before(i, end), 0);
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

}  // namespace lossjit::jit::codegen_detail
