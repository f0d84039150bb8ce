// The generated translation units compiled into this executable each include one public
// header alone (see tests/CMakeLists.txt); if any did not stand on its own, the build failed.
#include <catch2/catch.hpp>

#include <string_view>

TEST_CASE("every public header compiles on its own") {
    constexpr std::string_view headers[] = {LOSSJIT_HEADERS};
    for (std::string_view h : headers) INFO(h);
    CHECK(std::size(headers) >= 15);
}
