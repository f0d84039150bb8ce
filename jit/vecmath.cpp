// Our own exp/log/log1p/expm1/tanh/sigmoid/softplus as straight-line IR (see vecmath.hpp).
//
// Every function is built the same way: clamp the input to the range where the formula is
// valid (so integer bit tricks never see NaN or inf), reduce the argument, evaluate a minimax
// polynomial with Horner's rule on llvm.fma, rebuild the result, and finally patch the special
// inputs (NaN, +-inf, +-0, domain errors) with selects. No branches and no calls except llvm.fma,
// llvm.fabs and llvm.copysign, so the code vectorizes at any width and never reaches libm.
//
// The polynomial coefficients come from a weighted Remez exchange run once in high precision
// (mpmath, 60 digits) and then rounded to the target type; the weight is chosen so that the
// minimised quantity is the relative error of the final function, not of the polynomial alone.
// The fp32 tables are the fp64 minimax rounded to float (they are written as float hex
// literals); fp64 tables are separate, higher-degree fits. Errors quoted are after rounding.
//
// None of the arithmetic may carry fast-math flags: the rounding trick `(x + M) - M`, the
// Cody-Waite reduction and the compensation terms of log1p all depend on exact IEEE rounding, so
// each emitter clears the builder's flags for its own instructions.

#include "vecmath.hpp"

#include <llvm/IR/IntrinsicsX86.h>

#include <array>
#include <bit>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

