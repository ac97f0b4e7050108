"""One decoder for audio: files on disk and untrusted uploads alike.

    samples = audio.read_file(path, 16000)                       # mono float32
    decoded = audio.decode_bytes(data, [8000, 16000], max_seconds=600)   # {rate: samples}

The container is identified by the bytes' own signature against CONTAINERS;
anything else is refused before a decoder sees it. WAV, AIFF, FLAC, Ogg and
MP3 are read by libsndfile; the others by ffmpeg, which is told the
container's demuxer (-f: never a playlist, concat list or image sequence,
nothing that names other files), allowed no protocol but `file` for the one
file it reads (an upload goes to a private temporary file), and asked for
the samples at the file's own rate. Either way the samples arrive in blocks
that are checked (finite, in range), mixed to mono and resampled to every
rate asked for as they come (soxr's stream resampler gives the same samples
as resampling the whole signal at once), so what a decoding holds is the
mono output at the rates asked for plus one block, whatever the file's rate
and channel count. The header's rate and channel count are checked before
any sample is decoded (at most MAX_SAMPLE_RATE, MAX_CHANNELS and
MAX_SAMPLES_PER_SECOND), and its duration against `max_seconds`, which the
decoded length is held to as well (a header can lie).
"""

import contextlib
import io
import json
import os
import subprocess
import tempfile
import threading

import numpy as np

import helper

# name: (what the caller is told, ffmpeg's demuxer, libsndfile reads it)
CONTAINERS = {
    'wav': ('WAV/RF64', 'wav', True),
    'aiff': ('AIFF', 'aiff', True),
    'flac': ('FLAC', 'flac', True),
    'ogg': ('Ogg Vorbis/Opus', 'ogg', True),
    'mp3': ('MP3', 'mp3', True),
    'mp4': ('MP4/M4A', 'mov', False),
    'webm': ('WebM/Matroska', 'matroska', False),
    'aac': ('AAC (ADTS)', 'aac', False),
    'amr': ('AMR', 'amr', False),
}
ACCEPTED = ', '.join(label for label, _, _ in CONTAINERS.values())
# Past these a header describes no recording a voicebot sends, only work.
MAX_SAMPLE_RATE = 192000
MAX_CHANNELS = 8
MAX_SAMPLES_PER_SECOND = 192000          # rate x channels: 48 kHz x 4, 96 kHz x 2, 192 kHz x 1
# Float audio is in [-1, 1]; far outside it, the file is not audio but numbers.
MAX_MAGNITUDE = 8.0
BLOCK_FRAMES = 1 << 15
FFMPEG_TIMEOUT_SECONDS = 120
# Enough of a file to find its signature and a WAV's chunks before the data.
HEAD_BYTES = 1 << 16


class TooLong(helper.InputError):
    """Audio over the length a caller accepts."""


# --------------------------------------------------------------------------
# What the bytes are
# --------------------------------------------------------------------------
def identify(head):
    """The CONTAINERS name of audio whose first bytes are `head`, or None."""
    if head[:4] in (b'RIFF', b'RF64', b'BW64') and head[8:12] == b'WAVE':
        return 'wav'
    if head[:4] == b'FORM' and head[8:12] in (b'AIFF', b'AIFC'):
        return 'aiff'
    if head[:4] == b'fLaC':
        return 'flac'
    if head[:4] == b'OggS':
        return 'ogg'
    if head[4:8] == b'ftyp':
        return 'mp4'
    if head[:4] == b'\x1a\x45\xdf\xa3':
        return 'webm'
    if head[:5] == b'#!AMR':
        return 'amr'
    if head[:3] == b'ID3':
        return 'mp3'
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        layer = (head[1] >> 1) & 3
        if layer:
            return 'mp3'
        if head[1] & 0xF0 == 0xF0:
            return 'aac'
    return None


