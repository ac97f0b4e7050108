"""The live page served at GET / by serve.py: the microphone (streamed over
/emotion-stream) or a file (posted to /emotion-recognition) in, the arousal
and valence curves, words, chunk labels, Thayer quadrant and summary out.

The page and its scripts live in ser/static/ and are served by the service
itself: nothing is built and nothing is fetched from elsewhere, which the
Content-Security-Policy makes the browser enforce."""

import os

from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
STATIC_PATH = '/static'
# Only this origin: scripts, styles, the worklet, fetch and the WebSocket.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "connect-src 'self'; img-src 'self' data:")
HEADERS = {'Content-Security-Policy': CONTENT_SECURITY_POLICY,
           # The page is as new as the service that serves it.
           'Cache-Control': 'no-cache'}


class PageFiles(StaticFiles):
    """The page's assets, with the page's headers."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(HEADERS)
        return response


async def index(request):
    return FileResponse(os.path.join(STATIC_DIR, 'index.html'), headers=HEADERS)


def routes():
    """Starlette routes of the live page: GET / and its assets under /static."""
    return [Route('/', index, methods=['GET']),
            Mount(STATIC_PATH, app=PageFiles(directory=STATIC_DIR), name='static')]