namespace lossjit::jit {
namespace {

// ---- coefficient tables ----------------------------------------------------------------------

// exp(r) = 1 + r + r^2 Q(r) on |r| <= ln2/2. Q minimises the relative error of exp(r)
// (weight r^2 / exp(r)). f32: degree 4, 2^-28.0; f64: degree 9, 2^-56.3.
constexpr float kExpQ32[] = {0x1.fffffcp-2f, 0x1.555492p-3f, 0x1.5558f2p-5f, 0x1.1239d4p-7f,
                             0x1.6a244cp-10f};
constexpr double kExpQ64[] = {0x1.000000000000ap-1,  0x1.55555555554fap-3,  0x1.555555555088cp-5,
                              0x1.1111111127b9dp-7,  0x1.6c16c184266e1p-10, 0x1.a01a012a69124p-13,
                              0x1.a0199a16ded6bp-16, 0x1.71df253bc80b9p-19, 0x1.28ad68a58872bp-22,
                              0x1.ad7f782a5dd21p-26};

// The AVX-512 fp32 exp (exp_table_f32) reduces further, to |r| <= ln2/32, with a table of
// 2^(j/16), j = 0..15, which fits one vector register (one vpermps picks the entries):
// exp(x) = 2^(n + j/16) (1 + E(r)), E(r) = r + r^2 (c2 + c3 r), the minimax of the relative
// error on |r| <= 1.002 ln2/32: 2^-29.2 (a Taylor cubic gives 2^-26.7). The table entries are
// 2^(j/16) rounded to float (error under half an ulp).
constexpr float kExpTableQ32[] = {0x1.000226p-1f, 0x1.555a7ep-3f};
constexpr std::array<float, 16> kExp2Sixteenths32 = {
    0x1.000000p+0f, 0x1.0b5586p+0f, 0x1.172b84p+0f, 0x1.2387a6p+0f, 0x1.306fe0p+0f, 0x1.3dea64p+0f,
    0x1.4bfdaep+0f, 0x1.5ab07ep+0f, 0x1.6a09e6p+0f, 0x1.7a1148p+0f, 0x1.8ace54p+0f, 0x1.9c4918p+0f,
    0x1.ae89fap+0f, 0x1.c199bep+0f, 0x1.d5818ep+0f, 0x1.ea4afap+0f};
// exp's summands (exp_summand_avx512) take the scale 2^(k/16) whole from integer instructions: this
// table holds the bits of 2^(j/16) less j << 19, and adding t's bits shifted left by 19, that is
// k << 19 = (floor(k/16) << 23) + (j << 19) (M's bits shift out), gives the bits of 2^(k/16).
// The exponent field must stay normal, so summands clamp their argument at -87 instead of -104
// (k/16 >= -125.5): a term below exp(-87) = 1.6e-38 counts as that, in a sum whose largest
// term is 1 (x - max), where it vanishes in the rounding.
constexpr std::array<std::uint32_t, 16> kExp2SixteenthsLessJ = [] {
    std::array<std::uint32_t, 16> t{};
    for (std::uint32_t j = 0; j < 16; ++j) t[j] = std::bit_cast<std::uint32_t>(kExp2Sixteenths32[j]) - (j << 19);
    return t;
}();
constexpr double kSummandLo32 = -87.0;

// expm1(r) = r + r^2 Q(r) on |r| <= ln2/2, weight r^2 / |expm1(r)| (relative error of expm1).
// f32: degree 5, 2^-28.8; f64: degree 10, 2^-59.9.
constexpr float kExpm1Q32[] = {0x1.000000p-1f,  0x1.555554p-3f,  0x1.5554b2p-5f,
                               0x1.11118ap-7f,  0x1.6d71e6p-10f, 0x1.a032bep-13f};
constexpr double kExpm1Q64[] = {
    0x1.0000000000000p-1,  0x1.5555555555559p-3,  0x1.555555555553fp-5,  0x1.111111110f6dfp-7,
    0x1.6c16c16c1f05cp-10, 0x1.a01a01afd17d3p-13, 0x1.a01a017bcc6ecp-16, 0x1.71ddf88568a3ep-19,
    0x1.27e5362544f7fp-22, 0x1.af5e6850003c7p-26, 0x1.1ee8897ba695ap-29};

// log(1+f) with s = f/(2+f), z = s^2: log(1+f) = 2 atanh(s) = 2s + s z P(z), z <= 0.0295
// (|s| <= 3 - 2 sqrt 2 for f in [sqrt(1/2)-1, sqrt(2)-1]). P fits (2 atanh(s) - 2s)/(s z) with
// weight z, i.e. the error of the s*z*P term relative to 2s. f32: degree 3, 2^-30.1;
// f64: degree 6, 2^-58.0.
constexpr float kLogP32[] = {0x1.555554p-1f, 0x1.999a7cp-2f, 0x1.243874p-2f, 0x1.e3063cp-3f};
constexpr double kLogP64[] = {0x1.5555555555593p-1, 0x1.999999997f852p-2, 0x1.2492494243643p-2,
                              0x1.c71c51c2093bap-3, 0x1.74664e6ac3caep-3, 0x1.39a014f79703ep-3,
                              0x1.2f16cd9fc1618p-3};

// tanh(a) = a + a^3 T(a^2) on 0 <= a < 0.625 (Cephes' split point), weight a^3 / tanh(a)
// (relative error of tanh). f32: degree 5, 2^-28.5; f64: degree 10, 2^-56.1.
constexpr float kTanhT32[] = {-0x1.555554p-2f, 0x1.111066p-3f,  -0x1.b9ee90p-5f,
                              0x1.638b58p-6f,  -0x1.0bf4fep-7f, 0x1.18e1dep-9f};
constexpr double kTanhT64[] = {
    -0x1.55555555554ffp-2, 0x1.111111110accdp-3,  -0x1.ba1ba1b5064b0p-5, 0x1.664f477adaca7p-6,
    -0x1.226e162bf807fp-7, 0x1.d6cf280ed88c8p-9,  -0x1.7d68a33050528p-10, 0x1.336612e702349p-11,
    -0x1.df5579c14d9b8p-13, 0x1.4391217be66fdp-14, -0x1.0da728172ff41p-16};

// ---- per-type constants ----------------------------------------------------------------------

struct TypeConsts {
    unsigned mant_bits;     // explicit mantissa bits: 23 / 52
    int exp_bias;           // 127 / 1023
    double log2e;           // 1/ln2 rounded
    double round_magic;     // 1.5 * 2^mant_bits: (y + M) - M rounds y to an integer, and the low
                            // bits of (y + M) hold that integer
    // exp reduction r = x - n ln2 with fma: ln2_hi is ln2 rounded to the type, so
    // fma(-n, ln2_hi, x) is exact (Sterbenz-like: the result is small and on the grid of x and
    // n*ln2_hi); ln2_lo is the rounded remainder.
    double exp_ln2_hi, exp_ln2_lo;
    // log reconstruction e*ln2: ln2_hi has few enough bits (15 / 42) that e*ln2_hi is exact for
    // every exponent e of the type, without relying on fma.
    double log_ln2_hi, log_ln2_lo;
    uint64_t sqrt_half_bits;  // bits of sqrt(1/2): mantissas are reduced to [sqrt(1/2), sqrt(2))
    double min_normal;
    double denorm_scale;     // 2^25 / 2^54: lifts a denormal into the normal range
    int denorm_scale_log2;
    // exp: below lo the result underflows to +0, above hi it is +inf; inside, n = round(x/ln2)
    // lies in [-150, 128] / [-1076, 1024], where 2^n is built as 2^(n/2) * 2^(n - n/2), two
    // normal numbers (so results near overflow and denormal results are rounded once).
    double exp_lo, exp_hi;
    // expm1: below this x the result rounds to -1 (e^x is under half the spacing of the
    // numbers just above -1, 2^-24 / 2^-53).
    double expm1_lo;
    int expm1_exact_n;      // largest n for which 2^n - 1 is exact: 24 / 53
    double tanh_cap;        // tanh(a) rounds to 1 beyond cap: 1 - tanh(a) ~ 2e^-2a is below a
                            // quarter ulp of 1 from a = 9.02 / 19.07 on; cap 10 / 20
};

constexpr TypeConsts kF32{.mant_bits = 23,
                          .exp_bias = 127,
                          .log2e = 0x1.715476p+0,
                          .round_magic = 0x1.8p23,
                          .exp_ln2_hi = 0x1.62e430p-1,
                          .exp_ln2_lo = -0x1.05c610p-29,
                          .log_ln2_hi = 0x1.62e4p-1,
                          .log_ln2_lo = 0x1.7f7d1cp-20,
                          .sqrt_half_bits = 0x3f3504f3u,
                          .min_normal = 0x1p-126,
                          .denorm_scale = 0x1p25,
                          .denorm_scale_log2 = 25,
                          .exp_lo = -104.0,
                          .exp_hi = 89.0,
                          .expm1_lo = -18.0,
                          .expm1_exact_n = 24,
                          .tanh_cap = 10.0};
constexpr TypeConsts kF64{.mant_bits = 52,
                          .exp_bias = 1023,
                          .log2e = 0x1.71547652b82fep+0,
                          .round_magic = 0x1.8p52,
                          .exp_ln2_hi = 0x1.62e42fefa39efp-1,
                          .exp_ln2_lo = 0x1.abc9e3b39803fp-56,
                          .log_ln2_hi = 0x1.62e42fefa38p-1,
                          .log_ln2_lo = 0x1.ef35793c7673p-45,
                          .sqrt_half_bits = 0x3fe6a09e667f3bcdull,
                          .min_normal = 0x1p-1022,
                          .denorm_scale = 0x1p54,
                          .denorm_scale_log2 = 54,
                          .exp_lo = -746.0,
                          .exp_hi = 710.0,
                          .expm1_lo = -40.0,
                          .expm1_exact_n = 53,
                          .tanh_cap = 20.0};

// ---- the emitter -----------------------------------------------------------------------------

class Emitter {
public:
    Emitter(llvm::IRBuilderBase& b, llvm::Value* x) : b_(b), guard_(b), ft_(x->getType()) {
        llvm::Type* elt = ft_->getScalarType();
        if (!elt->isFloatTy() && !elt->isDoubleTy())
            llvm::report_fatal_error("lossjit vecmath: element type must be float or double");
        dbl_ = elt->isDoubleTy();
        k_ = dbl_ ? &kF64 : &kF32;
        it_ = ft_->getWithNewType(llvm::Type::getIntNTy(b.getContext(), dbl_ ? 64 : 32));
        b_.clearFastMathFlags();
    }

