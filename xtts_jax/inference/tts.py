"""Synthesis: text -> sentences -> text tokens -> audio tokens (one-jit sampler) -> waveform.

The waveform comes through the decode interface (``inference/vocoder.py``): a HiFiGAN that reads
GPT latents (XTTS-v2's decoder) gets the model's final-norm hidden states at the audio positions;
a mel HiFiGAN or Griffin-Lim gets the DVAE decoder's mel of the audio tokens. Several texts and
all their sentences are sampled together in one batch; each row stops on its own stop token.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from xtts_jax.audio.io import limit_peak
from xtts_jax.errors import UserError
from xtts_jax.inference.rerank import Reranker, check_candidates
from xtts_jax.inference.text_input import load_text_tokenizer, split_sentences, text_tokens  # noqa: F401 (the pipeline's text API)
from xtts_jax.inference.sampling import SamplingConfig, generate, unstack_layers
from xtts_jax.inference.vocoder import Vocoder
from xtts_jax.models.conditioning import condition_from_mels, reference_mels
from xtts_jax.models.dvae import DVAE, check_strength, steer_reference
from xtts_jax.models.recognizer import CodeRecognizer
from xtts_jax.models.tts import TTS, TTSConfig, load_tts, save_tts  # noqa: F401 (the pipeline's loaders)
from xtts_jax.models.tts_decoder import TTSDecoder

# XTTS-v2's inference defaults (repetition penalty over the generated audio tokens only)
SILENT = 1e-4  # a rendered sentence whose peak stays below this (-80 dBFS) is reported as silence
XTTS_SAMPLING = dict(temperature=0.75, top_k=50, top_p=0.85, repetition_penalty=10.0, penalize_prompt=False)


def _saved_sampling(path: str | Path) -> dict:
    """The checkpoint's metadata key ``sampling`` as a dict (``{}`` when it has none)."""
    import json

    from xtts_jax.weights import read_safetensors_metadata

    saved = read_safetensors_metadata(path, "TTS checkpoint").get("sampling")
    try:
        saved = json.loads(saved) if saved else {}
    except json.JSONDecodeError:
        saved = None
    if not isinstance(saved, dict):
        raise UserError(f"{path} has unreadable sampling settings in its metadata (key 'sampling')")
    return saved


def sampling_defaults(path: str | Path) -> dict:
    """The sampling settings a checkpoint recommends (metadata key ``sampling``, written by whoever
    tuned them on held-out intelligibility), else XTTS-v2's."""
    allowed = {"temperature", "top_k", "top_p", "repetition_penalty", "seen_tokens"}
    chosen = {k: v for k, v in _saved_sampling(path).items() if k in allowed}
    if "seen_tokens" in chosen:
        chosen["seen_tokens"] = tuple(int(t) for t in chosen["seen_tokens"])
    return {**XTTS_SAMPLING, **chosen}


def candidates_default(path: str | Path) -> int:
    """Candidates per sentence the checkpoint recommends (``sampling.candidates``), else 1."""
    n = _saved_sampling(path).get("candidates", 1)
    if not isinstance(n, int) or isinstance(n, bool):
        raise UserError(f"{path} recommends {n!r} candidates in its metadata; that is not a whole number")
    return n


