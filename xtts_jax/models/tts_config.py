"""The generator's configuration: sizes, text tokenizer, speaker width, sampling limits, and the
named presets (XTTS-v2's, and the CPU sizes the demo is trained at). A config travels with every
checkpoint as JSON (``TTSConfig.to_dict`` / ``from_dict``); ``models/tts.py`` builds the model from it."""

from __future__ import annotations

import dataclasses

from xtts_jax.errors import UserError
from xtts_jax.models.conditioning import PRESETS as COND_PRESETS, ConditioningConfig
from xtts_jax.models.gpt_config import GPTConfig
from xtts_jax.text.tokenizer import EOT_ID, VOCAB_SIZE

TOKENIZERS = ("gpt2", "xtts", "phonemes")


@dataclasses.dataclass(frozen=True)
class TTSConfig:
    gpt: GPTConfig = GPTConfig(n_layer=30, n_head=16, n_embd=1024)
    text_vocab_size: int = VOCAB_SIZE  # GPT-2 BPE; XTTS-v2's own tokenizer has 6,681
    text_start_token: int = EOT_ID  # XTTS-v2: 261
    text_stop_token: int = EOT_ID  # XTTS-v2: 0
    # Compact vocabulary: the GPT-2 ids of the text table's rows (``text.vocab.VocabMap``), so a
    # demo trained on a narrow corpus carries a few hundred rows; empty: row i is GPT-2 id i.
    text_vocab: tuple[int, ...] = ()
    # Table sizes. XTTS-v2 sizes them gpt_max_text_tokens 402 + 2 and gpt_max_audio_tokens 605 + 3.
    text_positions: int = 404
    audio_positions: int = 608
    num_audio_codes: int = 1024
    conditioning: ConditioningConfig | None = ConditioningConfig()
    # Text tokenizer: "gpt2" (GPT-2 BPE, tiktoken), "xtts" (an XTTS-v2 vocab.json, carried in
    # the checkpoint's metadata; ``text.xtts_tokenizer``) or "phonemes" (``text.phonemes``: CMUdict
    # phonemes, letters for other words; any English sentence).
    tokenizer: str = "gpt2"
    # Width of the speaker conditioning vectors at the interface (emb.npy, the conditioner's
    # output): 0 is the GPT's n_embd (XTTS-v2: 1024); wider, they are projected to n_embd as they
    # enter the sequence, so every model takes the same 1024-d vectors.
    speaker_dim: int = 0
    # Sampling steps per sentence, the stop token included; 0: every audio position but start and
    # stop. XTTS-v2 conversions: coqui's max_gen_mel_tokens, gpt_max_audio_tokens - 1 - 2 = 602.
    max_new_audio_tokens: int = 0
    # False: the audio start token's logit is masked, so it is never drawn. True for XTTS-v2
    # conversions, as coqui's HF generate call, which leaves it drawable (drawn, it stays in the
    # codes the latents pass reads, but is no DVAE code).
    sample_audio_start: bool = False
    # An auxiliary head on the audio latents that reads the text's next phonemes, trained with CTC
    # (``models/alignment.py``): a training-time aid for alignment; sampling never reads it.
    ctc_head: bool = False
    # A text pointer (``models/pointer.py``): each audio position also reads the text token being
    # spoken (its embedding and position, from a forced alignment in training) and a head says when
    # the next one starts; sampling moves the pointer and stops only at the end of the text.
    text_pointer: bool = False

    def __post_init__(self):
        if self.tokenizer not in TOKENIZERS:
            raise UserError(f"TTS tokenizer {self.tokenizer!r} is not one of {', '.join(TOKENIZERS)}")
        if self.conditioning is not None and self.conditioning.width != self.speaker_width:
            raise UserError(f"the conditioning encoder gives {self.conditioning.width}-d vectors, "
                            f"the model reads {self.speaker_width}-d")
        if max(self.text_start_token, self.text_stop_token) >= self.text_vocab_size:
            raise UserError("text start/stop tokens must lie inside the text vocabulary")
        if self.text_vocab and len(self.text_vocab) != self.text_vocab_size:
            raise UserError(f"text_vocab lists {len(self.text_vocab)} ids for a {self.text_vocab_size}-row text table")
        if not 0 <= self.max_new_audio_tokens <= self.audio_positions - 2:
            raise UserError(f"max_new_audio_tokens {self.max_new_audio_tokens} must lie in [0, "
                            f"{self.audio_positions - 2}] (the audio positions less start and stop)")

    @property
    def speaker_width(self) -> int:
        """Width of the conditioning vectors the model takes."""
        return self.speaker_dim or self.gpt.n_embd

    @property
    def audio_vocab_size(self) -> int:
        return self.num_audio_codes + 2

    @property
    def audio_start_token(self) -> int:
        return self.num_audio_codes

    @property
    def audio_stop_token(self) -> int:
        return self.num_audio_codes + 1

    @property
    def generation_limit(self) -> int:
        """Sampling steps per sentence (stop token included): ``max_new_audio_tokens``, else every
        audio position but the start and stop token's."""
        return self.max_new_audio_tokens or self.audio_positions - 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TTSConfig":
        d = dict(d)
        d["gpt"] = GPTConfig.from_dict(d["gpt"])
        d["text_vocab"] = tuple(d.get("text_vocab", ()))
        cond = d.get("conditioning")
        d["conditioning"] = ConditioningConfig.from_dict(cond) if cond else None
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserError(f"unknown TTSConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


PRESETS: dict[str, TTSConfig] = {
    "xtts-v2": TTSConfig(),
    # CPU sizes: "small" for demos, "tiny" for tests and benchmarks.
    "small": TTSConfig(gpt=GPTConfig(n_layer=6, n_head=4, n_embd=256), text_positions=256,
                       audio_positions=512, conditioning=dataclasses.replace(
                           COND_PRESETS["tiny"], n_embd=256, n_head=4, num_groups=16, num_latents=16)),
    # The shipped CPU demo (~4M parameters with a corpus text table; fp32 safetensors < 20 MB).
    "demo": TTSConfig(gpt=GPTConfig(n_layer=6, n_head=4, n_embd=192), text_positions=64,
                      audio_positions=320, conditioning=dataclasses.replace(
                          COND_PRESETS["tiny"], n_embd=192, n_head=4, num_groups=16, num_latents=16)),
    # The demo's width with room for phoneme text (a 25-word sentence is about 100 phonemes) and
    # 18 s of audio: the size the open-vocabulary CPU model is tried at.
    "cpu": TTSConfig(gpt=GPTConfig(n_layer=6, n_head=4, n_embd=192), text_positions=192,
                     audio_positions=400, conditioning=dataclasses.replace(
                         COND_PRESETS["tiny"], n_embd=192, n_head=4, num_groups=16, num_latents=16)),
    "tiny": TTSConfig(gpt=GPTConfig(n_layer=2, n_head=4, n_embd=64), text_positions=64,
                      audio_positions=128, num_audio_codes=32, conditioning=COND_PRESETS["tiny"]),
}


def get_config(name: str, **overrides) -> TTSConfig:
    if name not in PRESETS:
        raise UserError(f"unknown TTS config {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def coqui_generation(cfg: TTSConfig) -> TTSConfig:
    """``cfg`` sampling as coqui's XTTS-v2 does: its mel position table has gpt_max_audio_tokens + 3
    rows and generation stops after max_gen_mel_tokens = gpt_max_audio_tokens - max_conditioning_inputs
    (1) - 2 steps (602 for XTTS-v2), handed to HF generate, which does not mask the audio start token."""
    return dataclasses.replace(cfg, max_new_audio_tokens=max(1, cfg.audio_positions - 3 - 1 - 2),
                               sample_audio_start=True)


def with_text_vocab(cfg: TTSConfig, gpt2_ids) -> TTSConfig:
    """``cfg`` with a compact text table over ``gpt2_ids`` (plus ``<|endoftext|>``, the start and
    stop token of the GPT-2 text convention)."""
    from xtts_jax.text.vocab import VocabMap

    vocab = VocabMap(tuple(sorted({int(i) for i in gpt2_ids} | {EOT_ID})))
    eot = int(vocab.to_compact([EOT_ID])[0])
    return dataclasses.replace(cfg, text_vocab_size=vocab.size, text_start_token=eot, text_stop_token=eot,
                               text_vocab=vocab.ids)


def with_phonemes(cfg: TTSConfig) -> TTSConfig:
    """``cfg`` reading ``text.phonemes`` ids: a table of phonemes, letters and punctuation (101
    rows), id 0 starting and ending each sentence."""
    from xtts_jax.text import phonemes

    return dataclasses.replace(cfg, tokenizer="phonemes", text_vocab_size=phonemes.VOCAB_SIZE, text_vocab=(),
                               text_start_token=phonemes.STOP_ID, text_stop_token=phonemes.STOP_ID)


def with_speaker_dim(cfg: TTSConfig, speaker_dim: int) -> TTSConfig:
    """``cfg`` taking ``speaker_dim``-wide conditioning vectors (its conditioner gives them too)."""
    cond = cfg.conditioning and dataclasses.replace(cfg.conditioning, out_dim=speaker_dim)
    return dataclasses.replace(cfg, speaker_dim=speaker_dim, conditioning=cond)