    bool dbl() const { return dbl_; }
    const TypeConsts& k() const { return *k_; }
    // x - n ln2 in one fma (emit_exp_summand, and fp32 emit_exp_nonpositive): vecmath.hpp
    void reduce_in_one_fma() { one_fma_ = true; }

    // constants (splat for vectors)
    llvm::Value* c(double v) { return llvm::ConstantFP::get(ft_, v); }
    llvm::Value* ci(int64_t v) { return llvm::ConstantInt::get(it_, static_cast<uint64_t>(v), true); }
    llvm::Value* inf() { return llvm::ConstantFP::getInfinity(ft_); }
    llvm::Value* ninf() { return llvm::ConstantFP::getInfinity(ft_, true); }
    llvm::Value* nan() { return llvm::ConstantFP::getQNaN(ft_); }

    // arithmetic
    llvm::Value* add(llvm::Value* a, llvm::Value* y) { return b_.CreateFAdd(a, y); }
    llvm::Value* sub(llvm::Value* a, llvm::Value* y) { return b_.CreateFSub(a, y); }
    llvm::Value* mul(llvm::Value* a, llvm::Value* y) { return b_.CreateFMul(a, y); }
    llvm::Value* div(llvm::Value* a, llvm::Value* y) { return b_.CreateFDiv(a, y); }
    llvm::Value* fma(llvm::Value* a, llvm::Value* y, llvm::Value* z) {
        return b_.CreateIntrinsic(llvm::Intrinsic::fma, {ft_}, {a, y, z});
    }
    llvm::Value* fabs(llvm::Value* a) { return b_.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, a); }
    llvm::Value* copysign(llvm::Value* mag, llvm::Value* sgn) {
        return b_.CreateBinaryIntrinsic(llvm::Intrinsic::copysign, mag, sgn);
    }
    llvm::Value* sel(llvm::Value* cond, llvm::Value* t, llvm::Value* f) {
        return b_.CreateSelect(cond, t, f);
    }
    llvm::Value* olt(llvm::Value* a, llvm::Value* y) { return b_.CreateFCmpOLT(a, y); }
    llvm::Value* ogt(llvm::Value* a, llvm::Value* y) { return b_.CreateFCmpOGT(a, y); }
    llvm::Value* oge(llvm::Value* a, llvm::Value* y) { return b_.CreateFCmpOGE(a, y); }
    llvm::Value* oeq(llvm::Value* a, llvm::Value* y) { return b_.CreateFCmpOEQ(a, y); }
    llvm::Value* ult(llvm::Value* a, llvm::Value* y) { return b_.CreateFCmpULT(a, y); }
    llvm::Value* isnan(llvm::Value* a) { return b_.CreateFCmpUNO(a, a); }
    llvm::Value* bits(llvm::Value* a) { return b_.CreateBitCast(a, it_); }
    llvm::Value* from_bits(llvm::Value* i) { return b_.CreateBitCast(i, ft_); }
    llvm::IRBuilderBase& b() { return b_; }

