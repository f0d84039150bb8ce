// Accuracy and vectorization of jit/vecmath: every emitter, fp32 and fp64, JIT-compiled at O3
// for the host CPU, measured in ulps against the long double C library over >= 10^6 inputs,
// with exact checks of the special values, and a check that the optimized IR calls no libm.
//
// LOSSJIT_VECMATH_SAMPLES=N changes the number of inputs per function and type (default 2^20);
// LOSSJIT_VECMATH_CPU=name compiles for that CPU instead of the host's (e.g. x86-64-v3 for AVX2,
// x86-64 for SSE2 without fma, where llvm.fma becomes a call to fmaf: exact but slow).

#include <catch2/catch.hpp>

#include "../../jit/vecmath.hpp"

#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Emit = llvm::Value* (*)(llvm::IRBuilderBase&, llvm::Value*);

// ---- the functions under test and their long double references ----------------------------

long double ref_sigmoid(long double x) {
    return x >= 0 ? 1.0L / (1.0L + expl(-x)) : expl(x) / (1.0L + expl(x));
}
long double ref_softplus(long double x) {
    return x > 0 ? x + log1pl(expl(-x)) : log1pl(expl(x));
}

struct Fn {
    const char* name;
    Emit emit;
    long double (*ref)(long double);
    double lo32, hi32, lo64, hi64;   // where the function does something (uniform sampling)
    std::vector<double> points32, points64;  // dense sampling around these
    double ulp_per_x32 = 0, ulp_per_x64 = 0;  // error allowed beyond 4 ulp per unit of |x|
    double floor32 = -INFINITY;  // fp32: computes f(max(x, floor32)) (exp's AVX-512 summands)
};

template <class T>
double floor_of(const Fn& fn) { return sizeof(T) == 4 ? fn.floor32 : -INFINITY; }

// The host has AVX-512F (and no LOSSJIT_VECMATH_CPU override): exp's vscalefps path is
// tested too, as "exp_avx512", on the same points as exp, and its variant for arguments <= 0
// (a logsumexp's x - max) as "exp_nonpositive_avx512", on exp's points <= 0 ("exp_nonpositive"
// on every host). The variant for a sum's terms, "exp_summand" (and "exp_summand_avx512" there),
// on the same points, may be off by 0.05 |x| (fp32) / 0.3 |x| (fp64) ulp more: its reduction
// rounds ln2 (vecmath.hpp), as the fp32 exp_nonpositive's does; the fp32 AVX-512 summand computes
// exp(max(x, -87)) (Fn::floor32).
bool host_avx512() {
    if (std::getenv("LOSSJIT_VECMATH_CPU")) return false;
    const llvm::StringMap<bool> f = llvm::sys::getHostCPUFeatures();
    auto it = f.find("avx512f");
    return it != f.end() && it->second;
}

std::vector<Fn> make_functions();
// exp's entry restricted to x <= 0 (a logsumexp's x - max), under another name and emitter
Fn nonpositive(Fn exp, const char* name, Emit emit, double ulp_per_x32 = 0, double ulp_per_x64 = 0) {
    exp.name = name;
    exp.emit = emit;
    exp.hi32 = exp.hi64 = 0;
    auto keep_nonpositive = [](std::vector<double>& p) { std::erase_if(p, [](double x) { return x > 0; }); };
    keep_nonpositive(exp.points32);
    keep_nonpositive(exp.points64);
    exp.ulp_per_x32 = ulp_per_x32;
    exp.ulp_per_x64 = ulp_per_x64;
    return exp;
}
const std::vector<Fn>& functions() {
    static const std::vector<Fn> fns = [] {
        std::vector<Fn> v = make_functions();
        const Fn exp = v[0];
        v.push_back(nonpositive(exp, "exp_summand", [](llvm::IRBuilderBase& b, llvm::Value* x) { return lossjit::jit::exp_term_value(b, lossjit::jit::emit_exp_summand(b, x, false)); }, 0.05, 0.3));
        v.push_back(nonpositive(exp, "exp_nonpositive", [](llvm::IRBuilderBase& b, llvm::Value* x) { return lossjit::jit::emit_exp_nonpositive(b, x, false); }, 0.05));
        if (host_avx512()) {
            Fn e = exp;
            e.name = "exp_avx512";
            e.emit = lossjit::jit::emit_exp_avx512;
            v.push_back(e);
            v.push_back(nonpositive(exp, "exp_nonpositive_avx512", lossjit::jit::emit_exp_nonpositive_avx512, 0.05));
            Fn s = nonpositive(exp, "exp_summand_avx512", [](llvm::IRBuilderBase& b, llvm::Value* x) { return lossjit::jit::exp_term_value(b, lossjit::jit::emit_exp_summand(b, x, true)); }, 0.05, 0.3);
            s.floor32 = -87.0;
            v.push_back(s);
        }
        return v;
    }();
    return fns;
}

