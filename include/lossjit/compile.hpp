// compile(loss, wrt(u), options): a DSL loss straight to a Kernel: lowered (simplified loss,
// gradients, extra outputs) to a Graph, then compiled by the JIT (kernel.hpp, linked from
// lossjit::jit). LOSSJIT_DEBUG=1 (or more) prints the expression, the rule trace, the
// simplified loss and each output to stderr; higher levels are the JIT's (Graph, IR, assembly).
#pragma once

#include <cstdlib>
#include <iostream>

#include "lossjit/kernel.hpp"
#include "lossjit/lower.hpp"
#include "lossjit/print.hpp"

namespace lossjit {

template <class E, class... X, fixed_string... Names, class... A>
Kernel compile(const E& loss, wrt_t<X...> w, const CompileOptions& options, const also_t<Names, A>&... extra) {
    const Graph g = lower(loss, w, extra...);
    const char* level = std::getenv("LOSSJIT_DEBUG");
    if (level != nullptr && std::atoi(level) >= 1) {
        const Term t = simplify(loss);
        std::cerr << "lossjit: expression  " << to_string(loss) << "\n"
                  << "lossjit: rule trace\n" << trace_to_string(t) << "lossjit: simplified  " << to_string(t) << "\n";
        for (const Output& o : g.outputs())
            std::cerr << "lossjit: " << o.name.view() << " = " << to_string(g, o.root) << "\n";
    }
    return compile(g, options);
}

// The loss alone (no gradient) or with gradients and default options.
template <Expr E, class... X>
Kernel compile(const E& loss, wrt_t<X...> w = {}) {
    return compile(loss, w, CompileOptions{});
}

}  // namespace lossjit