def check_wav_complete(head, size, name):
    """A WAV cut short still decodes (libsndfile reads what is there), so a
    truncated copy is caught from its header: the RIFF size or the data
    chunk's size announces more bytes than the `size` there are. Streamed
    WAVs that announce no length (0 or 0xFFFFFFFF) pass; RF64 keeps its sizes
    elsewhere and is left to the decoder."""
    if head[:4] != b'RIFF':
        return
    announced = int.from_bytes(head[4:8], 'little')
    if announced not in (0, 0xFFFFFFFF) and announced + 8 > size:
        raise helper.InputError(name, None, 'truncated WAV: its header announces %d bytes, '
                                'there are %d' % (announced + 8, size))
    offset = 12
    while offset + 8 <= len(head):
        chunk, length = head[offset:offset + 4], int.from_bytes(head[offset + 4:offset + 8],
                                                                 'little')
        if chunk == b'data':
            held = size - offset - 8
            if length not in (0, 0xFFFFFFFF) and held < length:
                raise helper.InputError(name, None, 'truncated WAV: the header declares %d '
                                        'bytes of audio, there are %d' % (length, held))
            return
        offset += 8 + length + (length & 1)
    if len(head) == size:
        raise helper.InputError(name, None, 'truncated WAV: no data chunk')


def check_format(rate, channels, name):
    """InputError for a rate or channel count no recording has."""
    if not isinstance(rate, int) or not 1000 <= rate <= MAX_SAMPLE_RATE:
        raise helper.InputError(name, None, 'a sample rate of %s Hz is not accepted (1000 to '
                                '%d Hz)' % (shown(rate), MAX_SAMPLE_RATE))
    if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
        raise helper.InputError(name, None, '%s channels are not accepted (1 to %d)'
                                % (shown(channels), MAX_CHANNELS))
    if rate * channels > MAX_SAMPLES_PER_SECOND:
        raise helper.InputError(name, None, '%d channels at %d Hz are more samples a second '
                                'than accepted (rate x channels up to %d)'
                                % (channels, rate, MAX_SAMPLES_PER_SECOND))


def shown(value, width=12):
    """A caller's number as a message may repeat it: cut when long."""
    text = str(value)
    return text if len(text) <= width else text[:width] + '...'


def check_duration(seconds, max_seconds, name):
    if max_seconds is not None and seconds > max_seconds:
        raise TooLong(name, None, 'audio lasts %.1f s, more than the %g s accepted'
                      % (seconds, max_seconds))


# --------------------------------------------------------------------------
# Samples in blocks -> mono at every rate asked for
# --------------------------------------------------------------------------
class _Mono:
    """Blocks of [frames, channels] float32 samples at `rate`, checked, mixed
    to mono and resampled to each of `targets` as they arrive."""

    def __init__(self, rate, targets, max_seconds, name, cancelled):
        import soxr
        self.rate, self.max_seconds, self.name = rate, max_seconds, name
        self.cancelled = cancelled
        self.frames = 0
        self.parts = {target: [] for target in targets}
        self.resamplers = {target: soxr.ResampleStream(rate, target, 1, dtype='float32')
                           for target in targets if target != rate}

    def add(self, block):
        if self.cancelled is not None and self.cancelled.is_set():
            raise helper.Cancelled('decoding stopped: the caller left')
        if not np.isfinite(block).all():
            raise helper.InputError(self.name, None, 'the audio holds samples that are not '
                                    'numbers (NaN or infinite)')
        if block.size and np.abs(block).max() > MAX_MAGNITUDE:
            raise helper.InputError(self.name, None, 'the audio holds samples of magnitude '
                                    '%.3g; float audio lies within [-1, 1]'
                                    % np.abs(block).max())
        self.frames += len(block)
        if self.max_seconds is not None and self.frames / self.rate > self.max_seconds:
            # Decoding stops here: how long the whole is, nobody knows.
            raise TooLong(self.name, None, 'audio lasts more than the %g s accepted'
                          % self.max_seconds)
        mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        self._resample(mono, last=False)

    def _resample(self, mono, last):
        for target, parts in self.parts.items():
            resampler = self.resamplers.get(target)
            parts.append(mono if resampler is None else resampler.resample_chunk(mono, last=last))

    def finish(self):
        if self.frames == 0:
            raise helper.InputError(self.name, None, 'audio is empty')
        self._resample(np.zeros(0, dtype=np.float32), last=True)
        decoded = {}
        for target in list(self.parts):   # each rate's blocks freed once joined
            decoded[target] = np.concatenate(self.parts.pop(target)).astype(np.float32,
                                                                           copy=False)
        return decoded


