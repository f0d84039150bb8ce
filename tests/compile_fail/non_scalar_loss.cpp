// expect: lossjit: grad\(loss, x\) needs a scalar loss
#include <lossjit/lossjit.hpp>
using namespace lossjit::dsl;
int main() {
    constexpr auto u = logits<"u">;
    auto g = lossjit::grad(log_softmax(u), u);  // a vector is not a loss
    (void)g;
}