std::vector<Fn> make_functions() {
    return {
        {"exp", lossjit::jit::emit_exp, [](long double x) { return expl(x); }, -110, 92, -750, 712,
         {0.0, 88.72284, -87.33654, -103.2789, -103.9721, 0.34657359, -0.34657359, 1.0397208},
         {0.0, 709.7827, -708.3964, -744.4401, -745.1332, 0.34657359, -0.34657359}},
        {"log", lossjit::jit::emit_log, [](long double x) { return logl(x); }, 0, 10, 0, 10,
         {0.0, 1.0, 0.70710678, 1.41421356, 0x1p-126, 2.0, 0.5},
         {0.0, 1.0, 0.70710678, 1.41421356, 0x1p-1022, 2.0, 0.5}},
        {"log1p", lossjit::jit::emit_log1p, [](long double x) { return log1pl(x); }, -1, 10, -1, 10,
         {0.0, -1.0, 1.0, -0.29289322, 0.41421356, -0.5},
         {0.0, -1.0, 1.0, -0.29289322, 0.41421356, -0.5}},
        {"expm1", lossjit::jit::emit_expm1, [](long double x) { return expm1l(x); }, -20, 92, -42,
         712, {0.0, 0.34657359, -0.34657359, 16.98, 17.33, 88.72284, -17.0},
         {0.0, 0.34657359, -0.34657359, 37.08, 709.7827, -37.0}},
        {"tanh", lossjit::jit::emit_tanh, [](long double x) { return tanhl(x); }, -10, 10, -21, 21,
         {0.0, 0.625, -0.625, 9.02, -9.02, 10.0}, {0.0, 0.625, -0.625, 19.07, -19.07, 20.0}},
        {"sigmoid", lossjit::jit::emit_sigmoid, ref_sigmoid, -110, 20, -750, 40,
         {0.0, -87.33654, -103.2789, 16.6355, 17.3},
         {0.0, -708.3964, -744.4401, 36.7368, 37.5}},
        {"softplus", lossjit::jit::emit_softplus, ref_softplus, -110, 20, -750, 40,
         {0.0, -87.33654, -103.2789, 16.6355, 17.3},
         {0.0, -708.3964, -744.4401, 36.7368, 37.5}},
    };
}

// ---- a tiny JIT: host CPU, O3 with the new pass manager --------------------------------------

std::string cpu_description() {
    const char* cpu = std::getenv("LOSSJIT_VECMATH_CPU");
    return cpu ? cpu : llvm::sys::getHostCPUName().str();
}

void optimize_o3(llvm::Module& m, llvm::TargetMachine& tm) {
    llvm::LoopAnalysisManager lam;
    llvm::FunctionAnalysisManager fam;
    llvm::CGSCCAnalysisManager cgam;
    llvm::ModuleAnalysisManager mam;
    llvm::PassBuilder pb(&tm);
    pb.registerModuleAnalyses(mam);
    pb.registerCGSCCAnalyses(cgam);
    pb.registerFunctionAnalyses(fam);
    pb.registerLoopAnalyses(lam);
    pb.crossRegisterProxies(lam, fam, cgam, mam);
    pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(m, mam);
}

struct Harness {
    std::unique_ptr<llvm::orc::LLJIT> jit;
    std::unique_ptr<llvm::TargetMachine> tm;

    Harness() {
        llvm::InitializeNativeTarget();
        llvm::InitializeNativeTargetAsmPrinter();
        auto jtmb = llvm::cantFail(llvm::orc::JITTargetMachineBuilder::detectHost());
        if (const char* cpu = std::getenv("LOSSJIT_VECMATH_CPU")) {  // e.g. x86-64-v3 (AVX2)
            jtmb.setCPU(cpu);
            jtmb.setFeatures("");
        }
        jtmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
        tm = llvm::cantFail(jtmb.createTargetMachine());
        jit = llvm::cantFail(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(jtmb).create());
    }

