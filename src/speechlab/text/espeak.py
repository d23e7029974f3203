"""Offline speech synthesis with the libespeak-ng shipped in the ``espeakng_loader`` wheel.

A thin ctypes wrapper over espeak-ng's synchronous retrieval mode: text in, mono float32 samples
out at the library's native rate (22050 Hz). A voice is ``"<language>[+<variant>]"``, e.g.
``"en-us"``, ``"en-gb-scotland+m3"`` or ``"en-029+f2"``: the language files live under
``espeak-ng-data/lang`` and the variants (speaker timbres) under ``espeak-ng-data/voices/!v``.

espeak-ng keeps its state in process-global C statics. :meth:`Espeak.shared` is the one lazily
initialised engine of the process. Its output is not reproducible: the pitch "flutter" and other
wave-generator state carry over from one call to the next, even across ``espeak_Terminate`` and
``espeak_Initialize``. ``Espeak(isolated=True)`` loads a private copy of the library, with its own
fresh statics, so the same sequence of calls always gives the same samples.
"""

from __future__ import annotations

import _ctypes  # dlclose: ctypes has no public way to unload a library
import ctypes
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# Constants of espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when data is missing
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_EE_OK, _EE_NOT_FOUND = 0, 2
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes: UTF-8 IPA instead of espeak's ASCII names

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_LIMITS = {"rate": (80, 450), "pitch": (0, 100), "pitch_range": (0, 100), "volume": (0, 200)}


class EspeakError(RuntimeError):
    """libespeak-ng cannot be loaded or initialised, or it rejected a voice or a text."""


def _loader_paths() -> tuple[Path, Path]:
    try:
        import espeakng_loader
    except ImportError as error:
        raise EspeakError(
            "the espeakng_loader package, which ships libespeak-ng and its data, is not "
            "installed; install it with `pip install 'espeakng-loader>=0.2.4'`"
        ) from error
    return Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())


@dataclass(frozen=True)
class Voice:
    """An espeak-ng language voice plus an optional variant, e.g. ``Voice("en-us", "f3")``."""

    language: str = "en-us"
    variant: str | None = None

    @classmethod
    def parse(cls, name: str) -> Voice:
        """``"en-us+f3"`` -> ``Voice("en-us", "f3")``; ``"en-us"`` -> ``Voice("en-us")``."""
        language, _, variant = name.partition("+")
        return cls(language, variant or None)

    @property
    def name(self) -> str:
        return self.language if self.variant is None else f"{self.language}+{self.variant}"


def _private_copy(library: Path) -> tuple[str, Callable[[], None]]:
    """Copy ``library`` where ``dlopen`` maps it as a new object; return its path and a cleanup.

    An in-memory file where the platform has one (no disk, no noexec ``/tmp`` trouble), else a
    temporary directory.
    """
    data = library.read_bytes()
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fd = os.memfd_create("libespeak-ng", 0)
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
        return f"/proc/self/fd/{fd}", lambda: os.close(fd)
    directory = tempfile.mkdtemp(prefix="speechlab-espeak-")
    copy = Path(directory) / library.name
    copy.write_bytes(data)
    return str(copy), lambda: shutil.rmtree(directory, ignore_errors=True)


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):  # no dlopen(NULL) on this platform
        return None


