"""The live page at GET / (ser/page.py, ser/static/): served by the service
with its assets, gone with --no_page, and used in a real headless Chromium
driven over the DevTools protocol: a fake microphone fed from a WAV streams
to /emotion-stream, and a chosen file is posted to /emotion-recognition.

The model is the seeded random checkpoint of serve_fixtures.py (tiny dataset,
1000 Hz): these tests check the page against the service, not what a model
learnt. The browser tests need Debian's chromium (make system-packages
installs it) and are skipped, saying why, where it is missing."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse

import anyio
import numpy as np
import pytest
import soundfile
from websockets.sync.client import connect

from ser import application, emotion, page, service
# checkpoint: the seeded random model's fixture.
from serve_fixtures import SENTENCES, Server, checkpoint, encoded, wav_bytes  # noqa: F401

CHROMIUM = shutil.which('chromium')
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason='no chromium on PATH: `make system-packages` installs Debian\'s '
    'chromium, which the browser tests of the live page drive')
WINDOW = (1280, 1100)
BROWSER_START_SECONDS = 30
PAGE_SECONDS = 60
# What the stream and POST answers may differ by (test_serve.py's stream tests).
VALUE_TOLERANCE = 1e-4


# --------------------------------------------------------------------------
# Served by the service (no browser, no model)
# --------------------------------------------------------------------------
def asgi_get(app, path):
    """(status, headers, body) of GET `path` from an ASGI application."""
    reply = {'body': b''}

    async def receive():
        return {'type': 'http.request', 'body': b'', 'more_body': False}

    async def send(message):
        if message['type'] == 'http.response.start':
            reply['status'] = message['status']
            reply['headers'] = {k.decode().lower(): v.decode() for k, v in message['headers']}
        else:
            reply['body'] += message.get('body', b'')

    scope = {'type': 'http', 'asgi': {'version': '3.0', 'spec_version': '2.4'}, 'http_version': '1.1', 'method': 'GET',
             'scheme': 'http', 'path': path, 'raw_path': path.encode(), 'query_string': b'',
             'root_path': '', 'headers': [(b'host', b'127.0.0.1')], 'client': ('127.0.0.1', 1),
             'server': ('127.0.0.1', 80)}
    anyio.run(app, scope, receive, send)
    return reply['status'], reply['headers'], reply['body']


def page_app(with_page):
    # No request here reaches the model or the aligner.
    return application.create_app(service.Service(predictor=None, aligner=None), with_page=with_page)


def asset_paths(html, script):
    """Every path of this origin the page names: its <link>/<script> and the
    worklet its script loads."""
    return sorted(set(re.findall(r'(?:href|src)="(/[^"]*)"', html)
                      + re.findall(r"'(/static/[^']+)'", script)))


def test_the_page_and_its_assets_are_served():
    app = page_app(True)
    status, headers, body = asgi_get(app, '/')
    assert status == 200
    assert headers['content-type'].startswith('text/html')
    assert headers['content-security-policy'] == page.CONTENT_SECURITY_POLICY
    html = body.decode()
    assert 'id="start"' in html and 'id="file"' in html
    script = asgi_get(app, '/static/page.js')[2].decode()
    paths = asset_paths(html, script)
    assert paths == ['/static/capture-worklet.js', '/static/page.css', '/static/page.js']
    for path in paths:
        status, headers, body = asgi_get(app, path)
        assert status == 200, path
        assert body == open(os.path.join(page.STATIC_DIR, os.path.basename(path)), 'rb').read()
        assert headers['content-type'].split(';')[0] in ('text/css', 'text/javascript',
                                                         'application/javascript'), path
    # Only this origin, whatever the page says.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)
    assert "default-src 'none'" in page.CONTENT_SECURITY_POLICY


def test_without_the_page_the_api_alone():
    app = page_app(False)
    for path in ('/', '/static/page.js'):
        status, _, body = asgi_get(app, path)
        assert status == 404, path
        assert json.loads(body)['status'] == 'error'


# --------------------------------------------------------------------------
# Chromium over the DevTools protocol
# --------------------------------------------------------------------------
class DevToolsError(AssertionError):
    pass


class Browser:
    """Headless Chromium with a fresh profile, no network but this machine,
    and a fake microphone playing `microphone` (a WAV) that every page is
    granted (refused with allow=False), driven over the DevTools protocol's
    browser WebSocket (flat sessions, one per tab)."""

    def __init__(self, root, microphone, allow=True):
        profile = root / 'profile'
        profile.mkdir(parents=True)
        self.log_path = root / 'chromium.log'
        with open(self.log_path, 'w') as log:
            self.process = subprocess.Popen(
                [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                 '--no-first-run', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--user-data-dir=%s' % profile, '--remote-debugging-port=0',
                 '--window-size=%d,%d' % WINDOW, '--force-device-scale-factor=1',
                 # The network cut off: no name resolves but the loopback's, no proxy.
                 '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', '--no-proxy-server',
                 '--use-fake-device-for-media-stream',
                 '--use-fake-ui-for-media-stream' + ('' if allow else '=deny'),
                 '--use-file-for-fake-audio-capture=%s' % microphone, 'about:blank'],
                stdout=log, stderr=subprocess.STDOUT)
        self.connection = connect(self.endpoint(profile), proxy=None, max_size=None,
                                  open_timeout=BROWSER_START_SECONDS)
        self.ids = iter(range(1, 1 << 30))
        self.events = []

    def endpoint(self, profile):
        active = profile / 'DevToolsActivePort'
        deadline = time.monotonic() + BROWSER_START_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, 'chromium exited:\n' + self.log_path.read_text()
            lines = active.read_text().split() if active.exists() else []
            if len(lines) == 2:
                return 'ws://127.0.0.1:%s%s' % tuple(lines)
            time.sleep(0.1)
        raise AssertionError('chromium did not open its DevTools port:\n'
                             + self.log_path.read_text())

    def call(self, method, session=None, **params):
        """The result of one DevTools command; the events that arrive
        meanwhile are kept in self.events."""
        number = next(self.ids)
        message = {'id': number, 'method': method, 'params': params}
        if session:
            message['sessionId'] = session
        self.connection.send(json.dumps(message))
        while True:
            reply = json.loads(self.connection.recv(timeout=PAGE_SECONDS))
            if reply.get('id') == number:
                if 'error' in reply:
                    raise DevToolsError('%s: %s' % (method, reply['error']))
                return reply['result']
            self.events.append(reply)

    def new_tab(self, url):
        return Tab(self, url)

    def close(self):
        try:
            self.call('Browser.close')
        except Exception:   # already gone: killed below all the same
            pass
        self.connection.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Tab:
    """One page of the browser, its network requests and errors recorded."""

    def __init__(self, browser, url):
        self.browser = browser
        target = browser.call('Target.createTarget', url='about:blank')['targetId']
        self.session = browser.call('Target.attachToTarget', targetId=target,
                                    flatten=True)['sessionId']
        for domain in ('Network', 'Runtime', 'Page', 'Log'):
            self.call(domain + '.enable')
        self.call('Page.navigate', url=url)
        self.wait_for('document.readyState === "complete" && window.emotionPage !== undefined')

    def call(self, method, **params):
        return self.browser.call(method, self.session, **params)

    def my_events(self, method):
        return [e['params'] for e in self.browser.events
                if e.get('sessionId') == self.session and e.get('method') == method]

    def evaluate(self, expression):
        """The JSON value of a JavaScript expression (a promise is awaited)."""
        answer = self.call('Runtime.evaluate', expression=expression, returnByValue=True,
                           awaitPromise=True)
        if 'exceptionDetails' in answer:
            raise DevToolsError('%s: %s' % (expression, answer['exceptionDetails']))
        return answer['result'].get('value')

    def wait_for(self, expression, timeout=PAGE_SECONDS):
        """The first truthy value of `expression`, polled."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError('timed out waiting for %s; the page says: %s'
                                     % (expression, self.text('#message, #status')))
            time.sleep(0.1)

    def text(self, selector):
        return self.evaluate('[...document.querySelectorAll(%s)].map((e) => e.textContent.trim())'
                             '.join(" | ")' % json.dumps(selector))

    def click(self, selector):
        """A real mouse click (a user gesture, as the microphone wants)."""
        x, y = self.centre(selector)
        for kind in ('mousePressed', 'mouseReleased'):
            self.call('Input.dispatchMouseEvent', type=kind, x=x, y=y, button='left',
                      clickCount=1)

    def centre(self, selector):
        return self.evaluate('(() => { const r = document.querySelector(%s)'
                             '.getBoundingClientRect(); return [r.x + r.width / 2, '
                             'r.y + r.height / 2]; })()' % json.dumps(selector))

    def choose_file(self, selector, path):
        root = self.call('DOM.getDocument')['root']['nodeId']
        node = self.call('DOM.querySelector', nodeId=root, selector=selector)['nodeId']
        self.call('DOM.setFileInputFiles', nodeId=node, files=[str(path)])

    def drop_file(self, selector, path):
        """A file dragged from the desktop and dropped on `selector`."""
        x, y = self.centre(selector)
        data = {'items': [], 'files': [str(path)], 'dragOperationsMask': 1}
        for kind in ('dragEnter', 'dragOver', 'drop'):
            self.call('Input.dispatchDragEvent', type=kind, x=x, y=y, data=data)

    def type_text(self, selector, text):
        self.evaluate('document.querySelector(%s).focus()' % json.dumps(selector))
        self.call('Input.insertText', text=text)

    def requested_urls(self):
        """Every URL the page asked for: HTTP requests and WebSockets."""
        return ([e['request']['url'] for e in self.my_events('Network.requestWillBeSent')]
                + [e['url'] for e in self.my_events('Network.webSocketCreated')])

    def errors(self):
        """Uncaught exceptions, console errors and the browser's own (a
        Content-Security-Policy violation, a failed load)."""
        return ([e['exceptionDetails'] for e in self.my_events('Runtime.exceptionThrown')]
                + [e['args'] for e in self.my_events('Runtime.consoleAPICalled')
                   if e['type'] == 'error']
                + [e['entry']['text'] for e in self.my_events('Log.entryAdded')
                   if e['entry']['level'] == 'error'])

    def screenshot(self, path):
        data = self.call('Page.captureScreenshot', format='png', captureBeyondViewport=True,
                         clip={'x': 0, 'y': 0, 'width': WINDOW[0], 'height': self.evaluate(
                             'document.documentElement.scrollHeight'), 'scale': 1})['data']
        with open(path, 'wb') as handle:
            handle.write(base64.b64decode(data))


