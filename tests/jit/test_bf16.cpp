// bf16 storage in the kernels: bf16 pairs (Plan::bf16_pairs: a row's even and odd elements in
// two vectors) against the reference evaluator, and the rounding of bf16 outputs, in integer ops
// or by AVX512-BF16's instruction.
#include "common.hpp"

#include <cstdlib>
#include <fstream>

using namespace lossjit;

namespace {
// Whether the kernels compiled here are for this host (LOSSJIT_CPU unset), and whether it has
// AVX512-BF16 with AVX512-DQ.
bool compiling_for_host() {
    const char* cpu = std::getenv("LOSSJIT_CPU");
    return !cpu || !*cpu;
}
bool host_cpu_has_bf16() {
    std::ifstream info("/proc/cpuinfo");
    std::string word;
    bool bf16 = false, dq = false;
    while (info >> word) {
        bf16 = bf16 || word == "avx512_bf16";
        dq = dq || word == "avx512dq";
    }
    return bf16 && dq;
}
}  // namespace

// Plan::bf16_pairs: a kernel whose vector inputs and outputs are bf16 takes each 2 VW elements
// as a vector of the even ones and one of the odd ones (AVX-512), its kept exps in that order
// and its writes rejoined; its tail in order. Every case, with its gradients and as its loss
// alone, generic and specialized K with and without a tail (and rows of one pair), against the
// evaluator, with -inf masks and large logits.
TEST_CASE("bf16 pairs: losses and gradients over bf16 rows in even and odd lanes") {
    std::size_t paired = 0, wide = 0;
    for (const auto& c : jt::cases()) {
        Graph g;
        std::vector<int> memo(static_cast<std::size_t>(c.g.size()), -1);
        for (const auto& out : c.g.outputs())
            if (out.name.view() != "grad.u") g.add_output(out.name.view(), copy_into(g, c.g, out.root, memo));
        for (const jt::Case& k_case : {c, jt::Case{c.name + " alone", g, c.params}})
            for (std::size_t K : {0, 33, 64, 1000, 4101}) {
                CompileOptions o;
                o.dtype = DType::bf16;
                o.row_length = K;
                std::uint32_t seed = 40;
                for (auto mode : {jt::Mode::normal, jt::Mode::neg_inf, jt::Mode::big}) {
                    const Kernel k = jt::check_case(k_case, 7, K == 0 ? 1001 : K, o, mode, ++seed);
                    const std::string s = k.schedule();
                    paired += s.find("bf16 pairs") != std::string::npos;
                    wide += s.find("16 lanes") != std::string::npos;
                }
            }
    }
    INFO("kernels of 16 fp32 lanes: " << wide << ", in bf16 pairs: " << paired);
    if (wide > 0) CHECK(paired >= 2 * 8 * 5 * 3);  // most cases, with and without their gradients
    else CHECK(paired == 0);
}

// bf16 outputs round to nearest even (ties to the even neighbour), keep infinities and NaNs,
// overflow to infinity and keep fp32 subnormals as bf16's, whether the rounding is done in
// integer ops or by AVX512-BF16's vcvtne(2)ps2bf16 (which reads subnormals as 0: vectors holding
// one take the integer ops). Element-wise sums of bf16 rows in every column of row kernels (in
// bf16 pairs, in their masked tail) and of rows across lanes (short rows); a block of rows
// without subnormals first, then one with.
TEST_CASE("bf16 stores: nearest even, infinities, NaNs, overflow and subnormals") {
    Graph g;
    const int u = g.input("u", InputKind::logits), v = g.input("v", InputKind::logits);
    g.add_output("out", g.apply(Op::add, u, v));
    auto b = [](std::uint16_t bits) { return bf16{bits}; };
    const float sub = std::ldexp(1.0f, -127);  // 2^-125 - 1.5 2^-126, an fp32 subnormal
    struct Sum {
        bf16 u, v;
        float want;  // the exact sum as bf16::from_float rounds it
    };
    const std::vector<Sum> sums{
        {bf16::from_float(1), bf16::from_float(std::ldexp(1.0f, -8)), 1},                                       // tie: to even 1
        {bf16::from_float(1 + std::ldexp(1.0f, -7)), bf16::from_float(std::ldexp(1.0f, -8)), 1 + std::ldexp(1.0f, -6)},  // tie: up to even
        {bf16::from_float(1), bf16::from_float(std::ldexp(1.5f, -8)), 1 + std::ldexp(1.0f, -7)},                // above the tie: up
        {b(0x7f7f), b(0x7f7f), INFINITY},                                                                        // overflow
        {b(0xff80), bf16::from_float(1), -INFINITY},
        {b(0x7fc0), bf16::from_float(1), NAN},
        {b(0x0100), b(0x80c0), sub},  // 2^-125 - 1.5 2^-126 = 2^-127
        {b(0x8100), b(0x00c0), -sub},
    };
    for (std::size_t K : {5, 64, 67, 1000}) {
        CompileOptions o;
        o.dtype = DType::bf16;
        o.row_length = K;
        const Kernel k = compile(g, o);
        const std::string as = k.assembly();
        const bool by_instruction = as.find("vcvtneps2bf16") != std::string::npos || as.find("vcvtne2ps2bf16") != std::string::npos;
        const std::size_t N = 40;
        auto sum_at = [&](std::size_t i) -> const Sum& {  // every case in every column; no subnormal in the first rows
            const std::size_t n = i < N / 2 * K ? sums.size() - 2 : sums.size();
            return sums[(i * 7 + i / K) % n];
        };
        std::vector<bf16> xu(N * K), xv(N * K), out(N * K, b(0x1234));
        for (std::size_t i = 0; i < N * K; ++i) {
            xu[i] = sum_at(i).u;
            xv[i] = sum_at(i).v;
        }
        Batch batch;
        batch.bind("u", matrix(xu.data(), N, K)).bind("v", matrix(xv.data(), N, K)).bind("out", matrix(out.data(), N, K));
        k.run(batch);
        INFO("K = " << K << ", vcvtne(2)ps2bf16 in the kernel: " << by_instruction);
        if (K >= 64 && compiling_for_host()) CHECK(by_instruction == (host_cpu_has_bf16() && k.schedule().find("16 lanes") != std::string::npos));
        for (std::size_t i = 0; i < N * K; ++i) {
            const Sum& c = sum_at(i);
            const float got = out[i].to_float();
            const float want = c.want;
            INFO("K = " << K << ", element " << i << ": " << c.u.to_float() << " + " << c.v.to_float() << " stored as " << got << " (bits 0x"
                        << std::hex << out[i].bits << std::dec << ")");
            if (std::isnan(want)) CHECK(std::isnan(got));
            else CHECK((got == want && std::signbit(got) == std::signbit(want)));
        }
    }
}