def random_tts(cfg: TTSConfig, seed: int = 0, std: float = 0.02) -> TTS:
    """A TTS model with random weights drawn by numpy (norm gains 1, biases 0): for tests and
    benchmarks on CPU, where JAX's op-by-op random init of every parameter compiles for seconds."""
    from xtts_jax.weights import path_name

    rng = np.random.default_rng(seed)
    shapes = eqx.filter_eval_shape(lambda: TTS(cfg, key=jax.random.key(0)))

    def fill(path, s):
        if not isinstance(s, jax.ShapeDtypeStruct):
            return s
        name = path_name(path)
        if name.endswith("bias"):
            return jnp.zeros(s.shape, s.dtype)
        if s.ndim - ("blocks" in name) == 1:  # LayerNorm / GroupNorm / RMSNorm gains
            return jnp.ones(s.shape, s.dtype)
        return jnp.asarray(std * rng.standard_normal(s.shape, np.float32), s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def check_speaker(emb: np.ndarray, n_embd: int, what: str = "speaker embedding") -> np.ndarray:
    """``[K, n_embd]`` float32 from a ``(n_embd,)`` or ``(K, n_embd)`` float32 array, or a UserError."""
    if emb.dtype != np.float32:
        raise UserError(f"{what} must be float32, got {emb.dtype}")
    if emb.ndim not in (1, 2) or emb.shape[-1] != n_embd or emb.size == 0:
        raise UserError(f"{what} must have shape ({n_embd},) or (K, {n_embd}), got {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise UserError(f"{what} holds NaN or infinite values")
    return emb.reshape(-1, n_embd)


def load_speaker_embedding(path: str | Path, n_embd: int) -> np.ndarray:
    """``[K, n_embd]`` float32 from a ``.npy`` file (never unpickled), or one sentence saying what is
    wrong with the file: missing, a folder, not a .npy file, an archive, objects, damaged, its shape."""
    from numpy.lib import format as npy

    from xtts_jax.weights import check_file

    path = check_file(path, "speaker embedding")
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            raise UserError(f"{path} is an .npz archive; a speaker embedding must be one .npy array")
        f.seek(0)
        try:
            version = npy.read_magic(f)
            header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            dtype = header(f)[2]
        except ValueError:
            raise UserError(f"{path} is not a .npy file; save a float32 array with numpy.save") from None
    if dtype.hasobject:
        raise UserError(f"{path} holds Python objects; a speaker embedding must be a float32 array")
    try:
        emb = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise UserError(f"{path} is a damaged .npy file (its data is cut short)") from None
    return check_speaker(emb, n_embd, f"speaker embedding {path}")


def speaker_from_wavs(model: TTS, paths: Sequence[str]) -> np.ndarray:
    """The ``[num_latents, n_embd]`` conditioning the model computes from reference recordings."""
    from xtts_jax.audio.io import load_audio

    if model.conditioner is None:
        raise UserError("this checkpoint has no conditioning encoder; pass --speaker emb.npy instead")
    cfg = model.conditioner.config
    waves = [load_audio(p, cfg.mel_config.sample_rate) for p in paths]
    return condition_from_mels(model.conditioner, reference_mels(waves, cfg))


def decoder_speaker_dim(vocoder: Vocoder, dvae: DVAE | None) -> int:
    """Length of the speaker vector the rendering reads (0: none): a speaker-conditioned DVAE's
    reference features when codes render through the DVAE, else the vocoder's speaker embedding."""
    if dvae is not None and dvae.cfg.decoder_speaker and vocoder.features == "mel":
        return dvae.cfg.speaker_dim
    return vocoder.speaker_dim


def dvae_reference_features(dvae: DVAE, paths: Sequence[str | Path]) -> np.ndarray:
    """What a speaker-conditioned DVAE decoder reads of reference recordings ``[2 * n_mels]``: each
    recording's :func:`~xtts_jax.models.dvae.reference_features` alone (as the decoder read its
    training references), averaged over the recordings (as it keeps its training voices)."""
    from xtts_jax.audio.io import load_audio
    from xtts_jax.audio.mel import log_mel
    from xtts_jax.models.dvae import reference_features

    cfg = dvae.cfg
    if not paths:
        raise UserError("no reference recording given")
    return np.mean([reference_features([log_mel(load_audio(p, cfg.mel.sample_rate), cfg.mel, cfg.mel_stats)], cfg)
                    for p in paths], axis=0).astype(np.float32)


def decoder_speaker_from_wavs(checkpoint: str | Path, model: TTS, paths: Sequence[str],
                              dvae: DVAE | None = None) -> np.ndarray | None:
    """The decoder's speaker vector from reference recordings: a speaker-conditioned ``dvae``'s
    :func:`~xtts_jax.models.dvae.reference_features` of them, else the embedding of the speaker
    encoder beside the checkpoint (``speaker_encoder.safetensors``, XTTS-v2's ResNet); None
    without either. As XTTS-v2, each reference is read at the conditioning rate and cut to
    ``max_ref_seconds``."""
    if dvae is not None and dvae.cfg.decoder_speaker:
        return dvae_reference_features(dvae, paths)
    encoder_path = Path(checkpoint).with_name("speaker_encoder.safetensors")
    if not encoder_path.is_file():
        return None
    from xtts_jax.audio.io import load_audio
    from xtts_jax.convert.speaker_encoder import load_speaker_encoder
    from xtts_jax.models.speaker_encoder import speaker_embedding

    from xtts_jax.models.conditioning import ConditioningConfig

    cond = model.config.conditioning or ConditioningConfig()
    sr = cond.mel_config.sample_rate
    limit = int(cond.max_ref_seconds * sr)
    waves = [load_audio(p, sr)[:limit] for p in paths]
    return np.asarray(speaker_embedding(load_speaker_encoder(str(encoder_path)), waves, sr), np.float32)


def inference_layout(model: TTS) -> TTS:
    """``model`` as synthesis holds it: on the CPU backend its layers unstacked once, here, outside
    every jit (``sampling.unstack_layers``). Inside a jit XLA's CPU backend copies each layer's
    weights out of the stacked arrays, so every latents pass and every sampling call copied the whole
    transformer once (1.5 GB at XTTS-v2's size). Other backends keep the stacked layers (and scan)."""
    return unstack_layers(model) if jax.default_backend() == "cpu" else model


@eqx.filter_jit
def _latents(model: TTS, cond, text, audio):
    return model(cond, text, audio).latents


@eqx.filter_jit
def _dvae_mel(dvae: DVAE, codes, speaker=None):
    return dvae.decode(codes, speaker)


def stretch(features: np.ndarray, speed: float) -> np.ndarray:
    """Features ``[channels, frames]`` resampled in time for ``speed`` (2 is twice as fast; the
    Synthesizer keeps it in [0.05, 20]): as XTTS-v2's ``length_scale = 1 / speed``, linear
    interpolation as torch's."""
    if speed == 1.0:
        return features
    from xtts_jax.models.hifigan import interpolate_linear

    return np.asarray(interpolate_linear(np.asarray(features, np.float32), 1.0 / speed))


def dvae_codes(codes: Sequence[int], cfg: TTSConfig) -> list[int]:
    """``codes`` without the audio start tokens a coqui-style sampler may draw (no DVAE code)."""
    return [t for t in codes if t < cfg.num_audio_codes]


def render_dvae_codes(dvae: DVAE, vocoder: Vocoder, codes: Sequence[int], speaker: np.ndarray | None = None,
                      speed: float = 1.0, reference_strength: float | None = None) -> np.ndarray:
    """Waveform of DVAE codes: the DVAE decoder's log-mel (stretched for ``speed``) through a mel ``vocoder``.
    ``speaker`` goes to the decoder that reads one: a speaker-conditioned DVAE (its
    :func:`~xtts_jax.models.dvae.reference_features`, steered by ``reference_strength``, None: the
    DVAE's own, see :func:`~xtts_jax.models.dvae.steer_reference`; None: unconditioned), else the vocoder."""
    n = len(codes)
    if n == 0:
        return np.zeros(0, np.float32)
    padded = np.zeros(-(-n // 16) * 16, np.int32)  # a few lengths, a few compiles
    padded[:n] = codes
    dvae_speaker = None
    if dvae.cfg.decoder_speaker:
        if vocoder.speaker_dim:
            raise UserError("a speaker-conditioned DVAE renders through a vocoder that takes no speaker embedding")
        if speaker is not None:
            features = check_speaker(np.asarray(speaker, np.float32).reshape(-1), dvae.cfg.speaker_dim,
                                     "the DVAE decoder's speaker features")[0]
            dvae_speaker = jnp.asarray(steer_reference(features, dvae, reference_strength))
        speaker = None
    mel = np.asarray(_dvae_mel(dvae, jnp.asarray(padded), dvae_speaker))[:, : n * dvae.cfg.downsample]
    if dvae.cfg.mel_stats is not None:  # the decoders take the plain log-mel
        mean, std = dvae.cfg.mel_stats.arrays()
        mel = mel * std + mean
    return vocoder.decode(stretch(mel, speed), speaker)  # Griffin-Lim's initial phase is seeded: same tokens, same audio


@dataclasses.dataclass
class Synthesizer:
    model: TTS  # held in the inference layout (``inference_layout``): save the model you loaded, not this one
    vocoder: Vocoder
    dvae: DVAE | None = None
    gap_seconds: float = 0.15  # silence between joined sentences
    tokenizer: object = None  # an XttsTokenizer for models with cfg.tokenizer == "xtts"
    language: str = "en"  # the language tag XTTS-v2 tokenizers put before the text
    speed: float = 1.0  # > 1 speaks faster: the decoder's input is resampled in time (XTTS-v2's speed)
    recognizer: CodeRecognizer | None = None  # reads codes back to text tokens (models/recognizer.py)
    candidates: int = 1  # code sequences sampled per sentence; the recogniser keeps the best (inference/rerank.py)
    # how far the DVAE decoder's reference features are pushed from its training voices (models/dvae.py:
    # steer_reference); None: the DVAE's own reference_strength
    reference_strength: float | None = None

    def __post_init__(self):
        self.model = inference_layout(self.model)
        check_candidates(self.candidates, self.recognizer)
        self._reranker = Reranker(self.recognizer, self.model.config) if self.recognizer is not None else None
        if not 0.05 <= self.speed <= 20.0:
            raise UserError(f"speed {self.speed} must lie in [0.05, 20]")
        if self.vocoder.features == "mel" and self.dvae is None:
            raise UserError("rendering through a mel decoder needs the DVAE (--dvae)")
        if self.vocoder.features == "gpt_latents" and self.model.config.text_pointer:
            # its latents depend on the pointer the sampler walked, which the latents pass does not replay
            raise UserError("a text-pointer model renders from its audio codes (DVAE), not from GPT latents")
        if self.dvae is not None and self.dvae.cfg.num_tokens != self.model.config.num_audio_codes:
            raise UserError(f"the DVAE has {self.dvae.cfg.num_tokens} codes, the TTS model {self.model.config.num_audio_codes}")
        if self.reference_strength is not None:
            if self.dvae is None:
                raise UserError("a reference strength steers a DVAE decoder that reads references; this model renders without a DVAE")
            check_strength(self.reference_strength, self.dvae.cfg)

    @property
    def sample_rate(self) -> int:
        return self.vocoder.sample_rate

    def text_row(self, sentence: str) -> list[int]:
        return text_tokens(sentence, self.model.config, self.tokenizer, self.language)

    def sentences(self, text: str) -> list[str]:
        """The pieces of ``text`` sampled one per row: sentences, wrapped to the XTTS tokenizer's
        character limit for the language when the model has one."""
        limit = self.tokenizer.char_limit(self.language) if self.tokenizer is not None else None
        return split_sentences(text, limit)

    def max_new_tokens(self, requested: int | None = None) -> int:
        """Sampling steps per sentence: the model's limit (``TTSConfig.generation_limit``: coqui's
        602 for XTTS-v2 conversions), or ``requested`` when smaller."""
        limit = self.model.config.generation_limit
        return limit if requested is None else min(requested, limit)

    def codes(self, rows: Sequence[list[int]], conds: Sequence[np.ndarray], key, sampling: SamplingConfig) -> list[list[int]]:
        """Audio codes for text-token rows, row i conditioned on ``conds[i]`` ``[K_i, C]``; one batch.
        The stop token is left out; the start token appears only where the config lets the sampler
        draw it (``sample_audio_start``, as coqui's XTTS-v2), and then stays for the latents pass.
        With ``candidates`` n > 1 each row is sampled n times in the same batch and the recogniser
        keeps the candidate it reads best."""
        n = self.candidates
        if n == 1:
            return self._sample(rows, conds, key, sampling)
        drawn = self._sample([r for r in rows for _ in range(n)], [c for c in conds for _ in range(n)], key, sampling)
        per_row = [drawn[i * n:(i + 1) * n] for i in range(len(rows))]
        return [cs[k] for cs, k in zip(per_row, self._reranker.choose(per_row, rows))]

    def _sample(self, rows: Sequence[list[int]], conds: Sequence[np.ndarray], key, sampling: SamplingConfig) -> list[list[int]]:
        cfg = self.model.config
        table = np.concatenate(conds)
        dec = TTSDecoder(self.model, jnp.asarray(table))
        offsets = np.cumsum([0] + [len(c) for c in conds])
        prompts = [dec.prompt(range(offsets[i], offsets[i + 1]), r) for i, r in enumerate(rows)]
        sampling = dataclasses.replace(sampling, stop_token=cfg.audio_stop_token,
                                       max_new_tokens=self.max_new_tokens(sampling.max_new_tokens))
        max_positions = len(table) + cfg.text_positions + cfg.audio_positions
        return generate(dec, prompts, key, sampling, max_positions=max_positions, vocab_size=dec.prompt_vocab_size)

    def render(self, codes: list[int], cond: np.ndarray, text: list[int], speaker: np.ndarray | None = None) -> np.ndarray:
        """Waveform of one sentence's audio codes, scaled down as a whole if it would exceed
        ``PEAK`` (a per-sentence peak limit: never clipped, and a loud sentence does not make the
        others quieter)."""
        return limit_peak(self.decode(codes, cond, text, speaker))

    def decode(self, codes: list[int], cond: np.ndarray, text: list[int], speaker: np.ndarray | None) -> np.ndarray:
        """Waveform of audio codes as the decode interface gives it (no peak limit; streaming limits its own)."""
        if not codes:
            return np.zeros(0, np.float32)
        if self.vocoder.features == "gpt_latents":
            audio = jnp.asarray([self.model.config.audio_start_token, *codes], jnp.int32)
            lat = np.asarray(_latents(self.model, jnp.asarray(cond), jnp.asarray(text, jnp.int32), audio))
            wave = self.vocoder.decode(stretch(lat.T, self.speed).T, speaker)
        else:
            wave = render_dvae_codes(self.dvae, self.vocoder, dvae_codes(codes, self.model.config), speaker, self.speed,
                                     self.reference_strength)
        if not np.all(np.isfinite(wave)):
            raise UserError(f"the {self.vocoder.backend} decoder returned {int(np.sum(~np.isfinite(wave)))} "
                            "NaN or infinite samples")
        return wave

    def synthesize(self, texts: Sequence[str], conds: Sequence[np.ndarray], key, sampling: SamplingConfig,
                   batch_size: int = 8, speaker=None, progress=None) -> list[np.ndarray]:
        """One waveform per text: its sentences sampled in batches of ``batch_size`` rows, rendered,
        joined; ``speaker`` is the decoder's speaker vector (one, or a list of one per text).
        ``progress(message)`` is called after each batch is sampled and after every
        ``batch_size`` sentences rendered; warnings (a sentence cut at the token limit, one with no
        audio, a silent one, one the decoder failed on and left out) go to it too, or to
        :func:`warnings.warn` without it, so no sentence is lost unsaid."""
        sentences = [(i, s) for i, t in enumerate(texts) for s in self.sentences(t)]
        empty = [i for i, t in enumerate(texts) if not split_sentences(t)]
        if empty:
            raise UserError(f"text {empty[0] + 1} is empty")
        rows = [self.text_row(s) for _, s in sentences]
        row_conds = [conds[i] for i, _ in sentences]
        per_text = isinstance(speaker, (list, tuple))
        if per_text and len(speaker) != len(texts):
            raise UserError(f"{len(speaker)} decoder speakers for {len(texts)} texts")
        row_speakers = [speaker[i] if per_text else speaker for i, _ in sentences]
        codes = []
        for b in range(0, len(rows), batch_size):
            key, sub = jax.random.split(key)
            codes += self.codes(rows[b:b + batch_size], row_conds[b:b + batch_size], sub, sampling)
            if progress:
                progress(f"sampled {len(codes)}/{len(rows)} sentences, {sum(map(len, codes))} audio tokens")
        limit = self.max_new_tokens(sampling.max_new_tokens)
        cut = [n + 1 for n, c in enumerate(codes) if len(c) >= limit]
        if cut:
            _warn(progress, f"sentence(s) {', '.join(map(str, cut))} reached {limit} audio tokens without a stop "
                  "token and may be cut off")
        gap = np.zeros(int(self.gap_seconds * self.sample_rate), np.float32)
        waves: list[list[np.ndarray]] = [[] for _ in texts]
        rendered = 0
        for n, ((i, sentence), c, r, cond, spk) in enumerate(zip(sentences, codes, rows, row_conds, row_speakers), 1):
            wave = self._render_or_warn(n, len(sentences), sentence, c, cond, r, spk, progress)
            waves[i] += [gap, wave] if waves[i] else [wave]
            rendered += len(wave)
            if progress and (n % batch_size == 0 or n == len(sentences)):
                progress(f"rendered {n}/{len(sentences)} sentences, {rendered / self.sample_rate:.1f} s of audio")
        return [np.concatenate(w) for w in waves]

    def _render_or_warn(self, n: int, total: int, sentence: str, codes: list[int], cond, row, speaker,
                        progress) -> np.ndarray:
        """Sentence ``n``'s waveform; empty (with a warning naming it) when it has no audio tokens or
        the decoder fails on it, so one bad sentence neither stops a long text nor vanishes unsaid."""
        what = f"sentence {n}/{total} ({sentence[:40]!r})"
        if not codes:
            _warn(progress, f"{what} got no audio tokens (the model stopped at once) and is left out")
            return np.zeros(0, np.float32)
        try:
            wave = self.render(codes, cond, row, speaker)
        except UserError as e:
            _warn(progress, f"{what} failed to render and is left out: {e}")
            return np.zeros(0, np.float32)
        peak = float(np.abs(wave).max()) if wave.size else 0.0
        if peak < SILENT:
            _warn(progress, f"{what} rendered as silence (peak {peak:.1e})")
        return wave

    def stream(self, text: str, cond: np.ndarray, key, sampling: SamplingConfig, chunk_tokens: int = 16,
               speaker: np.ndarray | None = None, context_tokens: int = 8) -> Iterator[np.ndarray]:
        """Audio pieces of one text as it is generated (``inference/streaming.py``'s :func:`stream_audio`).
        One candidate per sentence: audio that is already playing cannot wait for the others."""
        from xtts_jax.inference.streaming import stream_audio  # streaming builds on this module

        return stream_audio(self, text, cond, key, sampling, chunk_tokens, speaker, context_tokens)


def _warn(progress, message: str) -> None:
    """A warning through the progress callback, or Python's warnings without one."""
    if progress:
        progress(f"warning: {message}")
    else:
        warnings.warn(message, stacklevel=3)