# --------------------------------------------------------------------------
# Fixtures: a service, speech, a browser
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def page_server(checkpoint, tmp_path_factory):
    running = Server(tmp_path_factory.mktemp('page_serve'), '--checkpoint', checkpoint)
    yield running
    if running.process.poll() is None:
        running.stop()


def spoken(directory, sentences, name):
    """A WAV file of espeak saying `sentences` one after the other (22050 Hz, 16 bit)."""
    pieces = []
    for index, sentence in enumerate(sentences):
        path = directory / ('%s_%d.wav' % (name, index))
        subprocess.run(['espeak', '-v', 'en+%s' % ('m1', 'f2', 'm3')[index % 3], '-s', '150',
                        '-w', str(path), sentence], check=True, capture_output=True)
        samples, rate = soundfile.read(path, dtype='int16')
        pieces.append(samples)
    path = directory / (name + '.wav')
    path.write_bytes(wav_bytes(np.concatenate(pieces), rate))
    return path


@pytest.fixture(scope='module')
def microphone_wav(tmp_path_factory):
    """What the fake microphone says: over 5 s of speech, so a chunk is decided."""
    return spoken(tmp_path_factory.mktemp('microphone'), SENTENCES[:3], 'microphone')


@pytest.fixture(scope='module')
def browser(microphone_wav, tmp_path_factory):
    running = Browser(tmp_path_factory.mktemp('chromium'), microphone_wav)
    yield running
    running.close()


