// expect: a label<> is a class index; use it only in onehot\(y\) or at\(v, y\)
#include <lossjit/lossjit.hpp>
using namespace lossjit::dsl;
int main() {
    constexpr auto u = logits<"u">;
    constexpr auto y = label<"y">;
    auto e = u + y;
    (void)e;
}