    std::unique_ptr<llvm::Module> new_module(llvm::LLVMContext& ctx, const char* name) {
        auto m = std::make_unique<llvm::Module>(name, ctx);
        m->setDataLayout(tm->createDataLayout());
        m->setTargetTriple(tm->getTargetTriple().str());
        return m;
    }
};

Harness& harness() {
    static Harness h;
    return h;
}

// Marks a loop latch so the loop vectorizer leaves it scalar (the tail must stay width 1).
void keep_scalar(llvm::BranchInst* latch) {
    llvm::LLVMContext& ctx = latch->getContext();
    llvm::Metadata* no_vec[] = {llvm::MDString::get(ctx, "llvm.loop.vectorize.enable"),
                                llvm::ConstantAsMetadata::get(llvm::ConstantInt::getFalse(ctx))};
    llvm::Metadata* no_unroll[] = {llvm::MDString::get(ctx, "llvm.loop.unroll.disable")};
    llvm::Metadata* ops[] = {nullptr, llvm::MDNode::get(ctx, no_vec),
                             llvm::MDNode::get(ctx, no_unroll)};
    llvm::MDNode* id = llvm::MDNode::getDistinct(ctx, ops);
    id->replaceOperandWith(0, id);
    latch->setMetadata(llvm::LLVMContext::MD_loop, id);
}

// void name(const T* in, T* out, i64 n): vectors of width W while they fit, then width 1.
void build_kernel(llvm::Module& m, const std::string& name, llvm::Type* elt, unsigned w, Emit emit) {
    llvm::LLVMContext& ctx = m.getContext();
    llvm::IRBuilder<> b(ctx);
    llvm::Type* ptr = b.getPtrTy();
    llvm::Type* i64 = b.getInt64Ty();
    auto* fty = llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr, i64}, false);
    auto* f = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, name, m);
    llvm::Value* in = f->getArg(0);
    llvm::Value* out = f->getArg(1);
    llvm::Value* n = f->getArg(2);
    f->addParamAttr(0, llvm::Attribute::NoAlias);
    f->addParamAttr(1, llvm::Attribute::NoAlias);

    auto* entry = llvm::BasicBlock::Create(ctx, "entry", f);
    auto* vhead = llvm::BasicBlock::Create(ctx, "vec.head", f);
    auto* vbody = llvm::BasicBlock::Create(ctx, "vec.body", f);
    auto* shead = llvm::BasicBlock::Create(ctx, "tail.head", f);
    auto* sbody = llvm::BasicBlock::Create(ctx, "tail.body", f);
    auto* exit = llvm::BasicBlock::Create(ctx, "exit", f);
    llvm::Align align(elt->getPrimitiveSizeInBits() / 8);

    b.SetInsertPoint(entry);
    b.CreateBr(vhead);

    b.SetInsertPoint(vhead);
    llvm::PHINode* i = b.CreatePHI(i64, 2, "i");
    i->addIncoming(b.getInt64(0), entry);
    llvm::Value* inext = b.CreateAdd(i, b.getInt64(w));
    b.CreateCondBr(b.CreateICmpSLE(inext, n), vbody, shead);

    b.SetInsertPoint(vbody);
    llvm::Type* vty = llvm::FixedVectorType::get(elt, w);
    llvm::Value* x = b.CreateAlignedLoad(vty, b.CreateGEP(elt, in, i), align);
    b.CreateAlignedStore(emit(b, x), b.CreateGEP(elt, out, i), align);
    i->addIncoming(inext, vbody);
    b.CreateBr(vhead);

    b.SetInsertPoint(shead);
    llvm::PHINode* j = b.CreatePHI(i64, 2, "j");
    j->addIncoming(i, vhead);
    b.CreateCondBr(b.CreateICmpSLT(j, n), sbody, exit);

    b.SetInsertPoint(sbody);
    llvm::Value* xs = b.CreateAlignedLoad(elt, b.CreateGEP(elt, in, j), align);
    b.CreateAlignedStore(emit(b, xs), b.CreateGEP(elt, out, j), align);
    j->addIncoming(b.CreateAdd(j, b.getInt64(1)), sbody);
    keep_scalar(b.CreateBr(shead));

    b.SetInsertPoint(exit);
    b.CreateRetVoid();
}

