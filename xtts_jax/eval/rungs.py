"""What is evaluated: utterances chosen from a manifest, and the waveforms of each rung.

A rung is one way of producing each utterance's audio, read against the others:

* ``recording``: the manifest's own recording (the ceiling of everything below);
* ``mel``: the recording's true log-mel through the vocoder (the ceiling of any model whose output
  is a mel rendered by that vocoder);
* ``dvae``: the recording through the DVAE and back, then the vocoder (the ceiling of any generator
  on those audio tokens);
* ``model``: the TTS model speaking the text, conditioned on a *different* clip of the speaker;
* ``wavs``: wavs generated elsewhere, one per utterance in a folder, named after the recording.

Bad rows never stop a run: a missing or unreadable wav or an empty text is skipped and counted
with its reason.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from xtts_jax.audio.datasets import read_manifest
from xtts_jax.audio.io import load_audio
from xtts_jax.errors import UserError

RUNGS = ("recording", "mel", "dvae", "model", "wavs")
SAMPLE_RATE = 22050  # recordings are read at the rate of our mel front end


@dataclasses.dataclass(frozen=True)
class Item:
    """One utterance: its text and voice, its recording, and the other clip of the voice that
    conditions the model and is the reference for speaker similarity."""

    text: str
    speaker: str
    audio_path: Path
    reference_path: Path


def _problem(audio: Path, text: str) -> str | None:
    if not text.strip():
        return "empty text"
    if not audio.is_file():
        return "missing audio file"
    try:
        info = sf.info(str(audio))
    except Exception:  # soundfile raises its own error types for every kind of bad file
        return "unreadable audio file"
    if info.frames == 0:
        return "empty audio file"
    return None


def select(manifest: str | Path, per_speaker: int, speakers: list[str] | None = None
           ) -> tuple[list[Item], list[dict]]:
    """The first ``per_speaker`` usable utterances of each speaker (sorted by speaker), and the
    skipped rows ``[{"audio_path", "speaker", "reason"}]``. Each item's reference is the next
    usable clip of its speaker in manifest order (the item's own clip when it has no other)."""
    path = Path(manifest)
    if not path.is_file():
        raise UserError(f"manifest {path} does not exist")
    report: collections.Counter = collections.Counter()
    rows = read_manifest(path, report)
    skipped = [{"audio_path": "", "speaker": "", "reason": "unparsable manifest row"}] * report["bad_row"]
    usable: dict[str, list] = collections.defaultdict(list)
    for u in rows:
        if speakers is not None and u.speaker not in speakers:
            continue
        reason = _problem(Path(u.audio_path), u.text)
        if reason:
            skipped.append({"audio_path": str(u.audio_path), "speaker": u.speaker, "reason": reason})
        else:
            usable[u.speaker].append(u)
    if speakers and (missing := sorted(set(speakers) - set(usable))):
        raise UserError(f"speaker(s) {', '.join(missing)} have no usable utterance in {path}")
    items = []
    for speaker in sorted(usable):
        pool = usable[speaker]
        for i, u in enumerate(pool[:per_speaker]):
            ref = pool[(i + 1) % len(pool)]
            items.append(Item(u.text, speaker, Path(u.audio_path), Path(ref.audio_path)))
    if not items:
        raise UserError(f"no usable utterance in {path} ({len(skipped)} skipped)")
    return items, skipped


@dataclasses.dataclass
class Rendered:
    """A rung's audio: one waveform per item (None where it could not be made, with the reason)."""

    waves: list[np.ndarray | None]
    sample_rate: int
    failures: dict[int, str] = dataclasses.field(default_factory=dict)
    timing: dict = dataclasses.field(default_factory=dict)


def recordings(items: list[Item]) -> Rendered:
    return Rendered([load_audio(it.audio_path, SAMPLE_RATE) for it in items], SAMPLE_RATE)


def true_mel(items: list[Item], vocoder, mel_cfg) -> Rendered:
    """Each recording's log-mel (``mel_cfg``, the vocoder's front end) through ``vocoder``."""
    from xtts_jax.audio.mel import log_mel

    waves = [vocoder.decode(log_mel(load_audio(it.audio_path, mel_cfg.sample_rate), mel_cfg)) for it in items]
    return Rendered(waves, vocoder.sample_rate)


def dvae_round_trip(items: list[Item], dvae, vocoder, reference_strength: float | None = None) -> Rendered:
    """Each recording encoded to DVAE codes, decoded to a mel and rendered by ``vocoder`` (a
    speaker-conditioned decoder reads the item's reference clip, as the model rung's does, steered
    by ``reference_strength``: None, the DVAE's own)."""
    import equinox as eqx
    import jax.numpy as jnp

    from xtts_jax.inference.tts import dvae_reference_features, render_dvae_codes
    from xtts_jax.models.dvae import dvae_mel

    encode = eqx.filter_jit(lambda d, m: d.encode(m))
    waves = []
    for it in items:
        wave = load_audio(it.audio_path, dvae.cfg.mel.sample_rate)
        codes = np.asarray(encode(dvae, jnp.asarray(dvae_mel(wave, dvae.cfg, bucket_tokens=16))))
        speaker = dvae_reference_features(dvae, [it.reference_path]) if dvae.cfg.decoder_speaker else None
        waves.append(render_dvae_codes(dvae, vocoder, codes[: dvae.cfg.n_tokens(len(wave))].tolist(), speaker,
                                       reference_strength=reference_strength))
    return Rendered(waves, vocoder.sample_rate)


def folder(items: list[Item], wav_dir: str | Path) -> Rendered:
    """Generated wavs named after each item's recording (``DIR/<recording stem>.wav``)."""
    wav_dir = Path(wav_dir)
    if not wav_dir.is_dir():
        raise UserError(f"--wavs {wav_dir} is not a folder")
    waves, failures = [], {}
    for i, it in enumerate(items):
        path = wav_dir / f"{it.audio_path.stem}.wav"
        reason = _problem(path, it.text)
        waves.append(None if reason else load_audio(path, SAMPLE_RATE))
        if reason:
            failures[i] = f"{reason}: {path}"
    return Rendered(waves, SAMPLE_RATE, failures)


def model_speech(items: list[Item], synth, sampling, key, conditioning: str = "clip",
                 voices_dir: Path | None = None, timed: int = 3) -> Rendered:
    """The model speaking each item's text, one batch per speaker, conditioned on the item's
    reference clip (``conditioning="clip"``) or the shipped voice of its speaker (``"voice"``:
    ``voices_dir/SPEAKER.npy``). Timing: real-time factor of the batches (the first batch, which
    compiles, apart), and for the first ``timed`` items alone, warm, the time to the whole
    sentence and to the first streamed audio."""
    import jax

    from xtts_jax.inference.tts import dvae_reference_features, load_speaker_embedding, speaker_from_wavs

    model = synth.model
    reads = synth.dvae is not None and synth.dvae.cfg.decoder_speaker  # a speaker-conditioned DVAE decoder
    if conditioning == "voice":
        missing = sorted({it.speaker for it in items if not (voices_dir / f"{it.speaker}.npy").is_file()})
        if missing:
            raise UserError(f"no shipped voice for speaker(s) {', '.join(missing)} in {voices_dir}")
        cond = {s: load_speaker_embedding(voices_dir / f"{s}.npy", model.config.speaker_width)
                for s in {it.speaker for it in items}}
        conds = [cond[it.speaker] for it in items]
        dec = {s: load_speaker_embedding(voices_dir / f"{s}.decoder.npy", synth.dvae.cfg.speaker_dim)[0]
               if reads and (voices_dir / f"{s}.decoder.npy").is_file() else None for s in cond}
        decoder_speakers = [dec[it.speaker] for it in items]
    else:
        conds = [speaker_from_wavs(model, [str(it.reference_path)]) for it in items]
        decoder_speakers = [dvae_reference_features(synth.dvae, [it.reference_path]) if reads else None
                            for it in items]
    waves: list[np.ndarray | None] = [None] * len(items)
    failures, batches = {}, []
    for i, it in enumerate(items):  # a text the model cannot read fails alone, with the model's own words
        try:
            [synth.text_row(s) for s in synth.sentences(it.text)]
        except UserError as e:
            failures[i] = str(e)
    for speaker in dict.fromkeys(it.speaker for it in items):
        idx = [i for i, it in enumerate(items) if it.speaker == speaker and i not in failures]
        if not idx:
            continue
        key, sub = jax.random.split(key)
        t0 = time.perf_counter()
        out = synth.synthesize([items[i].text for i in idx], [conds[i] for i in idx], sub, sampling,
                               batch_size=len(idx), speaker=[decoder_speakers[i] for i in idx])
        seconds = sum(len(w) for w in out) / synth.sample_rate
        batches.append((time.perf_counter() - t0, seconds))
        for i, w in zip(idx, out):
            waves[i] = w
    timing = {}
    warm = batches[1:] or batches
    if warm:
        timing["batch_rtf"] = sum(b[0] for b in warm) / max(sum(b[1] for b in warm), 1e-9)
        timing["first_batch_seconds"] = batches[0][0]
    ok = [i for i in range(len(items)) if waves[i] is not None][:timed]
    if ok:
        timing.update(_single_sentence_timing(synth, [items[i].text for i in ok], [conds[i] for i in ok],
                                              sampling, key, [decoder_speakers[i] for i in ok]))
    return Rendered(waves, synth.sample_rate, failures, timing)


def _single_sentence_timing(synth, texts, conds, sampling, key, speakers) -> dict:
    """Warm batch-1 latency, as a user of ``tools/synthesize.py`` meets it: whole sentence, and
    the first audio of :meth:`Synthesizer.stream`."""
    import jax

    def first_audio(text, cond, speaker):
        t0 = time.perf_counter()
        for piece in synth.stream(text, cond, jax.random.key(0), sampling, speaker=speaker):
            if len(piece):
                return time.perf_counter() - t0
        return float("nan")

    synth.synthesize(texts[:1], conds[:1], key, sampling, batch_size=1, speaker=speakers[0])  # compile batch 1
    first_audio(texts[0], conds[0], speakers[0])
    rtf, ttfa = [], []
    for text, cond, speaker in zip(texts, conds, speakers):
        t0 = time.perf_counter()
        (wave,) = synth.synthesize([text], [cond], key, sampling, batch_size=1, speaker=speaker)
        rtf.append((time.perf_counter() - t0) / max(len(wave) / synth.sample_rate, 1e-9))
        ttfa.append(first_audio(text, cond, speaker))
    return {"single_rtf": float(np.median(rtf)), "time_to_first_audio": float(np.median(ttfa)),
            "timed_sentences": len(texts)}
