#!/usr/bin/env bash
# Rebuild the default model from nothing on a 2-core CPU, through the mission's chain:
# speech corpora -> multi-voice DVAE -> audio tokens -> code recogniser alignments -> XTTS-style
# generator (phoneme text, 1024-d speaker vectors, text pointer) -> reranking recogniser -> a DVAE
# decoder that reads the voice's reference -> 16-bit package -> evaluation (Whisper WER, speaker
# similarity) on held-out sentences and held-out voices.
# The shipped default model (xtts_jax/assets/tts_demo, 2026-12-07) is this script's output with its
# defaults: WER 0.140 / 0.153 on the held-out evaluation (two sampling seeds; MODEL_CARD.md).
#
#     bash recipes/tts_demo.sh [OUT] [GENERATOR_STEPS]      # defaults: runs/tts_demo 2000
#
# Environment:
#   INIT=path/tts.safetensors  start the generator from a trained one instead of from scratch (the
#                              shipped model is the previous default fine-tuned this way: INIT=<it>,
#                              GENERATOR_STEPS=2000 of a 2,500-step cosine, LR=6e-4)
#   INIT_GPT=1                 pretrain the text GPT of the generator's width on the embedded story
#                              corpus first and start the generator's blocks from it (the mission's
#                              chain; docs/default_model/README.md compares it with scratch)
#   LR (default 1e-3 from scratch, 6e-4 with INIT), CANDIDATES (4: sampled per sentence, best kept),
#   REFERENCE_STRENGTH (2: how far the decoder pushes a voice's reference features from the nearest
#   training voice; chosen on four validation voices no stage trains on, docs/default_model/README.md),
#   RUNGS (the evaluation's rungs, default recording,mel,dvae,model),
#   COMPUTE_DTYPE=float32 (train_tts.py computes in bfloat16 where the CPU has bfloat16 kernels)
#
# Needs `apt-get install flite festival festvox-kallpc16k espeak-ng` (training and reference speech
# only; nothing on the synthesis path calls them) and the eval extra. Stage times measured on the
# 2-core CPU (docs/default_model/README.md): corpora about 20 min (two at a time), DVAE 40 min, its
# reference-reading decoder 22 min, tokens 15 min, alignment recogniser and alignments 5 min, the
# generator 1.55 s a step in bfloat16 (2,000 steps: 55 min with loading), reranking recogniser 4 min,
# evaluation about 12-20 min (RUNGS=model: 6 min): about 2 h 50 min - 3 h.
# Each stage is skipped when its output exists and the trainers resume from their last checkpoint, so
# a run that stops (or a session that ends) goes on where it was by running the same command again.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/tts_demo}
STEPS=${2:-2000}
CANDIDATES=${CANDIDATES:-4}
STRENGTH=${REFERENCE_STRENGTH:-2}
PY=${PYTHON:-python}
DTYPE=(); if [ -n "${COMPUTE_DTYPE:-}" ]; then DTYPE=(--compute-dtype "$COMPUTE_DTYPE"); fi
FLITE=flite_kal,flite_awb,flite_rms,flite_slt
# 23 espeak-ng voices for the DVAE and the generator; espeak_us_m7 and espeak_rp_f2 stay unheard
ESPEAK=espeak_f3,espeak_m3,espeak_klatt4,espeak_annie,espeak_whisper,espeak_us_f5,espeak_scot_m1,espeak_croak
ESPEAK=$ESPEAK,espeak_m1,espeak_m2,espeak_f1,espeak_f4,espeak_klatt2,espeak_klatt3,espeak_andy,espeak_michael
ESPEAK=$ESPEAK,espeak_john,espeak_max,espeak_david,espeak_us_m3,espeak_us_f4,espeak_alicia,espeak_grandpa
PILOT=$OUT/pilot; VOICES=$OUT/voices; BROAD=$OUT/broad; HELDOUT=$OUT/heldout; TOK=$OUT/tokens