template <class T>
using KernelFn = void (*)(const T*, T*, int64_t);

struct Kernels {
    std::vector<KernelFn<float>> f32;
    std::vector<KernelFn<double>> f64;
};

// All 14 kernels in one module, optimized at O3 and added to the JIT once.
const Kernels& kernels() {
    static const Kernels k = [] {
        Harness& h = harness();
        auto ctx = std::make_unique<llvm::LLVMContext>();
        auto m = h.new_module(*ctx, "vecmath_kernels");
        for (const Fn& fn : functions()) {
            build_kernel(*m, std::string(fn.name) + "_f32", llvm::Type::getFloatTy(*ctx), 16,
                         fn.emit);
            build_kernel(*m, std::string(fn.name) + "_f64", llvm::Type::getDoubleTy(*ctx), 8,
                         fn.emit);
        }
        if (llvm::verifyModule(*m, &llvm::errs())) FAIL("kernel module does not verify");
        optimize_o3(*m, *h.tm);
        llvm::cantFail(
            h.jit->addIRModule(llvm::orc::ThreadSafeModule(std::move(m), std::move(ctx))));
        Kernels out;
        for (const Fn& fn : functions()) {
            out.f32.push_back(llvm::cantFail(h.jit->lookup(std::string(fn.name) + "_f32"))
                                  .toPtr<KernelFn<float>>());
            out.f64.push_back(llvm::cantFail(h.jit->lookup(std::string(fn.name) + "_f64"))
                                  .toPtr<KernelFn<double>>());
        }
        return out;
    }();
    return k;
}

template <class T>
KernelFn<T> kernel(std::size_t idx) {
    if constexpr (std::is_same_v<T, float>) return kernels().f32[idx];
    else return kernels().f64[idx];
}

// ---- ulps -------------------------------------------------------------------------------------

// |got - ref| in units of the last place of T at ref (the denormal spacing below the normal
// range, so results that underflow are judged by absolute error there). A ref beyond the
// largest finite T (after rounding) expects inf.
template <class T>
double ulp_error(T got, long double ref) {
    using L = std::numeric_limits<T>;
    if (std::isnan(ref)) return std::isnan(got) ? 0.0 : INFINITY;
    if (std::isnan(got)) return INFINITY;
    long double maxv = L::max();
    long double overflow = maxv + ldexpl(1.0L, L::max_exponent - L::digits - 1);  // max + ulp/2
    if (fabsl(ref) >= overflow) return (std::isinf(got) && (got > 0) == (ref > 0)) ? 0.0 : INFINITY;
    if (std::isinf(got)) return INFINITY;
    int e = ref == 0 ? L::min_exponent - 1 : std::max(ilogbl(ref), L::min_exponent - 1);
    long double ulp = ldexpl(1.0L, e - (L::digits - 1));
    return static_cast<double>(fabsl(static_cast<long double>(got) - ref) / ulp);
}

std::size_t sample_count() {
    if (const char* s = std::getenv("LOSSJIT_VECMATH_SAMPLES")) return std::strtoull(s, nullptr, 10);
    return std::size_t{1} << 20;
}

// Inputs: a third random finite bit patterns (the whole range, log-uniform in effect), a third
// uniform over where the function varies, a third dense around the interesting points (log-
// uniform offsets from 2^-min down to the denormals, plus runs of consecutive values).
template <class T>
std::vector<T> make_inputs(const Fn& fn, std::size_t n) {
    using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    std::mt19937_64 rng(0x10551711ull + n);
    std::vector<T> xs;
    xs.reserve(n + 4096);
    const bool f32 = sizeof(T) == 4;
    while (xs.size() < n / 3) {
        T v = std::bit_cast<T>(static_cast<U>(rng()));
        if (std::isfinite(v)) xs.push_back(v);
    }
    const double lo = f32 ? fn.lo32 : fn.lo64, hi = f32 ? fn.hi32 : fn.hi64;
    std::uniform_real_distribution<double> uni(lo, hi);
    while (xs.size() < 2 * n / 3) xs.push_back(static_cast<T>(uni(rng)));
    const auto& pts = f32 ? fn.points32 : fn.points64;
    const int min_log2 = std::numeric_limits<T>::min_exponent - std::numeric_limits<T>::digits;
    std::uniform_real_distribution<double> expo(min_log2, 3.0);
    for (std::size_t p = 0; xs.size() < n; p = (p + 1) % pts.size()) {
        T c = static_cast<T>(pts[p]);
        T off = static_cast<T>(std::exp2(expo(rng)));
        xs.push_back(static_cast<T>(c + ((rng() & 1) ? off : -off)));
        if ((rng() & 15) == 0) {  // a run of 64 consecutive values from c
            T v = c;
            for (int k = 0; k < 64; ++k) xs.push_back(v = std::nextafter(v, T(INFINITY)));
            v = c;
            for (int k = 0; k < 64; ++k) xs.push_back(v = std::nextafter(v, T(-INFINITY)));
        }
    }
    if (hi <= 0)  // a function of x <= 0 only (exp_nonpositive): the other inputs mirrored
        for (T& x : xs) x = x > 0 ? -x : x;
    return xs;
}