    // Horner's rule with fma: coeffs[0] + t*(coeffs[1] + t*(...)).
    template <class T, std::size_t N>
    llvm::Value* horner(llvm::Value* t, const T (&coeffs)[N]) {
        llvm::Value* p = c(static_cast<double>(coeffs[N - 1]));
        for (std::size_t i = N - 1; i-- > 0;) p = fma(p, t, c(static_cast<double>(coeffs[i])));
        return p;
    }

    // Clamp to [lo, hi]; NaN becomes hi (ordered compares are false on NaN), so code after the
    // clamp only sees finite values; the caller restores NaN at the end.
    llvm::Value* clamp(llvm::Value* x, double lo, double hi) {
        llvm::Value* y = sel(olt(x, c(hi)), x, c(hi));
        return sel(ogt(y, c(lo)), y, c(lo));
    }

    // 2^n for integer n (as the int type) in the normal exponent range.
    llvm::Value* pow2i(llvm::Value* n) {
        llvm::Value* e = b_.CreateAdd(n, ci(k_->exp_bias));
        return from_bits(b_.CreateShl(e, ci(k_->mant_bits)));
    }

    // Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2 (a hair more from rounding n).
    // Returns r and n both as float and as int.
    struct Reduced {
        llvm::Value *r, *nf, *ni;
    };
    Reduced reduce_ln2(llvm::Value* x) {
        llvm::Value* magic = c(k_->round_magic);
        llvm::Value* t = fma(x, c(k_->log2e), magic);  // round-to-nearest of x/ln2, in the low bits
        llvm::Value* nf = sub(t, magic);
        llvm::Value* ni = b_.CreateSub(bits(t), bits(magic));
        llvm::Value* r = fma(nf, c(-k_->exp_ln2_hi), x);  // exact
        return {ln2_lo_step(nf, r), nf, ni};
    }

    // r - n ln2_lo, the reduction's second step, skipped by reduce_in_one_fma.
    llvm::Value* ln2_lo_step(llvm::Value* n, llvm::Value* r) {
        return one_fma_ ? r : fma(n, c(-k_->exp_ln2_lo), r);
    }

    // exp(x) for x already clamped to [exp_lo, exp_hi] (finite).
    llvm::Value* exp_core(llvm::Value* x) {
        Reduced red = reduce_ln2(x);
        llvm::Value* r = red.r;
        llvm::Value* q = dbl_ ? horner(r, kExpQ64) : horner(r, kExpQ32);
        // 1 + (r + r^2 Q): the inner sum is rounded relative to |r| <= 0.35, not to 1.
        llvm::Value* p = add(c(1.0), fma(mul(r, r), q, r));
        return scale_pow2(p, red.ni);
    }

    // p 2^n for integer n in [-150, 128] / [-1076, 1024], in two exact steps so that overflow
    // gives inf and a denormal result is rounded once (p * 2^n1 is always a normal number).
    llvm::Value* scale_pow2(llvm::Value* p, llvm::Value* n) {
        llvm::Value* n1 = b_.CreateAShr(n, ci(1));
        return mul(mul(p, pow2i(n1)), pow2i(b_.CreateSub(n, n1)));
    }

