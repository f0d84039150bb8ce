// The one exception type of the library. Every run-time misuse (a missing binding, a label out
// of range, a failure inside LLVM) becomes a lossjit::error whose message names the argument
// and the value; nothing is written to the caller's outputs before it is thrown.
#pragma once

#include <stdexcept>
#include <string>

namespace lossjit {

class error : public std::runtime_error {
public:
    explicit error(const std::string& what) : std::runtime_error("lossjit: " + what) {}
};

}  // namespace lossjit