struct Stats {
    double max_ulp = 0, mean_ulp = 0;
    double max_excess = 0;  // the largest error beyond the function's allowance for |x|
    long double worst_x = 0;
    std::size_t n = 0, mismatches = 0;
};

// Runs the kernel twice: once over the whole array (vector path, width-1 tail) and once one
// element per call (width-1 path only); both must agree bit for bit and with the reference.
template <class T>
Stats measure(std::size_t idx, const Fn& fn) {
    std::vector<T> xs = make_inputs<T>(fn, sample_count());
    std::vector<T> yv(xs.size()), ys(xs.size());
    KernelFn<T> k = kernel<T>(idx);
    k(xs.data(), yv.data(), static_cast<int64_t>(xs.size()));
    for (std::size_t i = 0; i < xs.size(); ++i) k(&xs[i], &ys[i], 1);
    Stats st;
    double sum = 0;
    const double floor = floor_of<T>(fn);
    for (std::size_t i = 0; i < xs.size(); ++i) {
        if (std::memcmp(&yv[i], &ys[i], sizeof(T)) != 0 && !(std::isnan(yv[i]) && std::isnan(ys[i])))
            ++st.mismatches;
        long double r = fn.ref(std::isnan(xs[i]) ? xs[i] : std::max(static_cast<long double>(xs[i]), static_cast<long double>(floor)));
        double e = std::max(ulp_error<T>(yv[i], r), ulp_error<T>(ys[i], r));
        if (e > st.max_ulp) {
            st.max_ulp = e;
            st.worst_x = xs[i];
        }
        const double per_x = sizeof(T) == 4 ? fn.ulp_per_x32 : fn.ulp_per_x64;
        st.max_excess = std::max(st.max_excess, e - per_x * std::fabs(static_cast<double>(xs[i])));
        sum += e;
    }
    st.n = xs.size();
    st.mean_ulp = sum / static_cast<double>(xs.size());
    return st;
}

template <class T>
void accuracy_table(const char* dtype) {
    std::ostringstream table;
    table << "\nvecmath " << dtype << " on " << cpu_description() << " (" << sample_count()
          << "+ inputs each)\n"
          << "| function | max ulp | mean ulp | worst input |\n|---|---|---|---|\n";
    std::vector<Stats> all;
    for (std::size_t i = 0; i < functions().size(); ++i) {
        Stats st = measure<T>(i, functions()[i]);
        all.push_back(st);
        table << "| " << functions()[i].name << " | " << std::fixed << std::setprecision(3)
              << st.max_ulp << " | " << std::setprecision(4) << st.mean_ulp << " | "
              << std::setprecision(std::numeric_limits<T>::max_digits10) << std::defaultfloat
              << static_cast<double>(st.worst_x) << " |\n";
    }
    std::cout << table.str() << std::flush;
    WARN(table.str());
    for (std::size_t i = 0; i < functions().size(); ++i) {
        INFO(dtype << " " << functions()[i].name << ": max " << all[i].max_ulp << " ulp at x = "
                   << static_cast<double>(all[i].worst_x) << ", mean " << all[i].mean_ulp);
        CHECK(all[i].n >= std::min<std::size_t>(1000000, sample_count()));
        CHECK(all[i].mismatches == 0);
        CHECK(all[i].max_excess <= 4.0);
    }
}

// ---- exact special values ---------------------------------------------------------------------

template <class T>
bool same(T got, T want) {
    if (std::isnan(want)) return std::isnan(got);
    return std::memcmp(&got, &want, sizeof(T)) == 0;  // also tells -0 from +0
}