    // A sum's term exp(x), x <= 0, -inf or NaN, on a target with AVX-512F: as exp_avx512, but a
    // 512-bit fp32 vector or an fp32 scalar returns scale = 2^(k/16) and factor = exp(r), whose
    // product the caller takes in the fma that adds it to its sum. The factor is a polynomial in
    // Horner form, 1 + r (1 + r (Q0 + r Q1)): three fmas and no product r^2 beside them, and no
    // product with the scale after them (exp_table_f32's 2^(j/16) (1 + E(r)) keeps the 1 exact,
    // worth half an ulp, which a term of a sum does not need). The scale takes a vpermd, a shift
    // and an integer add (kExp2SixteenthsLessJ), not a vscalefps on the FP adders.
    // Against two sums, of the scales and of scale * E(r) (one instruction more a term: the
    // scales' add), on a Zen 4: a loop of these terms in a harness of intrinsics 8.6 -> 7.7
    // cycles a vector of 16, the row kernel's fwd in cache at K = 1000 and 32000 1.05-1.11x.
    ExpTerm exp_summand_avx512(llvm::Value* x) {
        if (dbl_ || (!is_zmm() && ft_->isVectorTy())) return {exp_avx512(x, true), nullptr};
        llvm::Value* y = sel(olt(x, c(kSummandLo32)), c(kSummandLo32), x);
        Sixteenths red = reduce_sixteenths(y);
        llvm::Value* scale = b_.CreateAdd(table_lookup(kExp2SixteenthsLessJ, bits(red.t)), b_.CreateShl(bits(red.t), ci(19)));
        llvm::Value* p = fma(red.r, fma(red.r, c(kExpTableQ32[1]), c(kExpTableQ32[0])), c(1.0));
        return {from_bits(scale), fma(red.r, p, c(1.0))};
    }

    // exp on a target with AVX-512F: 512-bit vectors, and fp32 scalars (a kernel's per-row
    // values, which must match its vectors bit for bit); narrower vectors, which no kernel uses
    // on such a target, take exp_full. The clamps are written select(x < lo, lo, x): x86's
    // max/min return the second operand when either is NaN, so each is one instruction and NaN
    // flows through the arithmetic to the result without a final select.
    // nonpositive: x <= 0 or NaN is known (an argument minus its max), so no upper clamp.
    llvm::Value* exp_avx512(llvm::Value* x, bool nonpositive) {
        if (!is_zmm() && (dbl_ || ft_->isVectorTy())) return exp_full(x);
        llvm::Value* y = sel(olt(x, c(k_->exp_lo)), c(k_->exp_lo), x);
        if (!nonpositive) y = sel(ogt(y, c(k_->exp_hi)), c(k_->exp_hi), y);
        return dbl_ ? exp_scalef_f64(y) : exp_table_f32(y);
    }

    // vscalefpd for the 2^n step: scalef(p, n) = p 2^n with one rounding, so overflow gives inf
    // and denormal results are rounded once without the two-step split, and n stays a float (no
    // integer round trip). The same results as exp_core.
    llvm::Value* exp_scalef_f64(llvm::Value* y) {
        Reduced red = reduce_ln2(y);
        llvm::Value* r = red.r;
        llvm::Value* p = add(c(1.0), fma(mul(r, r), horner(r, kExpQ64), r));
        return scalef(p, red.nf);
    }

    // fp32 with the table of 2^(j/16): two fewer multiply-class instructions than exp_core's
    // |r| <= ln2/2 polynomial (the FMA units bound a logsumexp's exp loop).
    // t = y/ln2 + M with M = 1.5 * 2^19 rounds y/ln2 to a multiple of 1/16: t - M = k/16 exactly,
    // and the low 4 bits of t are k mod 16 (M's are zero), the table index (vpermps reads just
    // those). r = y - (k/16) ln2 with reduce_ln2's fma pair; the first is exact because
    // |k/16| <= 150 keeps (k/16) ln2_hi on a grid of 2^-28, and y, when k != 0, is at least
    // ln2/32 in size and so on a grid of 2^-29. The scale is 2^floor(k/16): vscalefps floors
    // k/16 itself; a scalar shifts k and scales in exactly exp_core's two steps, so that both
    // give the same bits.
    llvm::Value* exp_table_f32(llvm::Value* y) {
        Sixteenths red = reduce_sixteenths(y);
        llvm::Value* two_j16 = table_lookup(kExp2Sixteenths32, bits(red.t));
        // E(r) = exp(r) - 1 = r + r^2 (Q0 + r Q1)
        llvm::Value* e = fma(mul(red.r, red.r), fma(red.r, c(kExpTableQ32[1]), c(kExpTableQ32[0])), red.r);
        llvm::Value* p = fma(two_j16, e, two_j16);
        if (is_zmm()) return scalef(p, red.k16);
        return scale_pow2(p, b_.CreateAShr(b_.CreateSub(bits(red.t), bits(c(kSixteenthsMagic))), ci(4)));
    }