# 1. corpora, two at a time. pilot: flite's four voices read 3,000 sentences, half from the story
#    generator and half everyday ones (2,500 a voice for training); voices: the 23 espeak-ng voices
#    read 320 everyday sentences each; broad: 16,000 more everyday sentences in flite's voices, 4,000
#    a voice; heldout: the 48 evaluation sentences (never trained on) in flite's voices, festival's kal
#    and two espeak-ng voices no stage trains on
corpus() { [ -f "$1/eval.jsonl" ] || $PY recipes/make_speech_corpus.py --out "$1" "${@:2}"; }
corpus "$PILOT" --source mixed --voices $FLITE --max-sentences 3000 --per-voice 2500 --eval-voices "" & first=$!
corpus "$VOICES" --source everyday --voices $ESPEAK --max-sentences 7600 --per-voice 320 --eval-voices "" --seed 3
wait "$first"  # its exit status: a failed corpus stops the script
corpus "$BROAD" --source everyday --voices $FLITE --max-sentences 16000 --per-voice 4000 --eval-voices "" --seed 1 & first=$!
corpus "$HELDOUT" --text xtts_jax/eval/heldout_sentences.txt \
    --voices $FLITE,festival_kal,espeak_us_m7,espeak_rp_f2 --eval-voices "" --eval-fraction 1
wait "$first"
grep '"espeak' "$HELDOUT/eval.jsonl" > "$HELDOUT/espeak2.jsonl"
# 2. the DVAE on flite's and espeak-ng's voices (small preset, 9.8M parameters; only its decoder and
#    codebook are shipped); its held-out loss is also measured on the two unheard espeak-ng voices
resume() { [ -d "$1/checkpoints" ] && echo --resume || true; }
[ -f "$OUT/dvae/dvae.safetensors" ] || $PY recipes/train_dvae.py --data "$PILOT,$VOICES" --eval-data "$PILOT/eval.jsonl" \
    --eval-voices-data "$HELDOUT/espeak2.jsonl" --preset small --steps 9000 --batch-size 16 \
    --eval-every 3000 --out "$OUT/dvae" $(resume "$OUT/dvae")
# 2b. the speaker-conditioned decoder of that DVAE (its encoder and codebook frozen, so the codes stay
#    the same): it reads the mean and spread of each mel channel of a reference recording, and half
#    its segments pass through a random voice change, so it takes an unheard voice's timbre from its
#    reference instead of from the codes
[ -f "$OUT/dvae_speaker/dvae.safetensors" ] || $PY recipes/train_dvae.py --data "$PILOT,$VOICES" \
    --eval-voices-data "$HELDOUT/espeak2.jsonl" --init "$OUT/dvae/dvae.safetensors" \
    --decoder-speaker --steps 5000 --batch-size 16 --max-utterances 8000 --eval-every 1000 \
    --out "$OUT/dvae_speaker" $(resume "$OUT/dvae_speaker")
# 3. every corpus as audio codes (held-out parts capped: the trainers' held-out losses sample a few batches)
D=$OUT/dvae/dvae.safetensors
encode() { [ -f "$2.json" ] || $PY tools/encode_audio.py --dvae "$D" --data "$1" --out "$2" "${@:3}"; }
encode "$PILOT/train.jsonl" "$TOK/pilot_train"
encode "$PILOT/eval.jsonl" "$TOK/pilot_eval"
encode "$VOICES/train.jsonl" "$TOK/voices_train"
encode "$VOICES/eval.jsonl" "$TOK/voices_eval" --per-speaker 20
encode "$BROAD/train.jsonl" "$TOK/broad_train"
encode "$BROAD/eval.jsonl" "$TOK/broad_eval" --per-speaker 100
ALL=$TOK/pilot_train,$TOK/voices_train,$TOK/broad_train
HELD=$TOK/pilot_eval,$TOK/voices_eval,$TOK/broad_eval
# 4. which phoneme each code speaks: a code recogniser (CTC from codes to phonemes, 128 wide, 4
#    blocks, 3 min) and its Viterbi path; 5% of training words are spelled as letters. (The labels
#    are the phoneme tokenizer's, read from the shipped model's config.)
[ -f "$OUT/align_rec/recognizer.safetensors" ] || $PY recipes/train_recognizer.py --tokens "$ALL" --eval-tokens "$HELD" --n-embd 128 --n-layer 4 \
    --steps 2000 --spell-fraction 0.05 --out "$OUT/align_rec"
