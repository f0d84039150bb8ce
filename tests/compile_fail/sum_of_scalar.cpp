// expect: lossjit: sum\(v\) needs a vector, but this argument is a scalar
#include <lossjit/lossjit.hpp>
using namespace lossjit::dsl;
int main() {
    constexpr auto u = logits<"u">;
    auto e = sum(logsumexp(u));  // logsumexp is already a scalar
    (void)e;
}