    // exp_table_f32's reduction: t, k/16 and r, exp(y) = 2^(k/16) exp(r).
    static constexpr double kSixteenthsMagic = 0x1.8p19;
    struct Sixteenths {
        llvm::Value *t, *k16, *r;
    };
    Sixteenths reduce_sixteenths(llvm::Value* y) {
        llvm::Value* magic = c(kSixteenthsMagic);
        llvm::Value* t = fma(y, c(k_->log2e), magic);
        llvm::Value* k16 = sub(t, magic);
        return {t, k16, ln2_lo_step(k16, fma(k16, c(-k_->exp_ln2_hi), y))};
    }

    // table[idx mod 16]: one vpermps (vpermd) for 16 lanes, an indexed constant for a scalar.
    template <class T>
    llvm::Value* table_lookup(const std::array<T, 16>& table, llvm::Value* idx) {
        llvm::Value* tv = llvm::ConstantDataVector::get(b_.getContext(), llvm::ArrayRef<T>(table.data(), table.size()));
        if (is_zmm()) {
            const auto id = std::is_same_v<T, float> ? llvm::Intrinsic::x86_avx512_permvar_sf_512 : llvm::Intrinsic::x86_avx512_permvar_si_512;
            return b_.CreateIntrinsic(id, {}, {tv, idx});
        }
        return b_.CreateExtractElement(tv, b_.CreateAnd(idx, ci(15)));
    }

    llvm::Value* scalef(llvm::Value* p, llvm::Value* n) {
        const auto id = dbl_ ? llvm::Intrinsic::x86_avx512_mask_scalef_pd_512 : llvm::Intrinsic::x86_avx512_mask_scalef_ps_512;
        llvm::Value* all = b_.getIntN(dbl_ ? 8 : 16, dbl_ ? 0xff : 0xffff);
        return b_.CreateIntrinsic(id, {}, {p, n, p, all, b_.getInt32(4)});
    }

    // Whether vscalefps/pd and vpermps apply: a 512-bit vector of f32 or f64.
    bool is_zmm() const {
        auto* vt = llvm::dyn_cast<llvm::FixedVectorType>(ft_);
        return vt && vt->getNumElements() * (dbl_ ? 64u : 32u) == 512u;
    }

    // exp with the C library's edges for any input.
    llvm::Value* exp_full(llvm::Value* x) {
        llvm::Value* y = exp_core(clamp(x, k_->exp_lo, k_->exp_hi));
        return sel(isnan(x), x, y);
    }

    // log(u) + c for finite u > 0 (normal), with `e_offset` added to the exponent of u (used to
    // undo a denormal pre-scaling) and a small correction c (log1p's rounding compensation).
    // Classic fdlibm shape: u = 2^k m, m in [sqrt(1/2), sqrt 2), f = m - 1 (exact),
    //   log(1+f) = f - f^2/2 + s (f^2/2 + R),  s = f/(2+f), R = z P(z), z = s^2,
    // which keeps the rounding error of s out of the leading terms.
    llvm::Value* log_core(llvm::Value* u, llvm::Value* e_offset, llvm::Value* corr) {
        llvm::Value* sh = ci(static_cast<int64_t>(k_->sqrt_half_bits));
        llvm::Value* ix = b_.CreateSub(bits(u), sh);
        llvm::Value* e = b_.CreateAShr(ix, ci(k_->mant_bits));  // exponent relative to sqrt(1/2)
        int64_t mant_mask = (int64_t{1} << k_->mant_bits) - 1;
        llvm::Value* mbits = b_.CreateAdd(b_.CreateAnd(ix, ci(mant_mask)), sh);
        llvm::Value* f = sub(from_bits(mbits), c(1.0));
        if (e_offset) e = b_.CreateAdd(e, e_offset);
        llvm::Value* dk = b_.CreateSIToFP(e, ft_);

        llvm::Value* s = div(f, add(c(2.0), f));
        llvm::Value* z = mul(s, s);
        llvm::Value* R = mul(z, dbl_ ? horner(z, kLogP64) : horner(z, kLogP32));
        llvm::Value* hfsq = mul(mul(c(0.5), f), f);
        llvm::Value* lo = mul(dk, c(k_->log_ln2_lo));
        if (corr) lo = add(lo, corr);
        // dk*ln2_hi - ((hfsq - (s*(hfsq+R) + lo)) - f): small terms first, exact dk*ln2_hi last.
        llvm::Value* t = sub(hfsq, add(mul(s, add(hfsq, R)), lo));
        return sub(mul(dk, c(k_->log_ln2_hi)), sub(t, f));
    }

