#!/usr/bin/env bash
# The project's one build script, behind the README's two commands:
#   bash .ci/build.sh demo   install what is missing, build, run the quickstart demo
#   bash .ci/build.sh test   install what is missing, build, run the whole test suite; then
#                            again in a second build (clang 14, AddressSanitizer and
#                            UndefinedBehaviorSanitizer) that also runs the fuzzer for 60 s
#   bash .ci/build.sh bench  also install the benchmark's peers, build, run the benchmark
# Runs as root on a fresh Debian 12 machine; installs only the Debian packages it lacks.
set -euo pipefail

mode=${1:-demo}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOSSJIT_BUILD_DIR:-$here/build}

# Why each package: the compiler and build tools; Boost.Hana (libboost-dev, 1.74); Catch2 2.13
# for the tests; LLVM 19 for the JIT (its CMake config wants zlib and zstd headers); clang 14,
# the second compiler the headers must build with, and the sanitizer build's compiler: its
# sanitizer and libFuzzer runtimes (libclang-rt-14-dev) and its OpenMP (libomp-14-dev).
packages=(g++ make cmake libboost-dev catch2 llvm-19-dev zlib1g-dev libzstd-dev clang-14)
if [[ $mode == test ]]; then packages+=(libclang-rt-14-dev libomp-14-dev); fi
# The benchmark's peers, only for `bench`: PyTorch (libtorch-dev), oneDNN (libdnnl-dev), and
# matplotlib for the plot.
if [[ $mode == bench ]]; then packages+=(libtorch-dev libdnnl-dev python3-matplotlib); fi

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
    ;;
  test)
    ctest --test-dir "$build" --output-on-failure -j"$jobs"
    # The sanitizer build: clang 14 (it has libFuzzer), -O1 as ASan advises (a quarter less
    # compile time than -O3), line tables for readable reports, asserts on; no benchmark.
    san=${LOSSJIT_SAN_BUILD_DIR:-$build-san}
    CC=clang-14 CXX=clang++-14 cmake -S "$here" -B "$san" -DLOSSJIT_SANITIZE=ON \
      -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -gline-tables-only" \
      -DLOSSJIT_BUILD_BENCH=OFF
    cmake --build "$san" -j"$jobs"
    # The whole suite again, the fuzzer's 60 s among it (tests/fuzz), so that ctest's summary
    # is the command's last line. compile-fail and clang-14 only run a compiler (they passed
    # above), and their expected messages are g++'s.
    ctest --test-dir "$san" --output-on-failure -j"$jobs" -E "compile-fail|clang-14"
    ;;
  bench)
    "$build/bench/bench_ce" --json "$build/bench.json" --plot "$here/docs/bench.png" "${@:2}"
    ;;
  *)
    echo "usage: bash .ci/build.sh demo|test|bench" >&2
    exit 2
    ;;
esac