template <class T>
void check_specials() {
    using L = std::numeric_limits<T>;
    const T inf = L::infinity(), nan = L::quiet_NaN(), dmin = L::denorm_min(), big = L::max();
    const T tiny = L::min() / 8;  // a denormal
    struct Case {
        const char* fn;
        T x, want;
    };
    const T huge_exp = sizeof(T) == 4 ? T(89) : T(710);
    const Case cases[] = {
        {"exp", -inf, 0},          {"exp", inf, inf},      {"exp", nan, nan},
        {"exp", T(0), 1},          {"exp", T(-0.0), 1},    {"exp", huge_exp, inf},
        {"exp", big, inf},         {"exp", -big, 0},       {"exp", T(-1000), 0},
        {"exp", dmin, 1},
        {"log", T(0), -inf},       {"log", T(-0.0), -inf}, {"log", T(-1), nan},
        {"log", -dmin, nan},       {"log", inf, inf},      {"log", -inf, nan},
        {"log", nan, nan},         {"log", T(1), 0},
        {"log1p", T(-1), -inf},    {"log1p", T(-2), nan},  {"log1p", -inf, nan},
        {"log1p", inf, inf},       {"log1p", nan, nan},    {"log1p", T(0), 0},
        {"log1p", T(-0.0), T(-0.0)}, {"log1p", dmin, dmin}, {"log1p", -tiny, -tiny},
        {"expm1", T(0), 0},        {"expm1", T(-0.0), T(-0.0)}, {"expm1", inf, inf},
        {"expm1", -inf, -1},       {"expm1", nan, nan},    {"expm1", dmin, dmin},
        {"expm1", -tiny, -tiny},   {"expm1", big, inf},    {"expm1", T(-1000), -1},
        {"tanh", T(0), 0},         {"tanh", T(-0.0), T(-0.0)}, {"tanh", inf, 1},
        {"tanh", -inf, -1},        {"tanh", nan, nan},     {"tanh", T(30), 1},
        {"tanh", T(-30), -1},      {"tanh", big, 1},       {"tanh", dmin, dmin},
        {"tanh", -tiny, -tiny},
        {"sigmoid", inf, 1},       {"sigmoid", -inf, 0},   {"sigmoid", nan, nan},
        {"sigmoid", T(0), T(0.5)}, {"sigmoid", T(-0.0), T(0.5)}, {"sigmoid", big, 1},
        {"sigmoid", -big, 0},
        {"softplus", -inf, 0},     {"softplus", inf, inf}, {"softplus", nan, nan},
        {"softplus", big, big},    {"softplus", T(1e6), T(1e6)}, {"softplus", -big, 0},
        {"softplus", T(100), T(100)},
    };
    for (std::size_t i = 0; i < functions().size(); ++i) {
        std::vector<T> xs, want;
        for (const Case& c : cases)
            if (std::string(c.fn) == functions()[i].name ||
                (std::string(c.fn) == "exp" && std::string(functions()[i].name).starts_with("exp_") && (functions()[i].hi32 > 0 || !(c.x > 0)))) {
                xs.push_back(c.x);
                want.push_back(c.want);
            }
        // Pad to 2 full vectors + a tail, the cases repeated, so each goes through both paths.
        std::vector<T> in, exp;
        while (in.size() < 40)
            for (std::size_t k = 0; k < xs.size(); ++k) {
                in.push_back(xs[k]);
                exp.push_back(want[k]);
            }
        // below a floor (exp's AVX-512 summands) the value at the floor, the same bits
        const double floor = floor_of<T>(functions()[i]);
        if (floor > -INFINITY) {
            const T at = static_cast<T>(floor);
            T v;
            kernel<T>(i)(&at, &v, 1);
            CHECK(v > 0);
            for (std::size_t k = 0; k < in.size(); ++k)
                if (in[k] < at) exp[k] = v;
        }
        std::vector<T> out(in.size());
        kernel<T>(i)(in.data(), out.data(), static_cast<int64_t>(in.size()));
        for (std::size_t k = 0; k < in.size(); ++k) {
            INFO(std::setprecision(L::max_digits10) << functions()[i].name << "(" << in[k] << ") = " << out[k] << ", want " << exp[k]
                                     << " (element " << k << ")");
            CHECK(same(out[k], exp[k]));
        }
    }
}

