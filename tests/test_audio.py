"""ser.audio, the one decoder of files and uploads: which bytes it takes,
what it never opens, the memory it holds, and that every bad input is an
InputError naming what is wrong."""

import io
import os
import subprocess
import threading
import tracemalloc

import numpy as np
import pytest
import soundfile
import soxr

import helper
from ser import audio


def wav(samples, rate, subtype='PCM_16', container='WAV'):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format=container)
    return buffer.getvalue()


def tone(seconds, rate, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono


def encoded_with_ffmpeg(data, tmp_path, extension, *codec):
    source, target = tmp_path / 'source.wav', tmp_path / ('encoded.' + extension)
    source.write_bytes(data)
    subprocess.run(['ffmpeg', '-nostdin', '-v', 'error', '-y', '-i', str(source)] + list(codec)
                   + [str(target)], check=True)
    return target.read_bytes()


# --------------------------------------------------------------------------
# What the bytes are
# --------------------------------------------------------------------------
@pytest.mark.parametrize('container, head', [
    ('wav', b'RIFF\x00\x00\x00\x00WAVEfmt '), ('wav', b'RF64\xff\xff\xff\xffWAVEds64'),
    ('aiff', b'FORM\x00\x00\x00\x00AIFF'), ('flac', b'fLaC\x00'), ('ogg', b'OggS\x00\x02'),
    ('mp4', b'\x00\x00\x00\x20ftypM4A '), ('webm', b'\x1a\x45\xdf\xa3\x9f'),
    ('amr', b'#!AMR\n'), ('mp3', b'ID3\x04\x00'), ('mp3', b'\xff\xfb\x90\x64'),
    ('aac', b'\xff\xf1\x50\x80'), (None, b'#EXTM3U\n'), (None, b'ffconcat version 1.0\n'),
    (None, b'file:/etc/passwd'), (None, b''), (None, b'RIFF\x00\x00\x00\x00AVI ')])
def test_containers_are_known_by_their_signature(container, head):
    assert audio.identify(head) == container


@pytest.mark.parametrize('kind', ['m3u8', 'concat', 'sdp', 'image_sequence', 'ogg_disguised',
                                  'mp3_disguised'])
def test_uploads_that_name_other_files_open_none(kind, tmp_path):
    """Each upload names a FIFO; opening it for reading would release the
    writer blocked on it. None is opened, and each is a 400-style error."""
    fifo = str(tmp_path / 'secret.wav')
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer():
        with open(fifo, 'wb'):
            opened.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    body = {'m3u8': b'#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n%s\n#EXT-X-ENDLIST\n',
            'concat': b"ffconcat version 1.0\nfile '%s'\n",
            'sdp': b'v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\n'
                   b'a=x-path:%s\nm=audio 5004 RTP/AVP 0\n',
            'image_sequence': b'%s',
            'ogg_disguised': b'OggS\x00\x02' + b'\x00' * 20 + b'\n#EXTM3U\n%s\n',
            'mp3_disguised': b'ID3\x04\x00\x00\x00\x00\x00\x00#EXTM3U\n%s\n'}[kind]
    with pytest.raises(helper.InputError) as error:
        audio.decode_bytes(body.replace(b'%s', fifo.encode()), [16000], 60, 'audio')
    assert not opened.is_set()
    assert error.value.path == 'audio'
    assert fifo not in error.value.problem and str(tmp_path) not in error.value.problem
    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))   # release the writer
    thread.join(5)


def test_a_text_upload_is_not_an_accepted_format():
    with pytest.raises(helper.InputError, match='not an audio format this service accepts '
                                                r'\(WAV/RF64, .*MP3.*WebM'):
        audio.decode_bytes(b'#EXTM3U\n/etc/hostname\n', [16000])


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------
def test_blocks_resampled_as_they_come_equal_the_whole_signal_resampled():
    samples = tone(3.3, 44100, channels=2)
    decoded = audio.decode_bytes(wav(samples, 44100, 'FLOAT'), [8000, 16000, 44100])
    mono = samples.mean(axis=1)
    np.testing.assert_array_equal(decoded[44100], mono)
    for rate in (8000, 16000):
        np.testing.assert_allclose(decoded[rate], soxr.resample(mono, 44100, rate), atol=1e-6)


@pytest.mark.parametrize('subtype', ['GSM610', 'G721_32', 'IMA_ADPCM', 'ULAW'])
def test_codecs_libsndfile_cannot_seek_decode(subtype):
    decoded = audio.decode_bytes(wav(tone(1.0, 8000), 8000, subtype), [16000])
    assert abs(len(decoded[16000]) - 16000) <= 800     # codecs pad their last block


@pytest.mark.parametrize('extension, codec', [('mp3', ['-c:a', 'libmp3lame']),
                                              ('m4a', ['-c:a', 'aac']),
                                              ('webm', ['-c:a', 'libopus']),
                                              ('ogg', ['-c:a', 'libopus'])])
def test_compressed_containers(extension, codec, tmp_path):
    data = encoded_with_ffmpeg(wav(tone(2.0, 48000), 48000), tmp_path, extension, *codec)
    decoded = audio.decode_bytes(data, [16000])[16000]
    assert len(decoded) == pytest.approx(32000, abs=1600)
    assert 0.1 < np.abs(decoded).max() < 0.5