    // log1p(x) for finite x > -1 with no special-case patching. u = 1 + x is rounded; the
    // rounding error is x - (u - 1) (exact when u < 2) or 1 - (u - x) (exact when u >= 2,
    // Sterbenz), and log1p(x) = log(u) + err/u to first order, which is ample since err/u is
    // below half an ulp of 1.
    llvm::Value* log1p_core(llvm::Value* x) {
        llvm::Value* u = add(c(1.0), x);
        llvm::Value* big = oge(u, c(2.0));
        llvm::Value* err = sel(big, sub(c(1.0), sub(u, x)), sub(x, sub(u, c(1.0))));
        return log_core(u, nullptr, div(err, u));
    }

private:
    llvm::IRBuilderBase& b_;
    llvm::IRBuilderBase::FastMathFlagGuard guard_;  // restores the caller's flags on return
    llvm::Type* ft_;
    llvm::Type* it_ = nullptr;
    bool dbl_ = false;
    bool one_fma_ = false;
    const TypeConsts* k_ = nullptr;
};

}  // namespace

llvm::Value* emit_exp(llvm::IRBuilderBase& b, llvm::Value* x) { return emit_exp(b, x, false); }
llvm::Value* emit_exp_avx512(llvm::IRBuilderBase& b, llvm::Value* x) { return emit_exp(b, x, true); }
llvm::Value* emit_exp_nonpositive_avx512(llvm::IRBuilderBase& b, llvm::Value* x) { return emit_exp_nonpositive(b, x, true); }

llvm::Value* emit_exp_nonpositive(llvm::IRBuilderBase& b, llvm::Value* x, bool avx512) {
    Emitter e(b, x);
    if (!e.dbl()) e.reduce_in_one_fma();
    return avx512 ? e.exp_avx512(x, true) : e.exp_full(x);
}

ExpTerm emit_exp_summand(llvm::IRBuilderBase& b, llvm::Value* x, bool avx512) {
    Emitter e(b, x);
    e.reduce_in_one_fma();
    return avx512 ? e.exp_summand_avx512(x) : ExpTerm{e.exp_full(x), nullptr};
}

llvm::Value* exp_term_value(llvm::IRBuilderBase& b, const ExpTerm& t) {
    if (!t.factor) return t.scale;
    Emitter e(b, t.scale);
    return e.mul(t.scale, t.factor);
}

llvm::Value* emit_exp(llvm::IRBuilderBase& b, llvm::Value* x, bool avx512) {
    Emitter e(b, x);
    return avx512 ? e.exp_avx512(x, false) : e.exp_full(x);
}

llvm::Value* emit_log(llvm::IRBuilderBase& b, llvm::Value* x) {
    Emitter e(b, x);
    const TypeConsts& k = e.k();
    // Denormals: multiply into the normal range and subtract the scale from the exponent.
    llvm::Value* den = e.olt(x, e.c(k.min_normal));
    llvm::Value* xs = e.sel(den, e.mul(x, e.c(k.denorm_scale)), x);
    llvm::Value* off = e.sel(den, e.ci(-k.denorm_scale_log2), e.ci(0));
    llvm::Value* y = e.log_core(xs, off, nullptr);
    y = e.sel(e.oeq(x, e.inf()), e.inf(), y);
    y = e.sel(e.oeq(x, e.c(0.0)), e.ninf(), y);        // log(+-0) = -inf
    return e.sel(e.ult(x, e.c(0.0)), e.nan(), y);      // x < 0 or NaN
}

llvm::Value* emit_log1p(llvm::IRBuilderBase& b, llvm::Value* x) {
    Emitter e(b, x);
    // Keep the core's input finite and > -1 so its bit tricks see ordinary numbers.
    llvm::Value* ok = e.ogt(x, e.c(-1.0));
    llvm::Value* fin = e.olt(x, e.inf());
    llvm::Value* xs = e.sel(e.b().CreateAnd(ok, fin), x, e.c(0.0));
    llvm::Value* y = e.log1p_core(xs);
    y = e.sel(e.oeq(x, e.c(0.0)), x, y);                 // keeps -0
    y = e.sel(e.oeq(x, e.inf()), e.inf(), y);
    y = e.sel(e.oeq(x, e.c(-1.0)), e.ninf(), y);
    return e.sel(e.ult(x, e.c(-1.0)), e.nan(), y);       // x < -1 or NaN
}