def _read_with_libsndfile(source, targets, max_seconds, name, cancelled):
    import soundfile
    with soundfile.SoundFile(source) as sound:
        check_format(sound.samplerate, sound.channels, name)
        # A streamed WAV's header may announce no length: the decoded length is checked too.
        if 0 < sound.frames < 1 << 62:
            check_duration(sound.frames / sound.samplerate, max_seconds, name)
        mono = _Mono(sound.samplerate, targets, max_seconds, name, cancelled)
        while True:
            block = sound.read(BLOCK_FRAMES, dtype='float32', always_2d=True)
            if not len(block):
                return mono.finish()
            mono.add(block)


def _ffmpeg_input(path, demuxer):
    """ffmpeg's (or ffprobe's) options reading `path` with `demuxer` alone."""
    options = ['-protocol_whitelist', 'file', '-f', demuxer]
    if demuxer == 'mov':
        options += ['-enable_drefs', '0']   # an MP4's references to other files stay unread
    return options + ['-i', 'file:' + path]


def _probe(path, container, max_seconds, name):
    """(rate, channels) of the first audio stream, read from the header."""
    label, demuxer, _ = CONTAINERS[container]
    command = ['ffprobe', '-v', 'error'] + _ffmpeg_input(path, demuxer) + [
        '-select_streams', 'a:0', '-show_entries', 'stream=sample_rate,channels,duration',
        '-of', 'json']
    try:
        result = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_SECONDS,
                                check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise helper.InputError(name, None, '%s needs ffmpeg, which is not installed'
                                % label) from None
    except subprocess.TimeoutExpired:
        raise helper.InputError(name, None, 'not read as %s within %d s'
                                % (label, FFMPEG_TIMEOUT_SECONDS)) from None
    streams = []
    if result.returncode == 0:
        try:
            streams = json.loads(result.stdout).get('streams') or []
        except ValueError:
            streams = []
    if not streams:
        raise helper.InputError(name, None, 'not %s audio that can be decoded' % label)
    stream = streams[0]
    try:
        rate, channels = int(stream['sample_rate']), int(stream['channels'])
    except (KeyError, TypeError, ValueError):
        raise helper.InputError(name, None, '%s whose audio has no sample rate or channel '
                                'count' % label) from None
    check_format(rate, channels, name)
    try:
        seconds = float(stream.get('duration', 0))
    except (TypeError, ValueError):
        seconds = 0.0   # the duration is optional; the decoded length is checked anyway
    check_duration(seconds, max_seconds, name)
    return rate, channels


