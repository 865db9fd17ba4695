#!/usr/bin/env bash
# Installs the system packages Weir's build needs, when they are missing: a C/C++ toolchain and
# make (librdkafka and RocksDB are C and C++), libclang (RocksDB's Rust bindings are generated
# with it) and clang++ (it compiles RocksDB about twice as fast as g++; see scripts/cxx).
# Needs root or sudo for apt-get; prints what it installs on stderr.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v clang++ >/dev/null 2>&1 || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need+=(libclang-dev)
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "weir: please install ${need[*]} (needed to build Weir)" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "weir: run as root, or install ${need[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "weir: installing ${need[*]} (apt-get)" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
