"""Resumable downloads against a local HTTP server, and `dense data nyuv2`."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dense.cli import main
from dense.download import DownloadError, download


class Server:
    """Serves ``files`` on 127.0.0.1 with Range support; can cut a transfer in the middle."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: int | None = None  # bytes sent before dropping the next response
        self.honour_range = True
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.ranges.append(self.headers.get("Range"))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and server.honour_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                """Keep the test output quiet."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


PAYLOAD = bytes(range(256)) * 4000  # about 1 MB


def test_plain_download(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    path = download(server.url("/f.bin"), tmp_path / "f.bin", retries=0)
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "f.bin.part").exists()


def test_a_cut_transfer_keeps_its_part_and_resumes(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.cut_after = 300_000
    with pytest.raises(DownloadError, match="the same command resumes"):
        download(server.url("/f.bin"), tmp_path / "f.bin", retries=0)
    part = tmp_path / "f.bin.part"
    assert part.stat().st_size == 300_000
    download(server.url("/f.bin"), tmp_path / "f.bin", retries=0)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=300000-"]  # only the rest was sent again


def test_retries_resume_within_one_call(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.cut_after = 123_457
    download(server.url("/f.bin"), tmp_path / "f.bin", retries=2)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=123457-"]


def test_server_without_range_support_starts_over(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes")
    server.honour_range = False
    download(server.url("/f.bin"), tmp_path / "f.bin", retries=0)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_checksum(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    good = hashlib.sha256(PAYLOAD).hexdigest()
    download(server.url("/f.bin"), tmp_path / "a.bin", sha256=good, retries=0)
    with pytest.raises(DownloadError, match="SHA-256"):
        download(server.url("/f.bin"), tmp_path / "b.bin", sha256="0" * 64, retries=0)
    assert not (tmp_path / "b.bin").exists() and not (tmp_path / "b.bin.part").exists()


def test_not_found_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/missing"), tmp_path / "x", retries=5)
    assert server.ranges == [None]


def test_dense_data_nyuv2_downloads_and_verifies(server, tmp_path, capsys, nyu_mat):
    mat = nyu_mat.read_bytes()
    server.files["/nyu.mat"] = mat
    server.cut_after = len(mat) // 3
    root = tmp_path / "data"
    assert main(["data", "nyuv2", "--root", str(root), "--url", server.url("/nyu.mat")]) == 0
    assert (root / "nyu_depth_v2_labeled.mat").read_bytes() == mat
    out = capsys.readouterr().out
    assert "1449 samples, layout verified" in out
    assert hashlib.sha256(mat).hexdigest() in out
    # a second run finds the file and only verifies it
    assert main(["data", "nyuv2", "--root", str(root), "--url", server.url("/nyu.mat")]) == 0
    assert len(server.ranges) == 2


def test_dense_data_nyuv2_failures_say_where_to_put_the_file(server, tmp_path, capsys):
    root = tmp_path / "data"
    assert main(["data", "nyuv2", "--root", str(root), "--url", server.url("/none")]) == 2
    error = capsys.readouterr().err
    assert "HTTP 404" in error and "nyu_depth_v2_labeled.mat" in error
    assert str(root) in " ".join(error.split())
    server.files["/bad.mat"] = b"not an HDF5 file" * 100
    assert main(["data", "nyuv2", "--root", str(root), "--url", server.url("/bad.mat")]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_dense_data_finds_the_dataset_through_the_registry(tmp_path, capsys):
    assert main(["data", "synthetic", "--root", str(tmp_path / "x")]) == 2
    assert "dataset 'synthetic' has nothing to download" in capsys.readouterr().err
    assert main(["data", "nyu", "--root", str(tmp_path / "x")]) == 2
    assert "unknown dataset 'nyu'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
