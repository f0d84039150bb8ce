// Errors in units in the last place of a floating format (fp32, fp64, bf16), against a long
// double reference: the spacing of the format at the reference value, the denormal spacing
// below the normal range (results that underflow are judged by absolute error there), and a
// reference beyond the largest finite value (after rounding) expects inf of its sign.
#pragma once

#include <cmath>
#include <limits>
#include <string>

#include "lossjit/kernel.hpp"

namespace jt {

struct Format {
    int digits;        // significand bits, the implicit one included
    int min_exponent;  // as std::numeric_limits: 2^(min_exponent - 1) is the smallest normal
    int max_exponent;  // 2^max_exponent is the first power of two past the largest finite
};

inline Format format_of(lossjit::DType d) {
    if (d == lossjit::DType::f64) return {53, -1021, 1024};
    if (d == lossjit::DType::bf16) return {8, -125, 128};
    return {24, -125, 128};
}

inline double ulp_error(long double got, long double ref, Format f) {
    if (std::isnan(ref)) return std::isnan(got) ? 0.0 : INFINITY;
    if (std::isnan(got)) return INFINITY;
    const long double maxv = (2.0L - ldexpl(1.0L, 1 - f.digits)) * ldexpl(1.0L, f.max_exponent - 1);
    const long double overflow = maxv + ldexpl(1.0L, f.max_exponent - f.digits - 1);  // max + ulp/2
    if (fabsl(ref) >= overflow) return (std::isinf(got) && (got > 0) == (ref > 0)) ? 0.0 : INFINITY;
    if (std::isinf(got)) return INFINITY;
    const int e = ref == 0 ? f.min_exponent - 1 : std::max(ilogbl(ref), f.min_exponent - 1);
    return static_cast<double>(fabsl(got - ref) / ldexpl(1.0L, e - (f.digits - 1)));
}

// Running maximum and mean of ulp errors, with where the maximum was seen.
struct UlpStats {
    double max = 0, sum = 0;
    std::size_t n = 0;
    std::string worst;
    template <class Describe> void add(double e, Describe&& describe) {
        if (e > max) {
            max = e;
            worst = describe();
        }
        sum += e;
        ++n;
    }
    double mean() const { return n ? sum / static_cast<double>(n) : 0.0; }
};

}  // namespace jt