def page_url(server):
    return 'http://127.0.0.1:%d/' % server.port


def assert_only_this_origin(tab, server):
    origin = '127.0.0.1:%d' % server.port
    for url in tab.requested_urls():
        parts = urllib.parse.urlsplit(url)
        assert parts.scheme == 'data' or parts.netloc == origin, url


def assert_like_the_post_answer(shown, expected):
    """A summary and timeline as the page has them against POST's answer."""
    assert shown['summary']['emotion'] == expected['emotion']
    assert [c['emotion'] for c in shown['chunks']] == [c['emotion'] for c in expected['chunks']]
    for got, want in zip(shown['chunks'] + shown['summary']['chunks'], expected['chunks'] * 2):
        assert got['start'] == want['start']
        assert got['end'] == pytest.approx(want['end'], abs=1e-3)
        for key in ('arousal', 'valence'):
            assert got[key] == pytest.approx(want[key], abs=VALUE_TOLERANCE)
    assert [f['timestamp'] for f in shown['frames']] == [r['timestamp']
                                                        for r in expected['timeline']]
    for key in ('arousal', 'valence'):
        np.testing.assert_allclose([f[key] for f in shown['frames']],
                                   [r[key] for r in expected['timeline']], atol=VALUE_TOLERANCE)
        assert shown['summary'][key] == pytest.approx(expected[key], abs=VALUE_TOLERANCE)