llvm::Value* emit_expm1(llvm::IRBuilderBase& b, llvm::Value* x) {
    Emitter e(b, x);
    const TypeConsts& k = e.k();
    llvm::Value* xc = e.clamp(x, k.expm1_lo, k.exp_hi);
    auto red = e.reduce_ln2(xc);
    llvm::Value* r = red.r;
    llvm::Value* q = e.dbl() ? e.horner(r, kExpm1Q64) : e.horner(r, kExpm1Q32);
    llvm::Value* em = e.fma(e.mul(r, r), q, r);  // expm1(r), accurate down to tiny r
    // expm1(x) = 2^n expm1(r) + (2^n - 1). While 2^n - 1 is exact this is one rounding of
    // exactly scaled terms; beyond, the -1 is below half an ulp and 2^n (1 + expm1(r)) is
    // scaled in two steps as in exp so it overflows cleanly.
    auto& bb = e.b();
    llvm::Value* n1 = bb.CreateAShr(red.ni, e.ci(1));
    llvm::Value* n2 = bb.CreateSub(red.ni, n1);
    llvm::Value* s1 = e.pow2i(n1);
    llvm::Value* s2 = e.pow2i(n2);
    llvm::Value* s = e.mul(s1, s2);
    llvm::Value* small = e.fma(em, s, e.sub(s, e.c(1.0)));
    llvm::Value* large = e.mul(e.fma(em, s1, s1), s2);
    llvm::Value* y = e.sel(bb.CreateICmpSGT(red.ni, e.ci(k.expm1_exact_n)), large, small);
    y = e.sel(e.oeq(x, e.c(0.0)), x, y);  // keeps -0
    return e.sel(e.isnan(x), x, y);
}

llvm::Value* emit_tanh(llvm::IRBuilderBase& b, llvm::Value* x) {
    Emitter e(b, x);
    const TypeConsts& k = e.k();
    // Work on a = |x| and put the sign back at the end (tanh is odd; also gives tanh(-0) = -0).
    llvm::Value* a = e.fabs(x);
    // Small |x|: odd minimax polynomial, a + a^3 T(a^2).
    llvm::Value* z = e.mul(a, a);
    llvm::Value* t = e.dbl() ? e.horner(z, kTanhT64) : e.horner(z, kTanhT32);
    llvm::Value* small = e.fma(e.mul(a, z), t, a);
    // Larger |x|: tanh(a) = 1 - 2/(e^{2a} + 1); no cancellation since the quotient is <= 0.45.
    // Capped where tanh rounds to 1, so e^{2a} never overflows.
    llvm::Value* ac = e.clamp(a, 0.0, k.tanh_cap);
    llvm::Value* E = e.exp_core(e.add(ac, ac));
    llvm::Value* large = e.sub(e.c(1.0), e.div(e.c(2.0), e.add(E, e.c(1.0))));
    llvm::Value* y = e.sel(e.olt(a, e.c(0.625)), small, large);
    y = e.copysign(y, x);
    return e.sel(e.isnan(x), x, y);
}

llvm::Value* emit_sigmoid(llvm::IRBuilderBase& b, llvm::Value* x) {
    Emitter e(b, x);
    const TypeConsts& k = e.k();
    // With E = e^{-|x|} in (0, 1]: sigmoid(x) = 1/(1+E) for x >= 0 and E/(1+E) for x < 0.
    // Nothing overflows, and for very negative x the result is E itself (denormal if need be).
    llvm::Value* na = e.sub(e.c(0.0), e.fabs(x));
    llvm::Value* E = e.exp_core(e.clamp(na, k.exp_lo, 0.0));
    llvm::Value* num = e.sel(e.oge(x, e.c(0.0)), e.c(1.0), E);
    llvm::Value* y = e.div(num, e.add(e.c(1.0), E));
    return e.sel(e.isnan(x), x, y);
}

llvm::Value* emit_softplus(llvm::IRBuilderBase& b, llvm::Value* x) {
    Emitter e(b, x);
    const TypeConsts& k = e.k();
    // softplus(x) = max(x, 0) + log1p(e^{-|x|}): the exponential never overflows and the log1p
    // term is in [0, ln2], so large x gives x and very negative x gives e^x (denormal if need be).
    llvm::Value* na = e.sub(e.c(0.0), e.fabs(x));
    llvm::Value* E = e.exp_core(e.clamp(na, k.exp_lo, 0.0));
    llvm::Value* L = e.log1p_core(E);
    llvm::Value* m = e.sel(e.ogt(x, e.c(0.0)), x, e.c(0.0));
    llvm::Value* y = e.add(m, L);
    return e.sel(e.isnan(x), x, y);
}

}  // namespace lossjit::jit
