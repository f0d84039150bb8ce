// The engine: the only translation unit with ORC, the pass builder and the target machine.
#include "engine.hpp"

#include <llvm/ADT/SmallString.h>
#include <llvm/ExecutionEngine/ObjectCache.h>
#include <llvm/ExecutionEngine/Orc/CompileUtils.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/IRTransformLayer.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Transforms/InstCombine/InstCombine.h>
#include <llvm/Transforms/Scalar/EarlyCSE.h>
#include <llvm/Transforms/Scalar/GVN.h>
#include <llvm/Transforms/Scalar/LICM.h>
#include <llvm/Transforms/Scalar/LoopPassManager.h>
#include <llvm/Transforms/Scalar/LoopRotation.h>
#include <llvm/Transforms/Scalar/SROA.h>
#include <llvm/Transforms/Scalar/SimplifyCFG.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/SmallVectorMemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "codegen.hpp"
#include "disk_cache.hpp"

namespace lossjit::jit {
namespace {

using namespace llvm;
using namespace llvm::orc;

std::string message(Error e) { return toString(std::move(e)); }

// LOSSJIT_TIMING=1: where compile time goes, to stderr.
bool timing() {
    static const bool on = std::getenv("LOSSJIT_TIMING") != nullptr;
    return on;
}

template <class T> T check(Expected<T> v, const char* what) {
    if (!v) throw error(std::string(what) + ": " + message(v.takeError()));
    return std::move(*v);
}
JITDylib& check(Expected<JITDylib&> v, const char* what) {
    if (!v) throw error(std::string(what) + ": " + message(v.takeError()));
    return *v;
}

void init_llvm() {
    static std::once_flag once;
    std::call_once(once, [] {
        InitializeNativeTarget();
        InitializeNativeTargetAsmPrinter();
        InitializeNativeTargetAsmParser();
    });
}

JITTargetMachineBuilder host_jtmb() {
    init_llvm();
    JITTargetMachineBuilder jtmb = check(JITTargetMachineBuilder::detectHost(), "detecting the host CPU");
    if (const char* cpu = std::getenv("LOSSJIT_CPU"); cpu && *cpu) {
        jtmb.setCPU(cpu);
        jtmb.getFeatures() = SubtargetFeatures();
    }
    jtmb.setCodeGenOptLevel(CodeGenOptLevel::Aggressive);
    // Position-independent code in the small code model, as LLJIT asks for when it links with
    // JITLink (which keeps an object's sections together): constants are loaded RIP-relative
    // in one instruction where the JIT's default, the large model, built each address with a
    // movabs first. compile() 3-6% fewer instructions (callgrind: generic K 137.8 -> 130.1 M,
    // K = 10 139.0 -> 134.6 M, K = 1000 82.8 -> 80.2 M) and smaller row tails.
    jtmb.setCodeModel(CodeModel::Small);
    jtmb.setRelocationModel(Reloc::PIC_);
    return jtmb;
}

// The L3 shared by the cores this process runs on, from the kernel's sysfs entries for cpu0
// (glibc's sysconf adds up the L3 of every core complex of the package: 384 MB on this Zen 5,
// whose CCX shares 32 MB); 0 when unknown.
std::size_t l3_shared_bytes() {
    for (int i = 0; i < 8; ++i) {
        const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
        int level = 0;
        if (!(std::ifstream(dir + "level") >> level)) break;
        if (level != 3) continue;
        std::ifstream f(dir + "size");
        std::size_t n = 0;
        char unit = 0;
        if (!(f >> n)) return 0;
        f >> unit;
        return unit == 'K' ? n << 10 : unit == 'M' ? n << 20 : n;
    }
    return 0;
}

Target detect() {
    JITTargetMachineBuilder jtmb = host_jtmb();
    Target t;
    t.cpu = jtmb.getCPU();
    t.features = jtmb.getFeatures().getString();
    // with a CPU override and no feature string, ask the CPU's defaults through a TM
    std::unique_ptr<TargetMachine> tm;
    if (t.features.empty()) tm = check(jtmb.createTargetMachine(), "creating a target machine");
    auto has = [&](const char* f) {
        const std::string plus = std::string("+") + f;
        return tm ? tm->getMCSubtargetInfo()->checkFeatures(plus) : t.features.find(plus) != std::string::npos;
    };
    t.vector_bits = has("avx512f") ? 512 : has("avx") ? 256 : 128;
    t.masked_memory = has("avx");
    t.avx512 = has("avx512f");
    t.bf16_convert = t.avx512 && has("avx512bf16") && has("avx512dq");
    if (const char* vb = std::getenv("LOSSJIT_VECTOR_BITS"); vb && *vb) {
        const int b = std::atoi(vb);
        if (b == 128 || b == 256 || b == 512) t.vector_bits = std::min(t.vector_bits, b);
        if (t.vector_bits < 512) t.avx512 = t.bf16_convert = false;
    }
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    t.l3_bytes = l3_shared_bytes();
    if (l2 > 0) t.l2_bytes = static_cast<std::size_t>(l2);
    return t;
}

// What the JIT's layers need to know of a kernel's plan, carried by its module's flags.
std::uint64_t module_flag(const Module& m, const char* name, std::uint64_t otherwise) {
    auto* md = mdconst::extract_or_null<ConstantInt>(m.getModuleFlag(name));
    return md ? md->getZExtValue() : otherwise;
}
int opt_level_of(const Module& m) { return static_cast<int>(module_flag(m, "lossjit.opt", 2)); }
bool across_rows(const Module& m) { return module_flag(m, "lossjit.rows", 0) != 0; }

// The IR pipeline, by CompileOptions::opt_level:
//   0  none;
//   1  cleanup: the emitter's allocas to SSA, instruction combining, CFG simplification;
//   2  the kernel pipeline (default): cleanup, common subexpressions, loop rotation and hoisting
//      of loop invariants, redundancy elimination (no aggressive dead code elimination and no
//      MemorySSA for EarlyCSE: the same assembly for K = 10, 1000, 32000 and generic K, fwd,
//      fwd+bwd and bf16, 0.4-0.6 M fewer compile() instructions). InstCombine runs once, before
//      the loop passes: a second run after GVN changed no vector arithmetic (the assembly of
//      the tests' 16 losses at K = 10, 1000 and generic K, fp32 and bf16, differs only in the
//      domain of some constants, register moves, zeroing idioms and loop control) and cost
//      3-7 M compile() instructions (the K = 10 loss kernel: 3.2 M of 100 M). The kernels across
//      rows (short rows) skip GVN: without it the tests' 16 losses have the same assembly at
//      K = 3, 10, 16 and 32, fp32 and bf16, and at K = 17 in fp32 (bf16 at K = 17 differs in loop
//      control and in the domain of some shuffles, at the same speed: 8192x17 fwd+bwd 1.00x),
//      and compile() runs 4.5-7% fewer instructions (callgrind, znver4: the K = 10 loss kernel,
//      the bench's first compile, 96.7 -> 92.3 M; loss + gradient at K = 10 141.3 -> 134.5 M, at
//      K = 32 216.8 -> 201.6 M);
//   3  LLVM's O3 (with the vectorizers and the unroller off).
// The emitter hands over IR that is already vectorized, unrolled, with masked tails, and with no
// loop a known K rules out, so the kernel pipeline ends in the same vector arithmetic as O3
// (assembly compared opcode by opcode for K = 10, 1000, 32000 and generic K: only loop control,
// moves and O3's memset of a zeroed array differ; no speed difference measured) at a quarter of
// O3's optimization cost: most of O3's time goes to scalar-evolution passes (induction
// variables, loop deletion) with nothing left to do here (JIT latency).
void optimize(Module& m, TargetMachine* tm, int level) {
    if (level <= 0) return;
    LoopAnalysisManager lam;
    FunctionAnalysisManager fam;
    CGSCCAnalysisManager cgam;
    ModuleAnalysisManager mam;
    PipelineTuningOptions pto;  // O3 only: the IR's vectors and unrolling are the emitter's choice
    pto.LoopUnrolling = false;
    pto.LoopInterleaving = false;
    pto.LoopVectorization = false;
    pto.SLPVectorization = false;
    PassBuilder pb(tm, pto);
    pb.registerModuleAnalyses(mam);
    pb.registerCGSCCAnalyses(cgam);
    pb.registerFunctionAnalyses(fam);
    pb.registerLoopAnalyses(lam);
    pb.crossRegisterProxies(lam, fam, cgam, mam);
    if (level >= 3) {
        pb.buildPerModuleDefaultPipeline(OptimizationLevel::O3).run(m, mam);
        return;
    }
    FunctionPassManager fpm;
    fpm.addPass(SROAPass(SROAOptions::ModifyCFG));
    if (level >= 2) fpm.addPass(EarlyCSEPass(/*UseMemorySSA=*/false));
    fpm.addPass(InstCombinePass());
    fpm.addPass(SimplifyCFGPass());
    if (level >= 2) {
        LoopPassManager lpm;
        lpm.addPass(LoopRotatePass());
        lpm.addPass(LICMPass(LICMOptions()));
        fpm.addPass(createFunctionToLoopPassAdaptor(std::move(lpm), /*UseMemorySSA=*/true));
        if (!across_rows(m)) fpm.addPass(GVNPass());
        fpm.addPass(SimplifyCFGPass());
    }
    ModulePassManager mpm;
    mpm.addPass(createModuleToFunctionPassAdaptor(std::move(fpm)));
    mpm.run(m, mam);
}

TargetMachine& thread_tm() {
    thread_local std::unique_ptr<TargetMachine> tm;
    if (!tm) tm = check(host_jtmb().createTargetMachine(), "creating a target machine");
    return *tm;
}

// The code generation pipeline of the kernels: the target's, less what costs compile time and
// finds nothing to gain in a kernel. Dropped as the target adds them, so other LLVM users in the
// process keep their pipeline; O3 (opt_level 3) keeps the whole of it.
// - Loop strength reduction and its canonicalization of freeze instructions in loops (with the
//   loop simplification, LCSSA and scalar evolution they pull in): the kernels' loops index every
//   row with one induction variable and x86's scaled-index addressing, and LSR found nothing to
//   gain there (the same speed in ce_probe, specialized and generic, fwd and fwd+bwd). They cost
//   9.6 M of the generic kernel's 130 M compile() instructions (callgrind), 2 M at K = 10.
// - The post-RA scheduler, in the across-rows kernel (short rows) only: its blocks are
//   straight-line code over 16 rows whose order Zen 5's out-of-order core finds by itself (the
//   same speed for 65536x10 fwd, fwd+bwd and bf16, 65536x16, 32768x32), and it cost 8.6 M of
//   the K = 10 kernel's 132 M. The row kernels keep it: without it bf16 fwd lost 2-5%
//   (8192x1000, 512x32000).
// - The machine instruction scheduler (before register allocation), in the row kernels only:
//   the same speed without it on a Zen 4 (ce_probe, both builds at once, in cache: K = 1000
//   fwd, fwd+bwd, bf16 and generic, 32x4096, K = 32000 fwd and fwd+bwd), and it cost 8.5 M of
//   generic K's 120 M compile() instructions. The across-rows kernel keeps it: without it
//   8192x10 fwd+bwd lost 4% (5.75 -> 5.50 GB/s), as it did on Zen 5 in session 8.
class KernelCodegenPasses final : public legacy::PassManager {
public:
    KernelCodegenPasses(int opt_level, bool across_rows) : all_(opt_level >= 3), across_rows_(across_rows) {}
    void add(llvm::Pass* p) override {
        const StringRef name = p->getPassName();
        const bool drop = name == "Loop Strength Reduction" || name == "Canonicalize Freeze Instructions in Loops" ||
                          (across_rows_ ? name == "Post RA top-down list latency scheduler" : name == "Machine Instruction Scheduler");
        if (drop && !all_) {
            delete p;  // the pass manager's own contract: add() may delete the pass it is given
            return;
        }
        legacy::PassManager::add(p);
    }

private:
    bool all_, across_rows_;
};

// Writes compiled objects to the disk cache; never supplies them (reads bypass the compiler).
class DiskWriter : public ObjectCache {
public:
    void expect(const std::string& id, const std::string& key, const std::string& dir) {
        std::lock_guard<std::mutex> l(mu_);
        pending_[id] = {key, dir};
    }
    void notifyObjectCompiled(const Module* m, MemoryBufferRef obj) override {
        std::pair<std::string, std::string> kd;
        {
            std::lock_guard<std::mutex> l(mu_);
            auto it = pending_.find(m->getModuleIdentifier());
            if (it == pending_.end()) return;
            kd = std::move(it->second);
            pending_.erase(it);
        }
        if (disk_write(kd.second, kd.first, std::string_view(obj.getBufferStart(), obj.getBufferSize()))) ++writes;
    }
    std::unique_ptr<MemoryBuffer> getObject(const Module*) override { return nullptr; }
    std::atomic<unsigned long long> writes{0}, hits{0}, rejected{0};

private:
    std::mutex mu_;
    std::unordered_map<std::string, std::pair<std::string, std::string>> pending_;
};

// The IR compiler: like ConcurrentIRCompiler (safe from many threads at once), but with one
// TargetMachine per thread, reused, instead of a new one per module (JIT latency), and the
// kernels' code generation pipeline (KernelCodegenPasses).
class ThreadCompiler : public IRCompileLayer::IRCompiler {
public:
    ThreadCompiler(JITTargetMachineBuilder b, ObjectCache* c)
        : IRCompiler(irManglingOptionsFromTargetOptions(b.getOptions())), cache_(c) {}
    Expected<std::unique_ptr<MemoryBuffer>> operator()(Module& m) override {
        const auto t0 = std::chrono::steady_clock::now();
        SmallVector<char, 0> obj;
        {
            raw_svector_ostream os(obj);
            KernelCodegenPasses pm(opt_level_of(m), across_rows(m));
            MCContext* mc = nullptr;
            if (thread_tm().addPassesToEmitMC(pm, mc, os))
                return make_error<StringError>("the target cannot emit machine code", inconvertibleErrorCode());
            pm.run(m);
        }
        auto r = std::make_unique<SmallVectorMemoryBuffer>(std::move(obj), m.getModuleIdentifier() + "-object", false);
        if (cache_) cache_->notifyObjectCompiled(&m, r->getMemBufferRef());
        if (timing())
            fprintf(stderr, "codegen %.2f ms\n", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        return std::unique_ptr<MemoryBuffer>(std::move(r));
    }

private:
    ObjectCache* cache_;
};

struct Jit {
    std::unique_ptr<LLJIT> lljit;
    DiskWriter disk;
    std::atomic<unsigned long long> counter{0};
};

Jit& the_jit() {
    static Jit* jit = [] {
        auto* j = new Jit;  // lives for the process: kernels may run until exit
        JITTargetMachineBuilder jtmb = host_jtmb();
        DiskWriter* dw = &j->disk;
        // the data layout from this thread's target machine: LLJIT would build a target machine
        // of its own only to ask it (JIT latency)
        auto built = LLJITBuilder()
                         .setJITTargetMachineBuilder(jtmb)
                         .setDataLayout(thread_tm().createDataLayout())
                         .setCompileFunctionCreator([dw](JITTargetMachineBuilder b) -> Expected<std::unique_ptr<IRCompileLayer::IRCompiler>> {
                             return std::make_unique<ThreadCompiler>(std::move(b), dw);
                         })
                         .create();
        if (!built) {
            const std::string msg = message(built.takeError());
            delete j;
            throw error("creating the LLVM JIT: " + msg);
        }
        j->lljit = std::move(*built);
        j->lljit->getIRTransformLayer().setTransform([](ThreadSafeModule tsm, MaterializationResponsibility&) -> Expected<ThreadSafeModule> {
            tsm.withModuleDo([](Module& m) {
                const auto t0 = std::chrono::steady_clock::now();
                optimize(m, &thread_tm(), opt_level_of(m));
                if (timing())
                    fprintf(stderr, "optimize %.2f ms\n", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            });
            return tsm;
        });
        return j;
    }();
    return *jit;
}

std::unique_ptr<Module> module_for(LLVMContext& ctx, const Plan& p, const std::string& id) {
    auto m = emit_module(ctx, p, host(), "lossjit_kernel");
    m->setModuleIdentifier(id);
    m->addModuleFlag(Module::Warning, "lossjit.opt", static_cast<uint32_t>(p.opt_level));
    m->addModuleFlag(Module::Warning, "lossjit.rows", static_cast<uint32_t>(p.rows));
    TargetMachine& tm = thread_tm();
    m->setDataLayout(tm.createDataLayout());
    m->setTargetTriple(tm.getTargetTriple().str());
    return m;
}

}  // namespace

const Target& host() {
    static const Target t = detect();
    return t;
}

std::string cache_key(const Plan& p) {
    std::ostringstream os;
    const Target& t = host();
    os << "lossjit kernel v19; llvm " << LLVM_VERSION_STRING << "; cpu " << t.cpu << "; features " << t.features << "; bits "
       << t.vector_bits << "\n";
    os << to_string(p) << graph_text(p.g);
    os << "K " << p.K << " block " << p.block << " lse " << static_cast<int>(p.lse) << " opt " << p.opt_level << " unroll " << p.unroll
       << " vw " << p.vector_width << "\n";
    return os.str();
}

Compiled build(const Plan& p, const std::string& key, const std::string& disk_dir) {
    const auto t0 = std::chrono::steady_clock::now();
    Jit& J = the_jit();
    if (timing())
        fprintf(stderr, "the_jit %.2f ms\n", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    LLJIT& lj = *J.lljit;
    Compiled out;
    const std::string id = "lossjit_k" + std::to_string(J.counter++);
    JITDylib& jd = check(lj.createJITDylib(id), "creating a JITDylib");
    if (JITDylib* ps = lj.getProcessSymbolsJITDylib().get()) jd.addToLinkOrder(*ps);
    ExecutionSession* es = &lj.getExecutionSession();
    out.holder = std::shared_ptr<void>(&jd, [es](void* d) { consumeError(es->removeJITDylib(*static_cast<JITDylib*>(d))); });

    bool loaded = false;
    if (!disk_dir.empty()) {
        std::string obj;
        switch (disk_read(disk_dir, key, obj)) {
        case DiskRead::hit: {
            if (Error e = lj.addObjectFile(jd, MemoryBuffer::getMemBufferCopy(obj, id))) {
                consumeError(std::move(e));
                ++J.disk.rejected;
            } else {
                loaded = true;
                ++J.disk.hits;
            }
            break;
        }
        case DiskRead::rejected: ++J.disk.rejected; break;
        case DiskRead::missing: break;
        }
    }
    if (!loaded) {
        auto ctx = std::make_unique<LLVMContext>();
        const auto tg = std::chrono::steady_clock::now();
        auto m = module_for(*ctx, p, id);
        if (timing())
            fprintf(stderr, "jit setup %.2f ms, emit IR %.2f ms\n", std::chrono::duration<double, std::milli>(tg - t0).count(),
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - tg).count());
        if (!disk_dir.empty()) J.disk.expect(id, key, disk_dir);
        if (Error e = lj.addIRModule(jd, ThreadSafeModule(std::move(m), std::move(ctx))))
            throw error("adding the kernel to the JIT: " + message(std::move(e)));
    }
    const auto tl = std::chrono::steady_clock::now();
    ExecutorAddr addr = check(lj.lookup(jd, "lossjit_kernel"), "compiling the kernel");
    if (timing())
        fprintf(stderr, "lookup (opt + codegen + link) %.2f ms\n", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - tl).count());
    out.fn = addr.toPtr<KernelFn>();
    out.from_disk = loaded;
    out.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return out;
}

std::string ir_text(const Plan& p, bool optimized) {
    LLVMContext ctx;
    auto m = module_for(ctx, p, "lossjit_inspect");
    if (optimized) optimize(*m, &thread_tm(), p.opt_level);
    std::string s;
    raw_string_ostream os(s);
    m->print(os, nullptr);
    return os.str();
}

std::string asm_text(const Plan& p) {
    LLVMContext ctx;
    auto m = module_for(ctx, p, "lossjit_inspect");
    TargetMachine& tm = thread_tm();
    optimize(*m, &tm, p.opt_level);
    SmallString<0> buf;
    raw_svector_ostream os(buf);
    KernelCodegenPasses pm(p.opt_level, p.rows);
    if (tm.addPassesToEmitFile(pm, os, nullptr, CodeGenFileType::AssemblyFile))
        throw error("the target cannot print assembly");
    pm.run(*m);
    return std::string(buf.str());
}

DiskCounters disk_counters() {
    Jit& J = the_jit();
    return DiskCounters{J.disk.hits.load(), J.disk.writes.load(), J.disk.rejected.load()};
}

}  // namespace lossjit::jit
