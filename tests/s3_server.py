"""An S3-compatible server on 127.0.0.1 for tests (moto in server mode), with a fresh bucket."""

from __future__ import annotations

import uuid


class S3Server:
    """``with S3Server(monkeypatch) as s3:``: ``s3.bucket``, ``s3.storage_options`` for fsspec, ``s3.fs()``.
    Credentials are moto's dummy ones, set in the test's environment only."""

    def __init__(self, monkeypatch):
        self._monkeypatch = monkeypatch
        self.bucket = f"vila-{uuid.uuid4().hex[:12]}"
        self._server = None
        self.endpoint = None

    def __enter__(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}.items():
            self._monkeypatch.setenv(k, v)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server._server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"
        self.fs().mkdir(self.bucket)
        return self

    @property
    def storage_options(self) -> dict:
        return {"client_kwargs": {"endpoint_url": self.endpoint}}

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)

    def __exit__(self, *exc) -> None:
        self._server.stop()
