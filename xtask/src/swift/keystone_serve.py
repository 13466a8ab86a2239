"""Serves Keystone's WSGI application on 127.0.0.1 (stdlib wsgiref, threaded)."""
import os, sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, WSGIRequestHandler, make_server

class Quiet(WSGIRequestHandler):
    def log_message(self, *a):
        pass

class Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True

port = int(sys.argv[1]); sys.argv = sys.argv[:1]
from keystone.server.wsgi import initialize_public_application
app = initialize_public_application()
make_server("127.0.0.1", port, app, server_class=Threading, handler_class=Quiet).serve_forever()