VIEW = ('({frames: emotionPage.view.frames, chunks: emotionPage.view.chunks, '
        'words: emotionPage.view.words, summary: emotionPage.view.summary})')


# --------------------------------------------------------------------------
# In the browser
# --------------------------------------------------------------------------
@pytest.mark.slow
@needs_chromium
def test_the_page_loads_with_the_network_cut_off(browser, page_server):
    tab = browser.new_tab(page_url(page_server))
    model = tab.wait_for('emotionPage.health() && document.getElementById("model").textContent')
    assert model.startswith('model step 3, hearing the audio and the words; audio at 1000 Hz')
    paths = sorted(urllib.parse.urlsplit(url).path for url in tab.requested_urls()
                   if not url.startswith('data:'))
    assert paths == ['/', '/health', '/static/page.css', '/static/page.js']
    assert_only_this_origin(tab, page_server)
    assert tab.errors() == []


@pytest.mark.slow
@needs_chromium
def test_the_microphone_streams_and_ends_with_the_post_answer(browser, page_server):
    tab = browser.new_tab(page_url(page_server))
    tab.wait_for('emotionPage.health()')
    tab.click('#start')
    # Frames arrive and the first chunk's label is shown while the microphone still streams.
    label = tab.wait_for('document.querySelector("#chunk-rows tr")?.dataset.emotion')
    assert label in emotion.LABELS
    assert tab.evaluate('emotionPage.view.frames.length') >= 20
    assert tab.evaluate('document.getElementById("stop").disabled') is False
    tab.click('#stop')
    tab.wait_for('emotionPage.view.summary && document.getElementById("start").disabled === '
                 'false')
    shown = tab.evaluate(VIEW)
    assert tab.text('#message') == ''
    # What was streamed, as the page saves it, posted: the same answer.
    take = base64.b64decode(tab.evaluate(
        '(async () => { const bytes = new Uint8Array(await emotionPage.view.take.arrayBuffer());'
        ' let text = ""; bytes.forEach((b) => { text += String.fromCharCode(b); });'
        ' return btoa(text); })()'))
    samples, rate = soundfile.read(io.BytesIO(take), dtype='float32')
    assert rate == 1000
    assert len(samples) / rate == pytest.approx(shown['summary']['duration'], abs=1e-3)
    assert len(samples) / rate >= 5
    assert np.sqrt(np.mean(samples ** 2)) > 0.01    # the WAV's speech, not silence
    status, expected = page_server.recognise({'audio': encoded(take), 'timeline': True})
    assert status == 200, expected
    assert_like_the_post_answer(shown, expected)
    assert shown['summary']['text'] == 'none'
    # The page says so: no recogniser, so the text branch heard nothing.
    assert 'text branch hears nothing' in tab.text('#text-branch')
    assert tab.evaluate('document.getElementById("text-branch").hidden') is False
    # Where /health says the service recognises (serve.py --recognise), the page says that instead.
    assert 'recognises your words' in tab.evaluate('textBranchNote("both", true)')
    assert tab.evaluate('textBranchNote("audio", true)') == ''
    assert tab.text('#summary dd[data-field="emotion"]') == expected['emotion']
    assert tab.text('#chunk-rows tr td:last-child').split(' | ') == [
        c['emotion'] for c in expected['chunks']]
    assert tab.evaluate('document.getElementById("take").hidden') is False
    assert_only_this_origin(tab, page_server)
    assert any(url.endswith('/emotion-stream') for url in tab.requested_urls())
    assert tab.errors() == []


