// expect: lossjit: grad\(loss, x\): x must be logits<> or scalar<>
#include <lossjit/lossjit.hpp>
using namespace lossjit::dsl;
int main() {
    constexpr auto u = logits<"u">;
    constexpr auto p = probs<"p">;
    auto g = lossjit::grad(-sum(p * log(softmax(u))), p);  // targets are not differentiated
    (void)g;
}
