"""A local HTTP server on the loopback address serving a folder laid out like GitHub's raw files
(``<repository>/r<release>/<file>``): the download tests' stand-in for raw.githubusercontent.com."""

from __future__ import annotations

import contextlib
import functools
import lzma
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: A tiny treebank: 2 sentences, 7 words (UPOS and trees valid).
TINY_CONLLU = """# sent_id = 1
1\tthe\tthe\tDET\t_\t_\t2\tdet\t_\t_
2\tdog\tdog\tNOUN\t_\t_\t3\tnsubj\t_\t_
3\truns\trun\tVERB\t_\t_\t0\troot\t_\t_

# sent_id = 2
1\tmary\tmary\tPROPN\t_\t_\t2\tnsubj\t_\t_
2\tsees\tsee\tVERB\t_\t_\t0\troot\t_\t_
3\tit\tit\tPRON\t_\t_\t2\tobj\t_\t_
4\t.\t.\tPUNCT\t_\t_\t2\tpunct\t_\t_

"""


class _Quiet(SimpleHTTPRequestHandler):
    """Serves files; a name in ``short`` is sent with a Content-Length larger than its body (a broken-off
    download)."""

    short: set[str] = set()

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        name = self.path.rsplit("/", 1)[-1]
        if name in self.short:
            body = b"1\tthe\tthe\tDET"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@contextlib.contextmanager
def serve(folder: Path, short: set[str] | None = None) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = type("Handler", (_Quiet,), {"short": set(short or ())})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fake_release(mirror: Path, treebank: str, release: str, files: dict[str, str]) -> Path:
    """Write ``files`` (name -> text) as ``mirror/<treebank>/r<release>/<name>``."""
    folder = mirror / treebank / f"r{release}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def ewt_r21_release(mirror: Path) -> Path:
    """UD English-EWT r2.1 under its release names (``en-ud-*.conllu``), from the embedded copy."""
    from subprobe.data.datasets import UD_ENGLISH_EWT

    embedded = UD_ENGLISH_EWT.embedded
    folder = mirror / "UD_English-EWT" / "r2.1"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        with lzma.open(embedded.path(split)) as fh:
            (folder / f"en-ud-{split}.conllu").write_bytes(fh.read())
    (folder / "LICENSE.txt").write_bytes((embedded.directory / "LICENSE.txt").read_bytes())
    return folder