RESAMPLED_TONES = """(() => {
  const tone = (hertz) => {
    const resampler = new Resampler(48000, 8000);
    const out = [];
    for (let block = 0; block < 100; block += 1) {
      const samples = new Float32Array(960);
      samples.forEach((_, i) => {
        samples[i] = 0.5 * Math.sin(2 * Math.PI * hertz * (960 * block + i) / 48000);
      });
      out.push(...resampler.push(samples));
    }
    out.push(...resampler.flush());
    return out;
  };
  return {kept: tone(1000), removed: tone(6000)};
})()"""


@pytest.mark.slow
@needs_chromium
def test_the_microphone_is_resampled_to_the_services_rate(browser, page_server):
    """The page's resampler, 48 kHz in 20 ms blocks as the worklet gives
    them, to 8 kHz: a tone below 4 kHz kept, one above it removed (not
    folded back to 2 kHz)."""
    tab = browser.new_tab(page_url(page_server))
    tones = tab.evaluate(RESAMPLED_TONES)
    kept, removed = np.array(tones['kept']), np.array(tones['removed'])
    assert len(kept) == len(removed) == 2 * 8000
    inner = slice(100, -100)    # away from where the tone starts and stops
    expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(kept)) / 8000)
    assert np.max(np.abs(kept - expected)[inner]) < 1e-3
    assert np.sqrt(np.mean(removed[inner] ** 2)) < 1e-3


