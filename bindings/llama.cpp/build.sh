#!/usr/bin/env bash
# Build saeplug-llama (bindings/llama.cpp: generate, capture, eval) against the cached
# llama.cpp build of scripts/build-llama.sh and the static saeplug C library.
#   bash bindings/llama.cpp/build.sh [--release] [-o OUT]
# Builds scripts/build-llama.sh's cache first when it is missing (minutes, once),
# then `cargo build -p saeplug-ffi` (debug, or --release), then compiles the
# tool with gcc. Prints the path of the executable (default:
# $CARGO_TARGET_DIR or target/, then <profile>/saeplug-llama).
# Environment: SAEPLUG_LLAMA_DIR (the llama.cpp cache), CARGO_TARGET_DIR, CC.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
profile=debug
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release ;;
    -o) out="$2"; shift ;;
    *) echo "build.sh: unknown argument '$1' (usage: build.sh [--release] [-o OUT])" >&2; exit 2 ;;
  esac
  shift
done
llama="${SAEPLUG_LLAMA_DIR:-$HOME/.cache/saeplug/llama}"
if [ ! -f "$llama/build/bin/libllama.so" ] || [ ! -f "$llama/src/include/llama.h" ]; then
  llama="$(bash "$root/scripts/build-llama.sh" | tail -n 1)"
fi
target="${CARGO_TARGET_DIR:-$root/target}"
flag=""
[ "$profile" = release ] && flag="--release"
(cd "$root" && cargo build -q -p saeplug-ffi $flag)
[ -n "$out" ] || out="$target/$profile/saeplug-llama"
mkdir -p "$(dirname "$out")"
src="$root/bindings/llama.cpp"
bin="$llama/build/bin"
"${CC:-gcc}" -std=c11 -O2 -Wall -Wextra -Werror \
  -I"$root/include" -I"$llama/src/include" -I"$llama/src/ggml/include" \
  "$src/saeplug_llama.c" "$src/saeplug_llama_eval.c" "$src/corpus.c" \
  "$src/capture.c" "$src/eval.c" "$src/logits.c" "$src/main.c" \
  "$target/$profile/libsaeplug_ffi.a" \
  -L"$bin" -lllama -lggml -lggml-base -lpthread -ldl -lm \
  -Wl,-rpath,"$bin" -o "$out"
# libsaeplug_llama.so next to the tool: the adapter alone, for llama-cpp-python
# (bindings/python's saeplug.llama_cpp). Its saeplug_* symbols stay undefined and
# bind to the libsaeplug_ffi the Python package loads; ggml binds to this cache's
# libggml-base (rpath), which is also what llama-cpp-python must load
# (LLAMA_CPP_LIB_PATH=$bin). The ggml version of the headers is baked in so that
# a mismatched libllama is refused at attach time.
ggml_ver="$(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$llama/src/ggml/CMakeLists.txt" | paste -sd.)"
"${CC:-gcc}" -std=c11 -O2 -Wall -Wextra -Werror -shared -fPIC \
  -DSAEPLUG_GGML_VERSION="\"${ggml_ver:-unknown}\"" \
  -I"$root/include" -I"$llama/src/include" -I"$llama/src/ggml/include" \
  "$src/saeplug_llama.c" -L"$bin" -lggml-base -Wl,-rpath,"$bin" \
  -o "$(dirname "$out")/libsaeplug_llama.so"
echo "$out"