def _declare(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p


class Espeak:
    """One initialised libespeak-ng: ``synthesize(text, voice, ...) -> (T,)`` float32 samples.

    ``isolated=False`` uses the process-wide library (prefer :meth:`shared`); ``isolated=True``
    loads a private copy whose state starts fresh, for reproducible output. Calls on one engine
    are serialised with a lock. ``library_path``/``data_path`` default to the espeakng_loader wheel.
    """

    _shared: Espeak | None = None
    _shared_lock = threading.Lock()
    _global_lock = threading.Lock()

    def __init__(
        self,
        isolated: bool = False,
        library_path: str | Path | None = None,
        data_path: str | Path | None = None,
    ) -> None:
        if library_path is None or data_path is None:
            default_library, default_data = _loader_paths()
            library_path = library_path or default_library
            data_path = data_path or default_data
        self.library_path = Path(library_path)
        self.data_path = Path(data_path)
        # Engines over the process-wide library share its state, hence one lock.
        self._lock = threading.Lock() if isolated else Espeak._global_lock
        self._chunks: list[bytes] = []
        self._cleanup: Callable[[], None] | None = None
        self._lib: ctypes.CDLL | None = None

        load_path = str(self.library_path)
        if isolated:
            load_path, self._cleanup = _private_copy(self.library_path)
        try:
            lib = ctypes.CDLL(load_path)
            _declare(lib)
        except (OSError, AttributeError) as error:
            self._release()
            raise EspeakError(
                f"cannot load libespeak-ng from {self.library_path}: {error}. Reinstall the "
                "espeakng-loader wheel for this platform or pass library_path= a working "
                "libespeak-ng (1.52 or newer)."
            ) from error
        sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), _INITIALIZE_DONT_EXIT
        )
        if sample_rate <= 0:
            self._release()
            raise EspeakError(
                f"espeak_Initialize failed (returned {sample_rate}) with data path "
                f"{self.data_path}: expected an espeak-ng-data directory holding phontab, "
                "phondata and lang/. Reinstall espeakng-loader or pass data_path=."
            )
        # ctypes does not keep the C callback alive: hold it for the engine's lifetime.
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self.sample_rate = int(sample_rate)
        self.version = lib.espeak_Info(None).decode()

    @classmethod
    def shared(cls) -> Espeak:
        """The process-wide engine over the wheel's library, initialised on first use."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def _collect(self, wav: object, count: int, _events: object) -> int:
        if wav and count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        return 0  # 0 = keep synthesising

    def variants(self) -> list[str]:
        """Names of the voice variants in the data directory (``m1``, ``f3``, ``klatt``, ...)."""
        return sorted(p.name for p in (self.data_path / "voices" / "!v").iterdir() if p.is_file())

    def languages(self) -> list[str]:
        """Names of the language voices in the data directory, lower-cased (``en-us``, ...)."""
        return sorted(p.name.lower() for p in (self.data_path / "lang").rglob("*") if p.is_file())

    def _set_voice(self, voice: Voice) -> None:
        if (
            voice.variant is not None
            and not (self.data_path / "voices" / "!v" / voice.variant).is_file()
        ):
            # espeak-ng silently ignores an unknown variant and speaks the plain language voice.
            raise EspeakError(
                f"unknown espeak-ng voice variant {voice.variant!r} in {voice.name!r}: expected a "
                f"file under {self.data_path / 'voices' / '!v'}, e.g. m3, f2 or klatt "
                "(see Espeak.variants())"
            )
        status = self._lib.espeak_SetVoiceByName(voice.name.encode())
        if status != _EE_OK:
            reason = "not found" if status == _EE_NOT_FOUND else f"error {status}"
            raise EspeakError(
                f"espeak-ng voice {voice.name!r}: language {voice.language!r} {reason}; expected "
                f"a language file under {self.data_path / 'lang'}, e.g. en-us, en-gb-scotland "
                "(see Espeak.languages())"
            )

    def synthesize(
        self,
        text: str,
        voice: str | Voice = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        seed: int = 0,
    ) -> np.ndarray:
        """Speak ``text``; return ``(T,)`` float32 samples in [-1, 1] at :attr:`sample_rate`.

        ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range`` are espeak's
        0-100 scales (50 = the voice's own), ``volume`` 0-200 (100 = normal). ``seed`` fixes the
        breath noise some variants add.
        """
        if self._lib is None:
            raise EspeakError("this Espeak engine was closed; create a new one")
        if not text.strip():
            raise ValueError("espeak synthesize: expected a non-empty text")
        settings = {
            "rate": (_RATE, rate),
            "pitch": (_PITCH, pitch),
            "pitch_range": (_RANGE, pitch_range),
            "volume": (_VOLUME, volume),
        }
        for name, (_, value) in settings.items():
            low, high = _LIMITS[name]
            if not low <= value <= high:
                raise ValueError(f"espeak synthesize: {name}={value} is outside {low}..{high}")
        voice = Voice.parse(voice) if isinstance(voice, str) else voice
        encoded = text.encode("utf-8") + b"\0"
        with self._lock:
            self._set_voice(voice)
            for parameter, value in settings.values():
                self._lib.espeak_SetParameter(parameter, int(value), 0)
            # Breath noise draws on espeak's own generator and, in a few variants, libc rand().
            self._lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
            if _libc() is not None:
                _libc().srand(ctypes.c_uint(int(seed) & 0xFFFFFFFF))
            self._chunks = []
            # Another engine over the same (non-isolated) library may have taken the callback.
            self._lib.espeak_SetSynthCallback(self._callback)
            status = self._lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            if status == _EE_OK:
                status = self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if status != _EE_OK:
            raise EspeakError(
                f"espeak_Synth failed with status {status} for text {text!r} in voice {voice.name!r}"
            )
        samples = np.frombuffer(b"".join(chunks), dtype=np.int16)
        return samples.astype(np.float32) / 32768.0

    def phonemize(self, text: str, voice: str | Voice = "en-us") -> str:
        """IPA phonemes of ``text`` in ``voice``'s language, words separated by single spaces
        (clauses too: punctuation is dropped), e.g. ``"the cat"`` -> ``"ðə kˈæt"``."""
        if self._lib is None:
            raise EspeakError("this Espeak engine was closed; create a new one")
        voice = Voice.parse(voice) if isinstance(voice, str) else voice
        buffer = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        clauses = []
        with self._lock:
            self._set_voice(voice)
            # One clause per call; espeak advances the pointer and sets it to NULL at the end.
            while pointer.value:
                phonemes = self._lib.espeak_TextToPhonemes(
                    ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_IPA
                )
                if phonemes:
                    clauses.append(phonemes.decode("utf-8", errors="replace"))
        return " ".join(" ".join(clauses).split())

    def _release(self) -> None:
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    def close(self) -> None:
        """Free an isolated engine's library copy; the shared engine stays open for the process."""
        if self._lib is None or self._cleanup is None:
            return
        with self._lock:
            self._lib.espeak_Terminate()
            _ctypes.dlclose(self._lib._handle)
            self._lib = None
            self._release()

    def __enter__(self) -> Espeak:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def synthesize(
    text: str,
    voice: str | Voice = "en-us",
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    volume: int = 100,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Speak ``text`` with the shared engine: ``((T,) float32 samples, sample_rate)``."""
    engine = Espeak.shared()
    samples = engine.synthesize(text, voice, rate, pitch, pitch_range, volume, seed)
    return samples, engine.sample_rate