// ---- no libm in the optimized IR ---------------------------------------------------------------

std::string optimized_ir_all_emitters(llvm::Type* (*elt)(llvm::LLVMContext&), unsigned w,
                                      std::vector<std::string>& bad_calls) {
    Harness& h = harness();
    llvm::LLVMContext ctx;
    auto m = h.new_module(ctx, "vecmath_ir");
    llvm::IRBuilder<> b(ctx);
    llvm::Type* vty = llvm::FixedVectorType::get(elt(ctx), w);
    auto* f = llvm::Function::Create(
        llvm::FunctionType::get(b.getVoidTy(), {b.getPtrTy(), b.getPtrTy()}, false),
        llvm::Function::ExternalLinkage, "all", *m);
    b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", f));
    llvm::Value* x = b.CreateLoad(vty, f->getArg(0));
    unsigned k = 0;
    for (const Fn& fn : functions())
        b.CreateStore(fn.emit(b, x), b.CreateGEP(vty, f->getArg(1), b.getInt64(k++)));
    b.CreateRetVoid();
    REQUIRE_FALSE(llvm::verifyModule(*m, &llvm::errs()));
    optimize_o3(*m, *h.tm);
    for (llvm::Function& fn : *m)
        for (llvm::BasicBlock& bb : fn)
            for (llvm::Instruction& inst : bb)
                if (auto* call = llvm::dyn_cast<llvm::CallBase>(&inst)) {
                    llvm::Function* callee = call->getCalledFunction();
                    std::string name = callee ? callee->getName().str() : "<indirect>";
                    bool ok = callee && callee->isIntrinsic() &&
                              (name.rfind("llvm.fma.", 0) == 0 || name.rfind("llvm.fabs.", 0) == 0 ||
                               name.rfind("llvm.copysign.", 0) == 0 ||
                               name.rfind("llvm.fmuladd.", 0) == 0 ||
                               name.rfind("llvm.minnum.", 0) == 0 || name.rfind("llvm.maxnum.", 0) == 0 ||
                               name.rfind("llvm.x86.avx512.mask.scalef.", 0) == 0 ||  // exp_avx512's 2^n
                               name.rfind("llvm.x86.avx512.permvar.sf.512", 0) == 0 ||  // its 2^(j/16)
                               name.rfind("llvm.x86.avx512.permvar.si.512", 0) == 0);  // (summands)
                    if (!ok) bad_calls.push_back(name);
                }
    std::string text;
    llvm::raw_string_ostream os(text);
    m->print(os, nullptr);
    return os.str();
}

void check_no_libm(llvm::Type* (*elt)(llvm::LLVMContext&), unsigned w) {
    std::vector<std::string> bad;
    std::string ir = optimized_ir_all_emitters(elt, w, bad);
    INFO("optimized IR:\n" << ir);
    for (const std::string& name : bad) {
        INFO("call to " << name);
        CHECK(false);
    }
    for (const char* banned : {"@expf", "@logf", "@exp(", "@log(", "@exp ", "@log ", "@log1p",
                               "@expm1", "@tanh", "@fma", "_finite", "llvm.exp.", "llvm.exp2.",
                               "llvm.log.", "llvm.log2.", "llvm.pow.", "__svml", "_ZGV"}) {
        INFO("banned: " << banned);
        CHECK(ir.find(banned) == std::string::npos);
    }
    CHECK(ir.find("llvm.fma.v") != std::string::npos);  // the polynomials really are vector fmas
}

}  // namespace

TEST_CASE("vecmath: special values are exact, fp32", "[jit][vecmath]") { check_specials<float>(); }
TEST_CASE("vecmath: special values are exact, fp64", "[jit][vecmath]") { check_specials<double>(); }

TEST_CASE("vecmath: fp32 max error <= 4 ulp against long double", "[jit][vecmath]") {
    accuracy_table<float>("fp32");
}
TEST_CASE("vecmath: fp64 max error <= 4 ulp against long double", "[jit][vecmath]") {
    accuracy_table<double>("fp64");
}

TEST_CASE("vecmath: optimized IR on <16 x float> and <8 x double> calls no libm", "[jit][vecmath]") {
    check_no_libm([](llvm::LLVMContext& c) { return llvm::Type::getFloatTy(c); }, 16);
    check_no_libm([](llvm::LLVMContext& c) { return llvm::Type::getDoubleTy(c); }, 8);
}
