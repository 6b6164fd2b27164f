#!/usr/bin/env bash
# Bounded smoke of every cargo-fuzz target (fuzz/fuzz_targets): a fixed number of
# executions each from the seed corpus made here. Long runs: see docs/FUZZING.md.
#   bash scripts/fuzz-smoke.sh [RUNS]      (default 3000 per target)
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
runs="${1:-3000}"
command -v cargo-fuzz >/dev/null || cargo install -q cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
shared="${SAEPLUG_FIXTURES:-../../shared/fixtures}"
mkdir -p corpus/safetensors corpus/npz corpus/cfg_json corpus/c_abi corpus/npy
cp "$shared/saelens/jumprelu/sae_weights.safetensors" corpus/safetensors/seed-fixture
cp "$shared/saelens/topk/cfg.json" corpus/cfg_json/seed-fixture
printf '{"d_in": 4, "d_sae": 8, "architecture": "gated"}' > corpus/cfg_json/seed-gated
python3 -c "
import numpy as np
np.savez('corpus/npz/seed.npz', W_enc=np.ones((4,8),np.float32), W_dec=np.ones((8,4),np.float32),
         b_enc=np.zeros(8,np.float32), b_dec=np.zeros(4,np.float32), threshold=np.zeros(8,np.float32))"
head -c 256 /dev/urandom > corpus/c_abi/seed-random
python3 -c "
import numpy as np
np.save('corpus/npy/seed.npy', np.arange(6, dtype=np.float32).reshape(2, 3))"
for t in safetensors npz cfg_json c_abi npy; do
  cargo fuzz run -O "$t" "corpus/$t" -- -runs="$runs" -rss_limit_mb=4096 -max_total_time=300 2>&1 | tail -n 2
done
echo "fuzz smoke: 5 targets x $runs runs, no crash"