def colour_pixels(tab, canvas, colour):
    """Pixels of `canvas` within a few levels of `colour` (#rrggbb)."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return tab.evaluate(
        '(() => { const c = document.getElementById(%s); const d = c.getContext("2d")'
        '.getImageData(0, 0, c.width, c.height).data; const [r, g, b] = %s; let n = 0;'
        ' for (let i = 0; i < d.length; i += 4) { if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g)'
        ' + Math.abs(d[i + 2] - b) < 30) n += 1; } return n; })()'
        % (json.dumps(canvas), json.dumps(rgb)))


@pytest.mark.slow
@needs_chromium
def test_a_chosen_file_shows_its_curves_words_and_label(browser, page_server, tmp_path,
                                                        request):
    sentences = SENTENCES[3:5]
    recording = spoken(tmp_path, sentences, 'recording')
    transcript = ' '.join(sentences)
    tab = browser.new_tab(page_url(page_server))
    tab.wait_for('emotionPage.health()')
    blank = {c: colour_pixels(tab, 'chart', c) for c in ('#1f77b4', '#ff7f0e')}
    tab.choose_file('#file', recording)
    tab.wait_for('document.getElementById("analyse").disabled === false')
    tab.type_text('#transcript', transcript)
    tab.click('#analyse')
    tab.wait_for('emotionPage.view.summary')
    tab.wait_for('!document.getElementById("analyse").disabled')
    shown = tab.evaluate(VIEW)
    status, expected = page_server.recognise({'audio': encoded(recording.read_bytes()),
                                              'transcript': transcript, 'timeline': True})
    assert status == 200, expected
    assert_like_the_post_answer(shown, expected)
    assert shown['words'] == expected['words']
    assert [w['word'] for w in shown['words']] == transcript.split()
    # Both curves are drawn, in plot_timeline's colours (the legend alone is a few pixels).
    for colour, before in blank.items():
        assert colour_pixels(tab, 'chart', colour) > before + 500, colour
    assert tab.text('#summary dd[data-field="emotion"]') == expected['emotion']
    assert tab.text('#summary dd[data-field="text branch heard"]') == \
        'the transcript, aligned to the audio'
    quadrant = tab.text('#quadrant')
    assert ('high' if expected['arousal'] >= 0 else 'low') in \
        {'exuberance': 'high', 'anxiety': 'high', 'depression': 'low',
         'contentment': 'low'}[quadrant.split(':')[0]]
    assert tab.text('#message') == ''
    assert_only_this_origin(tab, page_server)
    assert tab.errors() == []
    if request.config.getoption('--screenshot'):
        tab.screenshot(request.config.getoption('--screenshot'))


@pytest.mark.slow
@needs_chromium
def test_a_dropped_file_that_is_no_audio_gets_the_services_message(browser, page_server, tmp_path):
    not_audio = tmp_path / 'notes.wav'
    not_audio.write_bytes(b'this is no audio at all')
    tab = browser.new_tab(page_url(page_server))
    tab.wait_for('emotionPage.health()')
    tab.drop_file('#drop', not_audio)
    tab.wait_for('document.getElementById("analyse").disabled === false')
    assert tab.text('#file-name').startswith('notes.wav')
    tab.click('#analyse')
    message = tab.wait_for('document.getElementById("message").hidden === false && '
                           'document.getElementById("message").textContent')
    status, answer = page_server.recognise({'audio': encoded(not_audio.read_bytes()),
                                            'timeline': True})
    assert status == 400
    said = answer.get('text') or answer['error']
    assert message == 'The service refused notes.wav (400): %s' % said


@pytest.mark.slow
@needs_chromium
def test_a_refused_microphone_says_what_to_do(microphone_wav, page_server, tmp_path):
    browser = Browser(tmp_path, microphone_wav, allow=False)
    try:
        tab = browser.new_tab(page_url(page_server))
        tab.wait_for('emotionPage.health()')
        tab.click('#start')
        message = tab.wait_for('document.getElementById("message").hidden === false && '
                               'document.getElementById("message").textContent')
        assert message.startswith('The browser refused this page the microphone. Allow it')
        assert tab.evaluate('document.getElementById("start").disabled') is False
        assert tab.evaluate('emotionPage.view.frames.length') == 0
        assert not any(url.endswith('/emotion-stream') for url in tab.requested_urls())
    finally:
        browser.close()


@pytest.mark.slow
@needs_chromium
def test_the_page_keeps_to_the_services_limits(browser, checkpoint, microphone_wav, tmp_path):
    limit = 2
    running = Server(tmp_path, '--checkpoint', checkpoint, '--max_audio_seconds', limit,
                     '--max_streams', 1)
    try:
        tab = browser.new_tab(page_url(running))
        assert tab.wait_for('emotionPage.health()')['max_audio_seconds'] == limit
        # While another stream takes the only place: the service's own message, and what it means.
        with connect('ws://127.0.0.1:%d/emotion-stream' % running.port, proxy=None) as other:
            other.send(json.dumps({'type': 'start', 'sample_rate': 1000}))
            assert json.loads(other.recv(timeout=PAGE_SECONDS))['type'] == 'ready'
            tab.click('#start')
            message = tab.wait_for('document.getElementById("start").disabled === false && '
                                   'document.getElementById("message").textContent')
        assert message == ('The service ended the stream: 1 streams are open, the most this '
                           'server takes; try again later (the service has as many streams open '
                           'as it takes: try again in a moment).')
        # Nobody presses Stop: the page stops at the limit /health gives.
        tab.click('#start')
        summary = tab.wait_for('document.getElementById("start").disabled === false && '
                               'emotionPage.view.summary')
        assert summary['duration'] == pytest.approx(limit, abs=1e-3)
        assert tab.text('#status') == 'Stopped at 2 s, the longest audio the service takes.'
        assert tab.text('#message') == ''
        # A longer recording is refused by the page itself: nothing is posted.
        tab.choose_file('#file', microphone_wav)
        tab.click('#analyse')
        message = tab.wait_for('document.getElementById("message").hidden === false && '
                               'document.getElementById("message").textContent')
        seconds = soundfile.info(str(microphone_wav)).duration
        assert message == ('microphone.wav lasts %.1f s; the service takes at most 2 s. Analyse a '
                           'shorter part of it.' % seconds)
        assert not any(url.endswith('/emotion-recognition') for url in tab.requested_urls())
        assert tab.errors() == []
    finally:
        running.stop()


@pytest.mark.slow
@needs_chromium
def test_the_page_sends_the_api_key_it_is_given(browser, checkpoint, microphone_wav, tmp_path):
    key = '??>>page-key'     # its base64 has a '+' and padding: the page must send base64url
    key_file = tmp_path / 'key.txt'
    key_file.write_text(key + '\n')
    limit = 2
    running = Server(tmp_path, '--checkpoint', checkpoint, '--api_key_file', key_file,
                     '--max_audio_seconds', limit)
    short = tmp_path / 'short.wav'
    samples, rate = soundfile.read(str(microphone_wav), dtype='int16')
    short.write_bytes(wav_bytes(samples[:rate], rate))
    try:
        tab = browser.new_tab(page_url(running))
        assert tab.wait_for('emotionPage.health()')['api_key_required'] is True
        assert tab.evaluate('document.getElementById("key-row").hidden') is False
        # Without the key the stream is refused, and the page says why.
        tab.click('#start')
        message = tab.wait_for('document.getElementById("start").disabled === false && '
                               'document.getElementById("message").textContent')
        assert message.endswith('the service wants its API key: is the one above right?')
        tab.choose_file('#file', short)
        tab.wait_for('document.getElementById("analyse").disabled === false')
        tab.click('#analyse')
        message = tab.wait_for('!document.getElementById("analyse").disabled && '
                               'document.getElementById("message").textContent')
        assert message.startswith('The service refused short.wav (401)')
        # With it, both the stream and the recording are answered.
        tab.type_text('#api-key', key)
        tab.click('#start')
        summary = tab.wait_for('document.getElementById("start").disabled === false && '
                               'emotionPage.view.summary')
        assert summary['duration'] == pytest.approx(limit, abs=1e-3)
        assert tab.text('#message') == ''
        tab.click('#analyse')
        tab.wait_for('emotionPage.view.mode === "file" && emotionPage.view.summary')
        assert tab.evaluate('emotionPage.view.summary.duration') == pytest.approx(1, abs=1e-3)
        assert tab.text('#message') == ''
        assert not any(key in url or 'page-key' in url for url in tab.requested_urls())
    finally:
        running.stop()
    log = running.log()
    assert 'refused, no valid API key' in log and key not in log


@pytest.mark.slow
def test_no_page_flag_serves_the_api_alone(checkpoint, tmp_path):
    running = Server(tmp_path, '--checkpoint', checkpoint, '--no_page')
    try:
        status, answer, _ = running.request('GET', '/')
        assert (status, answer['status']) == (404, 'error')
        assert running.request('GET', '/static/page.js')[0] == 404
        assert running.request('GET', '/health')[0] == 200
    finally:
        running.stop()