[ -f "$TOK/broad_train.align.jsonl" ] ||
    $PY tools/align_tokens.py --recognizer "$OUT/align_rec/recognizer.safetensors" --tokens "$ALL" --spell-fraction 0.05
[ -f "$TOK/broad_eval.align.jsonl" ] ||
    $PY tools/align_tokens.py --recognizer "$OUT/align_rec/recognizer.safetensors" --tokens "$HELD" --spell-fraction 0
# 5. the generator with the text pointer (models/pointer.py): it reads the phoneme it speaks and
#    learns when to move on, from the alignments; from scratch, from INIT, or from the TinyStories GPT
START=(--preset cpu --text-vocab phonemes --speaker-dim 1024)
if [ -n "${INIT:-}" ]; then
    START=(--init "$INIT"); LR=${LR:-6e-4}
elif [ "${INIT_GPT:-0}" = 1 ]; then
    [ -f "$OUT/gpt/model.safetensors" ] || $PY recipes/tinystories_pretrain.py --out "$OUT/gpt" --model.n-layer 6 --model.n-embd 192 --model.n-head 4 \
        --model.block-size 256 --batch-size 32 --steps 600 --lr 2e-3 --min-lr 2e-4 --warmup-steps 50 \
        --sample-every 0 $(resume "$OUT/gpt")
    START+=(--init-gpt "$OUT/gpt/model.safetensors")
fi
[ -f "$OUT/tts/tts.safetensors" ] || $PY recipes/train_tts.py "${DTYPE[@]}" "${START[@]}" --tokens "$ALL" --eval-tokens "$HELD" --text-pointer \
    --steps "$STEPS" --batch-size 32 --lr "${LR:-1e-3}" --warmup-steps 100 --eval-every 500 --sample-every 0 \
    --ckpt-every 250 --seed 0 --out "$OUT/tts" $(resume "$OUT/tts")
# 6. the code recogniser that keeps the best of CANDIDATES sampled sentences (64 wide, 4 blocks:
#    0.35 MB in float16; 4 min)
[ -f "$OUT/recognizer/recognizer.safetensors" ] ||
    $PY recipes/train_recognizer.py --tokens "$ALL" --eval-tokens "$HELD" --tts "$OUT/tts/tts.safetensors" \
    --n-embd 64 --n-layer 4 --steps 2000 --out "$OUT/recognizer"
# 7. the package: 16-bit generator, decoder-only DVAE that reads the reference, recogniser, flite's
#    four voices (1024-d, and each voice's reference features for the decoder, from 20 of its clips);
#    the decoder renders a reference STRENGTH times as far from the nearest training voice as it lies
mkdir -p "$OUT/ship_speakers"
cp "$OUT"/tts/speakers/flite_{kal,awb,rms,slt}.npy "$OUT/ship_speakers/"
$PY tools/pack_model.py --tts "$OUT/tts/tts.safetensors" --dvae "$OUT/dvae_speaker/dvae.safetensors" \
    --voice-data "$PILOT/train.jsonl" --speakers "$OUT/ship_speakers" --recognizer "$OUT/recognizer/recognizer.safetensors" --out "$OUT/package" \
    --temperature 0.3 --top-k 50 --top-p 0.85 --repetition-penalty 1 --candidates "$CANDIDATES" \
    --reference-strength "$STRENGTH"  # chosen on held-out data
# 8. evaluation: the 48 held-out sentences, 20 a voice, in the seven voices; every rung from the
#    recordings to the model; the nearest-voice test also against the 23 espeak-ng training voices
$PY tools/evaluate_tts.py --manifest "$HELDOUT/eval.jsonl" --checkpoint "$OUT/package/tts.safetensors" \
    --dvae "$OUT/dvae_speaker/dvae.safetensors" --reference-strength "$STRENGTH" \
    --rungs "${RUNGS:-recording,mel,dvae,model}" --per-speaker 20 --seed 0 \
    --voice-pool "$PILOT/train.jsonl,$VOICES/train.jsonl" --pool-clips 3 --out "$OUT/eval"
echo "to ship: copy $OUT/package/* and $OUT/eval into xtts_jax/assets/tts_demo/ and update its MODEL_CARD.md and card.json"
