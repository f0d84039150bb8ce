#!/usr/bin/env bash
# The project's one build script, behind the README's two commands:
#   bash .ci/build.sh demo   install what is missing, build, run the quickstart demo
#   bash .ci/build.sh test   install what is missing, build, run the whole test suite
# Runs as root on a fresh Debian 12 machine; installs only the Debian packages it lacks.
set -euo pipefail

mode=${1:-demo}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOSSJIT_BUILD_DIR:-$here/build}

# Why each package: the compiler and build tools; Boost.Hana (libboost-dev, 1.74); Catch2 2.13
# for the tests; LLVM 19 for the JIT (its CMake config wants zlib and zstd headers); clang 14,
# the second compiler the headers must build with.
packages=(g++ make cmake libboost-dev catch2 llvm-19-dev zlib1g-dev libzstd-dev clang-14)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "lossjit: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc)
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$jobs"

case "$mode" in
  demo)
    "$build/examples/quickstart"
    if [[ -x "$build/examples/jit_quickstart" ]]; then "$build/examples/jit_quickstart"; fi
    ;;
  test)
    ctest --test-dir "$build" --output-on-failure -j"$jobs"
    ;;
  *)
    echo "usage: bash .ci/build.sh demo|test" >&2
    exit 2
    ;;
esac
