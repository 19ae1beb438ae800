"""An S3-compatible server for the fleet tests: moto's, served by one
thread. moto's own launcher serves requests on threads, and two
create-only writes (If-None-Match: *) of the same key racing on two
threads can both succeed; handled one at a time, exactly one wins, as on
S3. The tests check that before relying on it.

Usage: python3 s3_server.py PORT  (prints "ready" once listening)."""

import os
import sys

from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        "127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler
    )
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
