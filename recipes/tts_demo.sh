#!/usr/bin/env bash
# Rebuild the shipped CPU demo (xtts_jax/assets/tts_demo) from nothing: speech corpus -> DVAE ->
# tokens -> TTS -> evaluation (Whisper WER, speaker similarity). Needs `apt-get install flite` and the eval extra.
# On the 2-core CPU it took: corpus 9 min, DVAE 4 min, tokens 6 min, TTS (2,600 steps) ~80 min.
# (The TTS time predates the CPU training defaults of issue 23: unrolled layers, blocked attention and one
# JAX device per core, which train_tts.py applies by itself; bench/bench_train_cpu.py measures the step.)
#
#     bash recipes/tts_demo.sh [OUT]            # default OUT: runs/tts_demo
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/tts_demo}
DATA=$OUT/corpus
PY=${PYTHON:-python}

# four flite voices read the same 4,000 sentences of the embedded story generator (3,000 each for
# training, the 5% held-out sentences by all four)
$PY recipes/make_speech_corpus.py --out "$DATA" --voices flite_kal,flite_awb,flite_rms,flite_slt \
    --max-sentences 4000 --per-voice 3000 --eval-voices ""
$PY recipes/train_dvae.py --data "$DATA" --preset cpu --steps 4000 --batch-size 16 --eval-every 1000 \
    --out "$OUT/dvae"
for split in train eval; do
    $PY tools/encode_audio.py --dvae "$OUT/dvae/dvae.safetensors" --data "$DATA/$split.jsonl" \
        --out "$DATA/tokens/$split"
done
$PY recipes/train_tts.py --tokens "$DATA/tokens/train" --preset demo --text-vocab corpus --steps 2600 \
    --batch-size 32 --lr 1e-3 --warmup-steps 200 --eval-every 500 --sample-every 1300 --ckpt-every 500 \
    --out "$OUT/tts"
$PY tools/evaluate_tts.py --manifest "$DATA/eval.jsonl" --checkpoint "$OUT/tts/tts.safetensors" \
    --per-speaker 12 --out "$OUT/eval"