def _read_with_ffmpeg(path, container, targets, max_seconds, name, cancelled):
    label, demuxer, _ = CONTAINERS[container]
    rate, channels = _probe(path, container, max_seconds, name)
    # Decoding stops a little past the limit: enough to tell that it is too long.
    limit = [] if max_seconds is None else ['-t', '%.3f' % (max_seconds + 1)]
    command = (['ffmpeg', '-nostdin', '-v', 'error'] + _ffmpeg_input(path, demuxer) +
               ['-map', '0:a:0', '-ar', str(rate), '-ac', str(channels)] + limit +
               ['-f', 'f32le', 'pipe:1'])
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    timer = threading.Timer(FFMPEG_TIMEOUT_SECONDS, process.kill)
    timer.start()
    mono = _Mono(rate, targets, max_seconds, name, cancelled)
    block_bytes = 4 * channels * BLOCK_FRAMES
    try:
        pending = b''
        while True:
            data = process.stdout.read(block_bytes)
            if not data:
                break
            data, pending = pending + data, b''
            whole = len(data) - len(data) % (4 * channels)
            data, pending = data[:whole], data[whole:]
            mono.add(np.frombuffer(data, dtype='<f4').reshape(-1, channels))
        status = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    if status != 0:
        raise helper.InputError(name, None, 'not %s audio that can be decoded' % label)
    return mono.finish()


# --------------------------------------------------------------------------
# The decoder
# --------------------------------------------------------------------------
def _decode(head, size, source, path, targets, max_seconds, name, cancelled, reader):
    """{rate: mono samples} of audio whose first bytes are `head` and length
    `size`; libsndfile reads `source` (a path or a file object), ffmpeg
    `path()` (a callable giving a file name: an upload is written only if
    needed). `reader` names who refuses other formats."""
    container = identify(head)
    if container is None:
        raise helper.InputError(name, None, 'not an audio format %s (%s)' % (reader, ACCEPTED))
    if container == 'wav':
        check_wav_complete(head, size, name)
    targets = sorted(set(targets))
    if CONTAINERS[container][2]:
        import soundfile
        try:
            return _read_with_libsndfile(source, targets, max_seconds, name, cancelled)
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError):
            pass    # a codec libsndfile cannot read in this container: ffmpeg's turn
    with path() as file_name:
        return _read_with_ffmpeg(file_name, container, targets, max_seconds, name, cancelled)


class _Upload(io.BytesIO):
    """The upload as libsndfile reads it: a seek before its start (which a
    corrupt header asks for) fails quietly instead of printing a traceback
    from inside the C library's callback."""

    def seek(self, offset, whence=io.SEEK_SET):
        try:
            return super().seek(offset, whence)
        except ValueError:
            return self.tell()


class _PrivateCopy:
    """The bytes in a file of their own, in a directory only this user reads,
    removed on leaving."""

    def __init__(self, data):
        self.data = data
        self.directory = None

    def __enter__(self):
        self.directory = tempfile.TemporaryDirectory(prefix='ser-audio-')
        path = os.path.join(self.directory.name, 'upload')
        with open(path, 'wb') as handle:
            handle.write(self.data)
        return path

    def __exit__(self, *exc_info):
        self.directory.cleanup()
        return False


def decode_bytes(data, sample_rates, max_seconds=None, name='audio', cancelled=None):
    """{rate: mono float32 samples} of an audio file held in `data`, at each
    of `sample_rates`. InputError (naming `name`, in the caller's terms) for
    anything but complete audio in an accepted container; TooLong past
    `max_seconds`; helper.Cancelled once `cancelled` (an Event) is set."""
    return _decode(data[:HEAD_BYTES], len(data), _Upload(data), lambda: _PrivateCopy(data),
                   sample_rates, max_seconds, name, cancelled, 'this service accepts')


def read_file(path, sample_rate, max_seconds=None):
    """Mono float32 samples of the audio file at `path`, at `sample_rate`."""
    if not os.path.isfile(path):
        raise helper.InputError(path, None, 'file not found')
    with open(path, 'rb') as handle:
        head = handle.read(HEAD_BYTES)
    decoded = _decode(head, os.path.getsize(path), path, lambda: contextlib.nullcontext(path),
                      [sample_rate], max_seconds, path, None, 'this program reads')
    return decoded[sample_rate]


def duration(path):
    """Seconds of audio in the file at `path`, from its header where it has
    one, else by decoding it."""
    import soundfile
    try:
        return soundfile.info(path).duration
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        return len(read_file(path, 16000)) / 16000.0