def test_memory_holds_the_mono_output_not_the_files_channels():
    """60 s at 48 kHz x 4 channels is 46 MB of float32; decoding it to 8
    and 16 kHz holds the 5.8 MB of output and a block."""
    data = wav(np.zeros((48000 * 60, 4), dtype=np.int16), 48000, 'PCM_16')
    tracemalloc.start()
    try:
        decoded = audio.decode_bytes(data, [8000, 16000], max_seconds=600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output = sum(samples.nbytes for samples in decoded.values())
    assert output == 4 * 60 * 24000
    block = audio.BLOCK_FRAMES * 4 * 4
    assert peak < 2 * output + 4 * block


@pytest.mark.parametrize('rate, channels, words', [
    (384000, 1, 'sample rate of 384000 Hz'), (48000, 9, '9 channels'),
    (48000, 5, '5 channels at 48000 Hz'), (192000, 2, '2 channels at 192000 Hz')])
def test_absurd_rates_and_channel_counts_are_refused_before_decoding(rate, channels, words):
    data = wav(np.zeros((rate // 100, channels), dtype=np.int16), rate)
    with pytest.raises(helper.InputError, match=words):
        audio.decode_bytes(data, [16000])


@pytest.mark.parametrize('value, words', [(np.nan, 'not numbers'), (np.inf, 'not numbers'),
                                          (1e30, 'magnitude')])
def test_float_audio_that_is_not_sound(value, words):
    samples = tone(1.0, 8000)
    samples[4000] = value
    with pytest.raises(helper.InputError, match=words):
        audio.decode_bytes(wav(samples, 8000, 'FLOAT'), [8000])


def test_duration_is_checked_from_the_header_and_while_decoding():
    data = wav(np.zeros(8000 * 11, dtype=np.int16), 8000)
    with pytest.raises(audio.TooLong, match='lasts 11.0 s, more than the 10 s'):
        audio.decode_bytes(data, [8000], max_seconds=10)
    # A streamed WAV announces no length: the decoded samples are counted.
    streamed = bytearray(data)
    streamed[4:8] = b'\xff\xff\xff\xff'
    streamed[40:44] = b'\xff\xff\xff\xff'
    with pytest.raises(audio.TooLong):
        audio.decode_bytes(bytes(streamed), [8000], max_seconds=10)


def test_cancelled_decoding_stops():
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(helper.Cancelled):
        audio.decode_bytes(wav(tone(1.0, 8000), 8000), [8000], cancelled=cancelled)


def test_a_file_reads_as_its_bytes(tmp_path):
    path = tmp_path / 'speech.flac'
    data = wav(tone(1.5, 22050, channels=2), 22050, 'PCM_16', 'FLAC')
    path.write_bytes(data)
    np.testing.assert_array_equal(audio.read_file(str(path), 16000),
                                  audio.decode_bytes(data, [16000])[16000])


def test_truncated_wav_is_an_error_and_a_complete_one_reads(tmp_path):
    path = str(tmp_path / '1_1.wav')
    soundfile.write(path, np.zeros(16000, dtype=np.float32), 16000, subtype='PCM_16')
    assert len(audio.read_file(path, 16000)) == 16000
    with open(path, 'rb') as handle:
        data = handle.read()
    with open(path, 'wb') as handle:
        handle.write(data[:len(data) // 2])
    with pytest.raises(helper.InputError, match='truncated WAV') as error:
        audio.read_file(path, 16000)
    assert error.value.path == path
    header_only = bytearray(data[:36])
    header_only[4:8] = (28).to_bytes(4, 'little')    # a RIFF size that fits what is there
    with pytest.raises(helper.InputError, match='truncated WAV: no data chunk'):
        audio.decode_bytes(bytes(header_only), [16000])
    with pytest.raises(helper.InputError, match='file not found'):
        audio.read_file(str(tmp_path / 'missing.wav'), 16000)


def test_an_empty_wav_is_empty():
    with pytest.raises(helper.InputError, match='audio is empty'):
        audio.decode_bytes(wav(np.zeros(0), 8000), [8000])


def _tone(rate, seconds, channels):
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 220 * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


@pytest.mark.parametrize('rate, channels', [(48000, 2), (22050, 1), (16000, 1)])
def test_read_file_mixes_down_and_resamples(tmp_path, rate, channels):
    path = str(tmp_path / 'a.wav')
    soundfile.write(path, _tone(rate, 1.0, channels), rate)
    samples = audio.read_file(path, 16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 16000) <= 1
    assert 0.45 < np.abs(samples[1000:-1000]).max() < 0.55


def test_read_file_decodes_other_containers_with_ffmpeg(tmp_path):
    wav = str(tmp_path / 'a.wav')
    soundfile.write(wav, _tone(44100, 1.0, 2), 44100)
    mp3 = str(tmp_path / 'a.mp3')
    subprocess.run(['ffmpeg', '-v', 'error', '-i', wav, mp3], check=True)
    samples = audio.read_file(mp3, 16000)
    assert abs(len(samples) / 16000 - 1.0) < 0.1
    assert np.abs(samples).max() > 0.3


def test_read_file_errors_name_the_file(tmp_path):
    garbage = tmp_path / 'broken.wav'
    garbage.write_bytes(b'RIFF not really a wave file')
    with pytest.raises(helper.InputError, match='broken.wav: not an audio format this program reads'):
        audio.read_file(str(garbage), 16000)
    empty = str(tmp_path / 'empty.wav')
    soundfile.write(empty, np.zeros(0), 16000)
    with pytest.raises(helper.InputError, match='empty.wav: audio is empty'):
        audio.read_file(empty, 16000)
