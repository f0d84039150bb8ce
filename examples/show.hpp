// Shared by the loss-family examples: print a loss the way the library sees it, and check a
// kernel's per-row outputs against the long-double reference evaluator.
#pragma once

#include <lossjit/compile.hpp>
#include <lossjit/lossjit.hpp>

#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace example {

// The loss as written, its simplified form and its gradient with respect to `x`.
template <class E, class X>
void show(const std::string& title, const E& loss, const X& x) {
    std::cout << "== " << title << "\n  loss:       " << loss << "\n  simplified: " << lossjit::simplify(loss)
              << "\n  gradient:   " << lossjit::grad(loss, x) << "\n";
}

// Compares every output of `kernel` for rows [0, n) with the reference evaluator; `row` gives
// the inputs of one row, `got(output, row, j)` the kernel's value (j = 0 for per-row outputs).
// Returns the largest difference, and prints it.
inline double check(const lossjit::Kernel& kernel, std::size_t n, const std::function<lossjit::RowValues(std::size_t)>& row,
                    const std::function<double(std::string_view, std::size_t, std::size_t)>& got) {
    const lossjit::Graph& g = kernel.graph();
    double worst = 0;
    for (std::size_t r = 0; r < n; ++r) {
        const auto values = lossjit::evaluate_all(g, row(r));
        for (const lossjit::Output& o : g.outputs()) {
            const lossjit::Value& want = values[static_cast<std::size_t>(o.root)];
            const std::size_t count = want.is_vector ? want.v.size() : 1;
            for (std::size_t j = 0; j < count; ++j)
                worst = std::max(worst, std::fabs(got(o.name.view(), r, j) - static_cast<double>(want[j])));
        }
    }
    std::printf("  kernel vs reference on %zu rows: largest difference %.3g\n", n, worst);
    return worst;
}

// One row of a row-major N x K array as long doubles.
template <class T>
std::vector<long double> row_of(const std::vector<T>& a, std::size_t r, std::size_t k) {
    return std::vector<long double>(a.begin() + static_cast<std::ptrdiff_t>(r * k), a.begin() + static_cast<std::ptrdiff_t>((r + 1) * k));
}

}  // namespace example
