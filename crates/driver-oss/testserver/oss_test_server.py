#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""OSS test server (signatures checked by oss2).

A small HTTP/1.1 server that answers the subset of the Aliyun OSS REST API used
by the storage driver (crates/driver-oss), with OSS's XML (no namespace), OSS's
x-oss-* headers and OSS's error XML.  Every request's signature is verified with
oss2's OWN signing code (oss2.auth.ProviderAuth / ProviderAuthV2 /
ProviderAuthV4, via their name-mangled ``__make_signature``), for header
signatures and presigned URLs, V1, V2 and V4.

This is a test server, not a re-implementation of OSS: see ``--help`` and the
README section of the driver for what it deliberately does not do.

Only the Python standard library plus oss2 (and oss2's own dependencies) are
used.  Start it with the python of a venv that has oss2 installed:

    python oss_test_server.py --port 0 --bucket test-bucket \
        --access-key-id AK --access-key-secret SK --data-dir /tmp/oss-data

It prints exactly one line ``READY <port>`` to stdout once it accepts
connections; everything else goes to stderr.
"""

import argparse
import base64
import binascii
import bisect
import email.utils
import hashlib
import hmac
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from oss2.auth import ProviderAuth, ProviderAuthV2, ProviderAuthV4
from oss2.credentials import Credentials, StaticCredentialsProvider
from oss2.http import CaseInsensitiveDict
from oss2.http import Request as Oss2Request
from oss2.utils import Crc64

CHUNK = 1024 * 1024
MAX_SKEW_SECONDS = 15 * 60
MIN_PART_SIZE = 100 * 1024
MAX_PART_NUMBER = 10000
MAX_KEYS_LIMIT = 1000
MAX_OBJECT_SIZE = 5 * 1024 * 1024 * 1024
MAX_XML_BODY = 16 * 1024 * 1024
MAX_V4_PRESIGN_EXPIRES = 7 * 24 * 3600
OWNER_ID = '1234567890123456'
OWNER_NAME = '1234567890123456'
# Standard headers stored with an object and returned by GET/HEAD.
STORED_HEADERS = ('cache-control', 'content-disposition', 'content-encoding', 'content-language', 'expires')
STORED_OSS_HEADERS = ('x-oss-server-side-encryption', 'x-oss-server-side-encryption-key-id',
                      'x-oss-server-side-data-encryption')
RESPONSE_OVERRIDES = {
    'response-content-type': 'Content-Type',
    'response-content-language': 'Content-Language',
    'response-expires': 'Expires',
    'response-cache-control': 'Cache-Control',
    'response-content-disposition': 'Content-Disposition',
    'response-content-encoding': 'Content-Encoding',
}
# Query parameters that name sub-resources this server does not implement.
UNSUPPORTED_SUBRESOURCES = (
    'acl', 'tagging', 'symlink', 'restore', 'versions', 'versionId', 'versioning', 'lifecycle', 'cors',
    'logging', 'website', 'referer', 'policy', 'encryption', 'x-oss-process', 'select', 'worm', 'inventory',
    'replication', 'callback', 'qos', 'live', 'stat', 'objectInfo', 'comp', 'cname', 'metaQuery',
)

_crc = Crc64(0)


def crc64_combine(crc1, crc2, len2):
    if len2 == 0:
        return crc1
    return _crc.combine(crc1, crc2, len2)


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def iso8601(ts):
    return time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime(ts))


def xml_text(s):
    """Escape text for XML element content."""
    s = s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
    # Characters that XML 1.0 cannot carry at all: use a character reference so
    # the response stays well-formed for lenient parsers (use encoding-type=url).
    return ''.join(c if (c >= ' ' or c in '\t\n\r') else '&#x%X;' % ord(c) for c in s)


def el(tag, text):
    return '<%s>%s</%s>' % (tag, xml_text(str(text)), tag)


def xml_doc(body):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode('utf-8')


def quoted_etag(etag):
    return '"%s"' % etag


class OssError(Exception):
    def __init__(self, status, code, message, headers=None, extra=None):
        Exception.__init__(self, '%s %s: %s' % (status, code, message))
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers or [])
        self.extra = list(extra or [])


class ClientGone(Exception):
    """The client closed the connection or sent a truncated body."""


# --------------------------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------------------------

class BodyReader(object):
    """Reads a Content-Length or chunked request body in pieces."""

    def __init__(self, rfile, length=None, chunked=False):
        self.rfile = rfile
        self.remaining = length if length is not None else 0
        self.chunked = chunked
        self.length = length  # None for chunked
        self.done = (not chunked) and self.remaining == 0
        self._chunk_left = 0

    def read(self, n=CHUNK):
        if self.done:
            return b''
        if not self.chunked:
            data = self.rfile.read(min(n, self.remaining))
            if not data:
                raise ClientGone('request body truncated')
            self.remaining -= len(data)
            if self.remaining == 0:
                self.done = True
            return data
        if self._chunk_left == 0:
            line = self.rfile.readline(65537)
            if not line:
                raise ClientGone('chunked body truncated')
            size_text = line.split(b';', 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise OssError(400, 'InvalidArgument', 'Invalid chunked transfer encoding.')
            if size == 0:
                while True:  # trailers
                    t = self.rfile.readline(65537)
                    if not t:
                        raise ClientGone('chunked body truncated')
                    if t in (b'\r\n', b'\n'):
                        break
                self.done = True
                return b''
            self._chunk_left = size
        data = self.rfile.read(min(n, self._chunk_left))
        if not data:
            raise ClientGone('chunked body truncated')
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            if self.rfile.readline(3) not in (b'\r\n', b'\n'):
                raise OssError(400, 'InvalidArgument', 'Invalid chunked transfer encoding.')
        return data

    def drain(self):
        while not self.done:
            self.read(CHUNK)

    def read_all(self, limit):
        parts = []
        total = 0
        while True:
            d = self.read(CHUNK)
            if not d:
                break
            total += len(d)
            if total > limit:
                self.drain()
                raise OssError(400, 'InvalidArgument', 'Request body is too large.')
            parts.append(d)
        return b''.join(parts)


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------

class ObjectMeta(object):
    __slots__ = ('path', 'size', 'etag', 'mtime', 'content_type', 'headers', 'user_meta', 'obj_type',
                 'crc', 'md5')

    def __init__(self, path, size, etag, mtime, content_type, headers, user_meta, obj_type, crc, md5=None):
        self.path = path
        self.size = size
        self.etag = etag            # without quotes
        self.mtime = mtime          # int seconds
        self.content_type = content_type
        self.headers = headers      # list of (name, value) for STORED_HEADERS / STORED_OSS_HEADERS
        self.user_meta = user_meta  # list of (lowercased x-oss-meta-* name, raw value)
        self.obj_type = obj_type    # Normal | Multipart | Appendable
        self.crc = crc              # crc64ecma of the whole object
        self.md5 = md5              # running md5 (appendable objects only)


class Part(object):
    __slots__ = ('number', 'path', 'size', 'etag', 'mtime', 'crc', 'md5')

    def __init__(self, number, path, size, etag, mtime, crc, md5):
        self.number = number
        self.path = path
        self.size = size
        self.etag = etag
        self.mtime = mtime
        self.crc = crc
        self.md5 = md5  # binary digest


class Upload(object):
    def __init__(self, upload_id, key, initiated, content_type, headers, user_meta):
        self.upload_id = upload_id
        self.key = key
        self.initiated = initiated
        self.content_type = content_type
        self.headers = headers
        self.user_meta = user_meta
        self.parts = {}
        self.lock = threading.Lock()
        self.finished = False


class BucketState(object):
    def __init__(self, name, created):
        self.name = name
        self.created = created
        self.objects = {}      # key -> ObjectMeta
        self.keys = []         # sorted list of utf-8 encoded keys
        self.uploads = {}      # upload id -> Upload


class Store(object):
    def __init__(self, data_dir, bucket_names):
        self.data_dir = os.path.abspath(data_dir)
        self.obj_dir = os.path.join(self.data_dir, 'objects')
        self.part_dir = os.path.join(self.data_dir, 'parts')
        self.tmp_dir = os.path.join(self.data_dir, 'tmp')
        for d in (self.obj_dir, self.part_dir, self.tmp_dir):
            os.makedirs(d, exist_ok=True)
        self.lock = threading.RLock()
        now = int(time.time())
        self.buckets = dict((n, BucketState(n, now)) for n in bucket_names)
        self._upload_counter = 0

    def tmp_path(self):
        return os.path.join(self.tmp_dir, uuid.uuid4().hex)

    def new_object_path(self):
        return os.path.join(self.obj_dir, uuid.uuid4().hex)

    def new_part_path(self):
        return os.path.join(self.part_dir, uuid.uuid4().hex)

    def new_upload_id(self):
        with self.lock:
            self._upload_counter += 1
            c = self._upload_counter
        return '%016X%08X%08X' % (int(time.time() * 1000000), c, int.from_bytes(os.urandom(4), 'big'))

    @staticmethod
    def unlink(path):
        try:
            os.unlink(path)
        except OSError:
            pass

    # caller holds self.lock
    def install(self, b, key, meta):
        old = b.objects.get(key)
        b.objects[key] = meta
        if old is None:
            bisect.insort(b.keys, key.encode('utf-8'))
        elif old.path != meta.path:
            self.unlink(old.path)

    # caller holds self.lock
    def remove(self, b, key):
        old = b.objects.pop(key, None)
        if old is None:
            return False
        kb = key.encode('utf-8')
        i = bisect.bisect_left(b.keys, kb)
        if i < len(b.keys) and b.keys[i] == kb:
            del b.keys[i]
        self.unlink(old.path)
        return True


def prefix_successor(b):
    """Smallest byte string greater than every string that starts with b (None if none)."""
    b = bytearray(b)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return None
    b[-1] += 1
    return bytes(b)


def list_entries(keys, prefix, delimiter, marker, limit):
    """Walk sorted keys (bytes) after marker, grouping by delimiter.

    Returns ([('k'|'p', bytes)], truncated)."""
    if limit <= 0:
        return [], False
    pb, db, mb = prefix, delimiter, marker
    i = bisect.bisect_left(keys, pb)
    if mb:
        i = max(i, bisect.bisect_right(keys, mb))
    out = []
    n = len(keys)
    while i < n:
        kb = keys[i]
        if not kb.startswith(pb):
            break
        if db:
            j = kb.find(db, len(pb))
            if j >= 0:
                cp = kb[:j + len(db)]
                succ = prefix_successor(cp)
                nxt = n if succ is None else bisect.bisect_left(keys, succ)
                if mb and cp <= mb:
                    i = nxt
                    continue
                if len(out) >= limit:
                    return out, True
                out.append(('p', cp))
                i = nxt
                continue
        if len(out) >= limit:
            return out, True
        out.append(('k', kb))
        i += 1
    return out, False


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------

class Stats(object):
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.ops = {}
            self.auth_versions = {}
            self.errors = {}
            self.auth_failures = {}
            self.signature_failures = 0
            self.requests = 0

    def op(self, name):
        with self.lock:
            self.ops[name] = self.ops.get(name, 0) + 1

    def request(self):
        with self.lock:
            self.requests += 1

    def auth_version(self, name):
        with self.lock:
            self.auth_versions[name] = self.auth_versions.get(name, 0) + 1

    def error(self, code):
        with self.lock:
            self.errors[code] = self.errors.get(code, 0) + 1

    def auth_failure(self, code, signature):
        with self.lock:
            self.auth_failures[code] = self.auth_failures.get(code, 0) + 1
            if signature:
                self.signature_failures += 1

    def snapshot(self):
        with self.lock:
            return {
                'ops': dict(self.ops),
                'signature_failures': self.signature_failures,
                'auth_failures': dict(self.auth_failures),
                'auth_versions': dict(self.auth_versions),
                'errors': dict(self.errors),
                'requests': self.requests,
            }


# --------------------------------------------------------------------------------------------
# Signature verification (oss2's code)
# --------------------------------------------------------------------------------------------

class AuthFailure(OssError):
    def __init__(self, status, code, message, signature=False, extra=None, headers=None):
        OssError.__init__(self, status, code, message, headers=headers, extra=extra)
        self.signature = signature


def _parse_http_date(s):
    try:
        dt = email.utils.parsedate_to_datetime(s)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _parse_iso_basic(s):
    try:
        return datetime.strptime(s, '%Y%m%dT%H%M%SZ').replace(tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def _skew_error(request_ts, now):
    return AuthFailure(403, 'RequestTimeTooSkewed',
                       'The difference between the request time and the current time is too large.',
                       extra=[('RequestTime', http_date(request_ts)), ('ServerTime', http_date(now)),
                              ('MaxAllowedSkewMilliseconds', str(MAX_SKEW_SECONDS * 1000))])


def _printable(b):
    if isinstance(b, bytes):
        return b.decode('utf-8', 'replace')
    return b


class Verifier(object):
    """Verifies a request's signature with oss2's signing code."""

    def __init__(self, cfg):
        self.cfg = cfg

    def _check_identity(self, ak, token):
        cfg = self.cfg
        if ak != cfg.access_key_id:
            raise AuthFailure(403, 'InvalidAccessKeyId',
                              'The OSS Access Key Id you provided does not exist in our records.',
                              extra=[('OSSAccessKeyId', ak)])
        if cfg.security_token:
            if not token:
                raise AuthFailure(403, 'InvalidAccessKeyId',
                                  'The OSS Access Key Id you provided does not exist in our records '
                                  '(this access key is an STS key: a security token is required).',
                                  extra=[('OSSAccessKeyId', ak)])
            if token != cfg.security_token:
                raise AuthFailure(403, 'InvalidSecurityToken', 'The security token you provided is invalid.')
        elif token:
            raise AuthFailure(403, 'InvalidAccessKeyId',
                              'The OSS Access Key Id you provided does not exist in our records '
                              '(a security token was sent, but this access key is not an STS key).',
                              extra=[('OSSAccessKeyId', ak)])
        return Credentials(ak, cfg.access_key_secret, token or '')

    @staticmethod
    def _request(method, params, headers, region=None):
        req = Oss2Request(method, 'http://oss-test-server.invalid/', params=dict(params),
                          region=region, product='oss', cloudbox_id=None)
        # exactly the headers the client sent (oss2.http.Request adds User-Agent etc.)
        req.headers = headers
        return req

    @staticmethod
    def _mismatch(provided, ak, string_to_sign, canonical_request=None):
        extra = [('OSSAccessKeyId', ak), ('SignatureProvided', provided)]
        if canonical_request is not None:
            extra.append(('CanonicalRequest', _printable(canonical_request)))
        extra.append(('StringToSign', _printable(string_to_sign)))
        if isinstance(string_to_sign, str):
            string_to_sign = string_to_sign.encode('utf-8')
        extra.append(('StringToSignBytes', ' '.join('%02x' % c for c in string_to_sign)))
        return AuthFailure(403, 'SignatureDoesNotMatch',
                           'The request signature we calculated does not match the signature you provided. '
                           'Check your key and signing method.', signature=True, extra=extra)

    def verify(self, method, bucket, key, params, headers, auth_header):
        """Returns the auth version name; raises AuthFailure."""
        now = time.time()
        if auth_header:
            scheme, _, rest = auth_header.strip().partition(' ')
            if scheme == 'OSS':
                self._v1_header(method, bucket, key, params, headers, rest, now)
                return 'v1'
            if scheme == 'OSS2':
                self._v2_header(method, bucket, key, params, headers, rest, now)
                return 'v2'
            if scheme == 'OSS4-HMAC-SHA256':
                self._v4_header(method, bucket, key, params, headers, rest, now)
                return 'v4'
            raise AuthFailure(400, 'InvalidArgument', 'Authorization header is invalid.',
                              extra=[('ArgumentName', 'Authorization'), ('ArgumentValue', auth_header)])
        if 'OSSAccessKeyId' in params:
            self._v1_query(method, bucket, key, params, headers, now)
            return 'v1-presigned'
        version = params.get('x-oss-signature-version')
        if version == 'OSS4-HMAC-SHA256':
            self._v4_query(method, bucket, key, params, headers, now)
            return 'v4-presigned'
        if version == 'OSS2':
            self._v2_query(method, bucket, key, params, headers, now)
            return 'v2-presigned'
        if 'Signature' in params or 'x-oss-signature' in params:
            raise AuthFailure(403, 'AccessDenied', 'The presigned URL is missing required parameters.')
        raise AuthFailure(403, 'AccessDenied',
                          'AccessDenied: anonymous access is not allowed (this test server requires a signature).')

    # ---- V1 ---------------------------------------------------------------------------------
    def _v1_header(self, method, bucket, key, params, headers, rest, now):
        ak, sep, sig = rest.strip().rpartition(':')
        if not sep or not ak or not sig:
            raise AuthFailure(400, 'InvalidArgument', 'Authorization header is invalid.')
        date = headers.get('x-oss-date') or headers.get('date')
        if not date:
            raise AuthFailure(403, 'AccessDenied', 'Missing Date header (or x-oss-date) for a signed request.')
        ts = _parse_http_date(date)
        if ts is None:
            ts = _parse_iso_basic(date)
        if ts is None:
            raise AuthFailure(403, 'AccessDenied', 'Invalid Date header: %s' % date)
        if abs(now - ts) > MAX_SKEW_SECONDS:
            raise _skew_error(ts, now)
        creds = self._check_identity(ak, headers.get('x-oss-security-token'))
        self._v1_check(method, bucket, key, params, headers, creds, sig)

    @staticmethod
    def _presigned_until(params, sig_key, exp_key, now):
        """The signature and expiry (Unix seconds) of a presigned URL; refuses a missing,
        malformed or past expiry as OSS does."""
        sig = params.get(sig_key)
        expires = params.get(exp_key)
        if not sig or expires is None:
            raise AuthFailure(403, 'AccessDenied', f'The presigned URL is missing {exp_key} or {sig_key}.')
        try:
            exp = int(expires)
        except ValueError:
            raise AuthFailure(403, 'AccessDenied', f'Invalid {exp_key} parameter in the presigned URL.')
        if now > exp:
            raise AuthFailure(403, 'AccessDenied', 'Request has expired.',
                              extra=[('Expires', http_date(exp)), ('ServerTime', http_date(now))])
        return sig, exp

    def _v1_query(self, method, bucket, key, params, headers, now):
        ak = params.get('OSSAccessKeyId', '')
        sig, exp = self._presigned_until(params, 'Signature', 'Expires', now)
        creds = self._check_identity(ak, params.get('security-token'))
        h = CaseInsensitiveDict(headers)
        h['date'] = params['Expires']  # oss2 _sign_url puts the expiry time in the 'date' slot
        p = [(k, v) for k, v in params.items() if k != 'Signature']
        self._v1_check(method, bucket, key, p, h, creds, sig)

    def _v1_check(self, method, bucket, key, params, headers, creds, sig):
        auth = ProviderAuth(StaticCredentialsProvider(creds.access_key_id, creds.access_key_secret,
                                                      creds.security_token))
        req = self._request(method, params, headers)
        try:
            expected = auth._ProviderAuth__make_signature(req, bucket, key, creds)
        except (AttributeError, UnicodeError, TypeError):
            expected = None
        if expected is None or not hmac.compare_digest(expected.encode(), sig.encode()):
            try:
                sts = auth._ProviderAuth__get_bytes_to_sign(req, bucket, key)
            except Exception:  # pragma: no cover
                sts = b'<unavailable>'
            raise self._mismatch(sig, creds.access_key_id, sts)

    # ---- V2 ---------------------------------------------------------------------------------
    def _v2_header(self, method, bucket, key, params, headers, rest, now):
        fields = {}
        for item in rest.split(','):
            k, _, v = item.strip().partition(':')
            fields[k.strip()] = v.strip()
        ak = fields.get('AccessKeyId')
        sig = fields.get('Signature')
        if not ak or not sig:
            raise AuthFailure(400, 'InvalidArgument', 'Authorization header is invalid.')
        additional = [h.strip().lower() for h in fields.get('AdditionalHeaders', '').split(';') if h.strip()]
        date = headers.get('date')
        ts = _parse_http_date(date) if date else None
        if ts is None:
            raise AuthFailure(403, 'AccessDenied', 'Missing or invalid Date header for a signed request.')
        if abs(now - ts) > MAX_SKEW_SECONDS:
            raise _skew_error(ts, now)
        creds = self._check_identity(ak, headers.get('x-oss-security-token'))
        self._v2_check(method, bucket, key, params, headers, additional, creds, sig)

    def _v2_query(self, method, bucket, key, params, headers, now):
        ak = params.get('x-oss-access-key-id', '')
        sig, exp = self._presigned_until(params, 'x-oss-signature', 'x-oss-expires', now)
        additional = [h.strip().lower() for h in params.get('x-oss-additional-headers', '').split(';') if h.strip()]
        creds = self._check_identity(ak, params.get('security-token'))
        h = CaseInsensitiveDict(headers)
        h['date'] = params['x-oss-expires']
        p = [(k, v) for k, v in params.items() if k != 'x-oss-signature']
        self._v2_check(method, bucket, key, p, h, additional, creds, sig)

    def _v2_check(self, method, bucket, key, params, headers, additional, creds, sig):
        auth = ProviderAuthV2(StaticCredentialsProvider(creds.access_key_id, creds.access_key_secret,
                                                        creds.security_token))
        req = self._request(method, params, headers)
        try:
            expected = auth._ProviderAuthV2__make_signature(req, bucket, key, additional, creds)
        except (AttributeError, UnicodeError, TypeError):
            expected = None
        if expected is None or not hmac.compare_digest(expected.encode(), sig.encode()):
            try:
                sts = auth._ProviderAuthV2__get_bytes_to_sign(req, bucket, key, additional)
            except Exception:  # pragma: no cover
                sts = b'<unavailable>'
            raise self._mismatch(sig, creds.access_key_id, sts)

    # ---- V4 ---------------------------------------------------------------------------------
    def _parse_credential(self, credential):
        parts = credential.split('/')
        if len(parts) != 5 or parts[3] != 'oss' or parts[4] != 'aliyun_v4_request' or not parts[0]:
            raise AuthFailure(400, 'InvalidArgument', 'Invalid credential: %s' % credential,
                              extra=[('ArgumentName', 'Credential'), ('ArgumentValue', credential)])
        ak, cdate, region = parts[0], parts[1], parts[2]
        if self.cfg.region and region != self.cfg.region:
            raise AuthFailure(403, 'SignatureDoesNotMatch',
                              'Invalid signing region in the credential scope: got %r, this server is %r.'
                              % (region, self.cfg.region), signature=True)
        return ak, cdate, region

    def _v4_header(self, method, bucket, key, params, headers, rest, now):
        fields = {}
        for item in rest.split(','):
            k, _, v = item.strip().partition('=')
            fields[k.strip()] = v.strip()
        credential = fields.get('Credential')
        sig = fields.get('Signature')
        if not credential or not sig:
            raise AuthFailure(400, 'InvalidArgument', 'Authorization header is invalid.')
        additional = [h.strip().lower() for h in fields.get('AdditionalHeaders', '').split(';') if h.strip()]
        ak, cdate, region = self._parse_credential(credential)
        xdate = headers.get('x-oss-date')
        if not xdate:
            raise AuthFailure(403, 'AccessDenied', 'Missing x-oss-date header for a V4 signed request.')
        ts = _parse_iso_basic(xdate)
        if ts is None:
            raise AuthFailure(403, 'AccessDenied', 'Invalid x-oss-date header: %s' % xdate)
        if abs(now - ts) > MAX_SKEW_SECONDS:
            raise _skew_error(ts, now)
        if xdate[:8] != cdate:
            raise AuthFailure(403, 'SignatureDoesNotMatch',
                              'The date in the credential scope (%s) does not match x-oss-date (%s).'
                              % (cdate, xdate), signature=True)
        creds = self._check_identity(ak, headers.get('x-oss-security-token'))
        self._v4_check(method, bucket, key, params, headers, additional, creds, sig, region, xdate)

    def _v4_query(self, method, bucket, key, params, headers, now):
        credential = params.get('x-oss-credential')
        xdate = params.get('x-oss-date')
        expires = params.get('x-oss-expires')
        sig = params.get('x-oss-signature')
        if not credential or not xdate or expires is None or not sig:
            raise AuthFailure(403, 'AccessDenied', 'The presigned URL is missing x-oss-credential, x-oss-date, '
                                                   'x-oss-expires or x-oss-signature.')
        ak, cdate, region = self._parse_credential(credential)
        ts = _parse_iso_basic(xdate)
        if ts is None:
            raise AuthFailure(403, 'AccessDenied', 'Invalid x-oss-date parameter: %s' % xdate)
        try:
            exp = int(expires)
        except ValueError:
            exp = -1
        if exp <= 0 or exp > MAX_V4_PRESIGN_EXPIRES:
            raise AuthFailure(400, 'InvalidArgument', 'x-oss-expires must be between 1 and %d seconds.'
                              % MAX_V4_PRESIGN_EXPIRES,
                              extra=[('ArgumentName', 'x-oss-expires'), ('ArgumentValue', expires)])
        if now > ts + exp:
            raise AuthFailure(403, 'AccessDenied', 'Request has expired.',
                              extra=[('Expires', http_date(ts + exp)), ('ServerTime', http_date(now))])
        if ts > now + MAX_SKEW_SECONDS:
            raise _skew_error(ts, now)
        if xdate[:8] != cdate:
            raise AuthFailure(403, 'SignatureDoesNotMatch',
                              'The date in the credential scope (%s) does not match x-oss-date (%s).'
                              % (cdate, xdate), signature=True)
        additional = [h.strip().lower() for h in params.get('x-oss-additional-headers', '').split(';') if h.strip()]
        creds = self._check_identity(ak, params.get('x-oss-security-token'))
        p = [(k, v) for k, v in params.items() if k != 'x-oss-signature']
        self._v4_check(method, bucket, key, p, headers, additional, creds, sig, region, xdate)

    def _v4_check(self, method, bucket, key, params, headers, additional, creds, sig, region, xdate):
        auth = ProviderAuthV4(StaticCredentialsProvider(creds.access_key_id, creds.access_key_secret,
                                                        creds.security_token))
        req = self._request(method, params, headers, region=region)
        try:
            expected = auth._ProviderAuthV4__make_signature(req, bucket, key, additional, creds, xdate)
        except (AttributeError, UnicodeError, TypeError):
            expected = None
        if expected is None or not hmac.compare_digest(expected.encode(), sig.lower().encode()):
            try:
                canonical = auth._ProviderAuthV4__get_canonical_request_bytes(req, bucket, key, additional)
                sts = auth._ProviderAuthV4__get_string_to_sign_bytes(req, canonical, xdate)
            except Exception:  # pragma: no cover
                canonical, sts = b'<unavailable>', b'<unavailable>'
            raise self._mismatch(sig, creds.access_key_id, sts, canonical_request=canonical)


# --------------------------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------------------------

def _header_for_signing(name, value):
    """http.server decodes header bytes as latin-1; oss2 signs utf-8 text."""
    raw = value.encode('latin-1', 'replace')
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        if name.lower() in ('content-type', 'content-md5', 'date'):
            return value
        return raw  # oss2's to_bytes() passes bytes through unchanged


def _is_ip(host):
    try:
        ipaddress.ip_address(host.strip('[]'))
        return True
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'AliyunOSS'
    sys_version = ''
    timeout = 600
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK add 40 ms to every small answer.
    disable_nagle_algorithm = True

    def version_string(self):
        return 'AliyunOSS'

    def log_message(self, fmt, *args):
        if self.server.cfg.verbose:
            sys.stderr.write('%s - [%s] %s\n' % (self.address_string(), self.log_date_time_string(), fmt % args))

    def log_error(self, fmt, *args):
        sys.stderr.write('oss-test-server: ' + (fmt % args) + '\n')

    def vlog(self, msg):
        if self.server.cfg.verbose:
            sys.stderr.write('oss-test-server: [%s] %s\n' % (self.request_id, msg))

    # All methods share one entry point.
    def do_GET(self):
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def do_OPTIONS(self):
        self._handle()

    # ---- plumbing ------------------------------------------------------------------------------
    def _prepare_body(self):
        te = self.headers.get('Transfer-Encoding')
        cl = self.headers.get('Content-Length')
        if te and te.strip().lower() != 'identity':
            if te.strip().lower().endswith('chunked'):
                self.body = BodyReader(self.rfile, chunked=True)
                self.has_length = True
                return
            self.close_connection = True
            self.body = BodyReader(self.rfile, 0)
            raise OssError(501, 'NotImplemented', 'Transfer-Encoding %s is not supported.' % te)
        if cl is not None:
            try:
                n = int(cl.strip())
                if n < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                self.body = BodyReader(self.rfile, 0)
                raise OssError(400, 'InvalidArgument', 'Invalid Content-Length.')
            self.body = BodyReader(self.rfile, n)
            self.has_length = True
        else:
            self.body = BodyReader(self.rfile, 0)
            self.has_length = False

    def _drain(self):
        body = getattr(self, 'body', None)
        if body is None or body.done:
            return
        try:
            body.drain()
        except (ClientGone, OssError, OSError):
            self.close_connection = True

    def _start(self, status, headers, length):
        self._drain()
        self.send_response(status)
        self.send_header('x-oss-request-id', self.request_id)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header('Content-Length', str(length))
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()
        self.response_started = True

    def _send(self, status, headers=(), body=b''):
        head = self.command == 'HEAD'
        self._start(status, list(headers), 0 if head and status >= 300 else len(body))
        if body and not head:
            self.wfile.write(body)

    def _send_xml(self, status, xml_body, headers=()):
        hdrs = [('Content-Type', 'application/xml')] + list(headers)
        self._send(status, hdrs, xml_doc(xml_body))

    def _send_error(self, e):
        extra = ''.join(el(k, v) for k, v in e.extra)
        body = xml_doc('<Error>' + el('Code', e.code) + el('Message', e.message) + el('RequestId', self.request_id)
                       + el('HostId', self.host_id) + extra + '</Error>\n')
        hdrs = [('Content-Type', 'application/xml')] + e.headers
        self.server.stats.error(e.code)
        self.vlog('-> %d %s: %s' % (e.status, e.code, e.message))
        if self.command == 'HEAD' or e.status == 304:
            if self.command == 'HEAD':
                hdrs.append(('x-oss-err', base64.b64encode(body).decode('ascii')))
            self._start(e.status, hdrs, 0)
        else:
            self._start(e.status, hdrs, len(body))
            self.wfile.write(body)

    def _handle(self):
        self.request_id = uuid.uuid4().hex[:24].upper()
        self.host_id = self.headers.get('Host', 'localhost')
        self.response_started = False
        self.body = None
        stats = self.server.stats
        try:
            self._prepare_body()
            target = self.path
            if target.startswith('http://') or target.startswith('https://'):
                sp = urlsplit(target)
                target = sp.path + ('?' + sp.query if sp.query else '')
            raw_path, _, raw_query = target.partition('?')
            if raw_path in ('/__stats', '/__reset_stats'):
                self._control(raw_path)
                return
            stats.request()
            try:
                path = unquote(raw_path, encoding='utf-8', errors='strict')
            except UnicodeDecodeError:
                raise OssError(400, 'InvalidURI', 'The request path is not valid UTF-8 after percent-decoding.')
            try:
                params = dict(parse_qsl(raw_query, keep_blank_values=True, encoding='utf-8', errors='strict'))
            except (UnicodeDecodeError, ValueError):
                raise OssError(400, 'InvalidURI', 'The query string is not valid UTF-8 after percent-decoding.')
            bucket, key = self._resolve(path)
            headers = CaseInsensitiveDict()
            seen = set()
            for name in self.headers.keys():
                ln = name.lower()
                if ln in seen or ln == 'authorization':
                    continue
                seen.add(ln)
                headers[name] = _header_for_signing(name, ','.join(self.headers.get_all(name)))
            try:
                version = Verifier(self.server.cfg).verify(self.command, bucket, key, params, headers,
                                                           self.headers.get('Authorization'))
            except AuthFailure as e:
                stats.auth_failure(e.code, e.signature)
                raise
            stats.auth_version(version)
            self.vlog('%s %s (bucket=%r key=%r auth=%s)' % (self.command, self.path, bucket, key, version))
            self._dispatch(bucket, key, params)
        except OssError as e:
            if self.response_started:
                self.close_connection = True
                return
            self._send_error(e)
        except (ClientGone, ConnectionError, socket.timeout) as e:
            self.vlog('client gone: %s' % e)
            self.close_connection = True
        except Exception:
            traceback.print_exc(file=sys.stderr)
            if self.response_started:
                self.close_connection = True
                return
            self.close_connection = True
            try:
                self._send_error(OssError(500, 'InternalError', 'We encountered an internal error. Please try again.'))
            except Exception:
                pass

    def _control(self, path):
        stats = self.server.stats
        if path == '/__stats' and self.command == 'GET':
            body = json.dumps(stats.snapshot(), sort_keys=True).encode('utf-8')
            self._send(200, [('Content-Type', 'application/json')], body)
        elif path == '/__reset_stats' and self.command == 'POST':
            stats.reset()
            self._send(204)
        else:
            raise OssError(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.')

    def _resolve(self, path):
        if not path.startswith('/'):
            raise OssError(400, 'InvalidURI', 'Invalid request path.')
        host = self.headers.get('Host', '')
        if host.startswith('['):
            hostname = host.split(']')[0] + ']'
        else:
            hostname = host.rsplit(':', 1)[0] if ':' in host else host
        store = self.server.store
        if hostname and '.' in hostname and not _is_ip(hostname):
            first = hostname.split('.', 1)[0]
            if first in store.buckets:
                return first, path[1:]
        rest = path[1:]
        if not rest:
            return '', ''
        bucket, _, key = rest.partition('/')
        return bucket, key

    # ---- dispatch ------------------------------------------------------------------------------
    def _dispatch(self, bucket, key, params):
        m = self.command
        store = self.server.store
        if not bucket:
            if m == 'GET':
                return self._op('ListBuckets', self.list_buckets)
            raise OssError(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.')
        b = store.buckets.get(bucket)
        if b is None:
            raise OssError(404, 'NoSuchBucket', 'The specified bucket does not exist.',
                           extra=[('BucketName', bucket)])
        for p in UNSUPPORTED_SUBRESOURCES:
            if p in params:
                raise OssError(501, 'NotImplemented', 'Sub-resource %r is not implemented by this test server.' % p)
        if key == '':
            if m == 'GET':
                if 'bucketInfo' in params:
                    return self._op('GetBucketInfo', self.get_bucket_info, b)
                if 'location' in params:
                    return self._op('GetBucketLocation', self.get_bucket_location, b)
                if 'uploads' in params:
                    return self._op('ListMultipartUploads', self.list_multipart_uploads, b, params)
                if params.get('list-type') == '2':
                    return self._op('ListObjectsV2', self.list_objects, b, params, True)
                return self._op('ListObjects', self.list_objects, b, params, False)
            if m == 'HEAD':
                return self._op('HeadBucket', lambda: self._send(200))
            if m == 'POST' and 'delete' in params:
                return self._op('DeleteMultipleObjects', self.delete_multiple, b, params)
            raise OssError(501, 'NotImplemented', 'Bucket-level %s is not implemented by this test server.' % m)
        self._check_key(key)
        if m == 'PUT':
            if 'uploadId' in params or 'partNumber' in params:
                if self.headers.get('x-oss-copy-source') is not None:
                    return self._op('UploadPartCopy', self.upload_part_copy, b, key, params)
                return self._op('UploadPart', self.upload_part, b, key, params)
            if self.headers.get('x-oss-copy-source') is not None:
                return self._op('CopyObject', self.copy_object, b, key)
            return self._op('PutObject', self.put_object, b, key)
        if m == 'GET':
            if 'uploadId' in params:
                return self._op('ListParts', self.list_parts, b, key, params)
            return self._op('GetObject', self.get_object, b, key, params, False)
        if m == 'HEAD':
            if 'objectMeta' in params:
                return self._op('GetObjectMeta', self.get_object_meta, b, key)
            return self._op('HeadObject', self.get_object, b, key, params, True)
        if m == 'DELETE':
            if 'uploadId' in params:
                return self._op('AbortMultipartUpload', self.abort_upload, b, key, params)
            return self._op('DeleteObject', self.delete_object, b, key)
        if m == 'POST':
            if 'uploads' in params:
                return self._op('InitiateMultipartUpload', self.initiate_upload, b, key, params)
            if 'uploadId' in params:
                return self._op('CompleteMultipartUpload', self.complete_upload, b, key, params)
            if 'append' in params:
                return self._op('AppendObject', self.append_object, b, key, params)
            raise OssError(501, 'NotImplemented', 'This POST request is not implemented by this test server.')
        raise OssError(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.')

    def _op(self, name, fn, *args):
        self.server.stats.op(name)
        return fn(*args)

    @staticmethod
    def _check_key(key):
        kb = key.encode('utf-8')
        if len(kb) > 1023:
            raise OssError(400, 'InvalidObjectName', 'The length of the object name must be 1 to 1023 bytes.')
        if key.startswith('/') or key.startswith('\\'):
            raise OssError(400, 'InvalidObjectName', 'The object name must not start with "/" or "\\".')

    # ---- helpers ---------------------------------------------------------------------------------
    def _forbid_overwrite(self, b, key):
        v = self.headers.get('x-oss-forbid-overwrite', '')
        if v.strip().lower() == 'true':
            with self.server.store.lock:
                if key in b.objects:
                    raise OssError(409, 'FileAlreadyExists', 'The object you specified already exists and can not '
                                                              'be overwritten.')

    def _meta_from_request(self):
        content_type = self.headers.get('Content-Type') or 'application/octet-stream'
        headers = []
        for h in STORED_HEADERS + STORED_OSS_HEADERS:
            v = self.headers.get(h)
            if v is not None:
                headers.append((h, v))
        sse = self.headers.get('x-oss-server-side-encryption')
        if sse is not None and sse not in ('AES256', 'KMS', 'SM4'):
            raise OssError(400, 'InvalidEncryptionAlgorithmError',
                           'The Encryption request you specified is not valid. Supported value: AES256/KMS/SM4')
        user_meta = []
        for name in self.headers.keys():
            ln = name.lower()
            if ln.startswith('x-oss-meta-'):
                user_meta.append((ln, ','.join(self.headers.get_all(name))))
        size = sum(len(k) + len(v) for k, v in user_meta)
        if size > 8 * 1024:
            raise OssError(400, 'InvalidArgument', 'The user metadata is larger than 8 KB.')
        return content_type, headers, user_meta

    def _content_md5(self):
        v = self.headers.get('Content-MD5')
        if v is None:
            return None
        try:
            d = base64.b64decode(v.strip(), validate=True)
        except (binascii.Error, ValueError):
            d = b''
        if len(d) != 16:
            raise OssError(400, 'InvalidDigest', 'The Content-MD5 you specified is not valid.')
        return d

    def _receive_to_file(self, path, limit, fobj_mode='wb'):
        """Streams the request body to path. Returns (size, md5 object, crc)."""
        md5 = hashlib.md5()
        crc = Crc64(0)
        size = 0
        with open(path, fobj_mode) as f:
            while True:
                d = self.body.read(CHUNK)
                if not d:
                    break
                size += len(d)
                if size > limit:
                    f.close()
                    Store.unlink(path)
                    self._drain()
                    raise OssError(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size.')
                f.write(d)
                md5.update(d)
                crc.update(d)
        return size, md5, crc.crc

    def _receive_body(self, limit):
        if not self.has_length and self.command in ('PUT', 'POST'):
            raise OssError(411, 'MissingContentLength', 'You must provide the Content-Length HTTP header.')
        want_md5 = self._content_md5()
        store = self.server.store
        tmp = store.tmp_path()
        try:
            size, md5, crc = self._receive_to_file(tmp, limit)
        except BaseException:
            Store.unlink(tmp)
            raise
        if want_md5 is not None and md5.digest() != want_md5:
            Store.unlink(tmp)
            raise OssError(400, 'InvalidDigest', 'The Content-MD5 you specified did not match what we received.')
        return tmp, size, md5, crc

    def _object_headers(self, meta, params=None):
        h = [('Content-Type', meta.content_type),
             ('ETag', quoted_etag(meta.etag)),
             ('Last-Modified', http_date(meta.mtime)),
             ('Accept-Ranges', 'bytes'),
             ('x-oss-object-type', meta.obj_type),
             ('x-oss-storage-class', 'Standard'),
             ('x-oss-hash-crc64ecma', str(meta.crc))]
        h.extend((k.title() if not k.startswith('x-oss-') else k, v) for k, v in meta.headers)
        h.extend(meta.user_meta)
        if meta.obj_type == 'Appendable':
            h.append(('x-oss-next-append-position', str(meta.size)))
        if params:
            overrides = dict((RESPONSE_OVERRIDES[k], v) for k, v in params.items() if k in RESPONSE_OVERRIDES)
            if overrides:
                lower = set(k.lower() for k in overrides)
                h = [(k, v) for k, v in h if k.lower() not in lower] + list(overrides.items())
        return h

    def _lookup(self, b, key):
        with self.server.store.lock:
            meta = b.objects.get(key)
        if meta is None:
            raise OssError(404, 'NoSuchKey', 'The specified key does not exist.', extra=[('Key', key)])
        return meta

    def _parse_copy_source(self):
        src = self.headers.get('x-oss-copy-source', '')
        raw = src.strip()
        if not raw.startswith('/'):
            raise OssError(400, 'InvalidArgument', 'x-oss-copy-source must be /<bucket>/<url-encoded key>.',
                           extra=[('ArgumentName', 'x-oss-copy-source'), ('ArgumentValue', src)])
        raw, _, query = raw.partition('?')
        if query:
            q = dict(parse_qsl(query, keep_blank_values=True))
            if 'versionId' in q:
                raise OssError(501, 'NotImplemented', 'Copying a versionId is not implemented by this test server.')
        try:
            decoded = unquote(raw[1:], encoding='utf-8', errors='strict')
        except UnicodeDecodeError:
            raise OssError(400, 'InvalidArgument', 'x-oss-copy-source is not valid UTF-8.')
        sbucket, sep, skey = decoded.partition('/')
        if not sep or not sbucket or not skey:
            raise OssError(400, 'InvalidArgument', 'x-oss-copy-source must be /<bucket>/<url-encoded key>.',
                           extra=[('ArgumentName', 'x-oss-copy-source'), ('ArgumentValue', src)])
        store = self.server.store
        sb = store.buckets.get(sbucket)
        if sb is None:
            raise OssError(404, 'NoSuchBucket', 'The specified bucket does not exist.', extra=[('BucketName', sbucket)])
        return sb, skey

    def _copy_preconditions(self, meta):
        im = self.headers.get('x-oss-copy-source-if-match')
        if im is not None and im.strip().strip('"').upper() != meta.etag.upper():
            raise OssError(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold.')
        inm = self.headers.get('x-oss-copy-source-if-none-match')
        if inm is not None and inm.strip().strip('"').upper() == meta.etag.upper():
            raise OssError(304, 'NotModified', 'The source object was not modified.')
        ius = self.headers.get('x-oss-copy-source-if-unmodified-since')
        if ius is not None:
            t = _parse_http_date(ius)
            if t is not None and meta.mtime > t:
                raise OssError(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not '
                                                          'hold.')
        ims = self.headers.get('x-oss-copy-source-if-modified-since')
        if ims is not None:
            t = _parse_http_date(ims)
            if t is not None and meta.mtime <= t:
                raise OssError(304, 'NotModified', 'The source object was not modified.')

    def _copy_range(self, src_path, dst_path, start, length):
        md5 = hashlib.md5()
        crc = Crc64(0)
        with open(src_path, 'rb') as fi, open(dst_path, 'wb') as fo:
            fi.seek(start)
            left = length
            while left > 0:
                d = fi.read(min(CHUNK, left))
                if not d:
                    raise OssError(500, 'InternalError', 'Source object changed during copy.')
                fo.write(d)
                md5.update(d)
                crc.update(d)
                left -= len(d)
        return md5, crc.crc

    # ---- service / bucket --------------------------------------------------------------------------
    def list_buckets(self):
        cfg = self.server.cfg
        region = cfg.region or 'cn-hangzhou'
        items = []
        for name in sorted(self.server.store.buckets):
            bs = self.server.store.buckets[name]
            items.append('<Bucket>' + el('CreationDate', iso8601(bs.created))
                         + el('ExtranetEndpoint', 'oss-%s.aliyuncs.com' % region)
                         + el('IntranetEndpoint', 'oss-%s-internal.aliyuncs.com' % region)
                         + el('Location', 'oss-%s' % region) + el('Name', name) + el('Region', region)
                         + el('StorageClass', 'Standard') + '</Bucket>')
        self._send_xml(200, '<ListAllMyBucketsResult><Owner>' + el('ID', OWNER_ID) + el('DisplayName', OWNER_NAME)
                       + '</Owner><Buckets>' + ''.join(items) + '</Buckets></ListAllMyBucketsResult>')

    def get_bucket_info(self, b):
        region = self.server.cfg.region or 'cn-hangzhou'
        self._send_xml(200, '<BucketInfo><Bucket>' + el('AccessMonitor', 'Disabled')
                       + el('CreationDate', iso8601(b.created))
                       + el('ExtranetEndpoint', 'oss-%s.aliyuncs.com' % region)
                       + el('IntranetEndpoint', 'oss-%s-internal.aliyuncs.com' % region)
                       + el('Location', 'oss-%s' % region) + el('StorageClass', 'Standard')
                       + el('TransferAcceleration', 'Disabled') + el('CrossRegionReplication', 'Disabled')
                       + el('Name', b.name) + el('ResourceGroupId', 'rg-default')
                       + '<Owner>' + el('DisplayName', OWNER_NAME) + el('ID', OWNER_ID) + '</Owner>'
                       + '<AccessControlList>' + el('Grant', 'private') + '</AccessControlList>'
                       + el('Comment', '') + el('DataRedundancyType', 'LRS')
                       + '<ServerSideEncryptionRule>' + el('SSEAlgorithm', 'None') + '</ServerSideEncryptionRule>'
                       + '<BucketPolicy>' + el('LogBucket', '') + el('LogPrefix', '') + '</BucketPolicy>'
                       + '</Bucket></BucketInfo>')

    def get_bucket_location(self, b):
        region = self.server.cfg.region or 'cn-hangzhou'
        self._send_xml(200, el('LocationConstraint', 'oss-%s' % region))

    @staticmethod
    def _int_param(params, name, default, lo, hi):
        v = params.get(name)
        if v is None or v == '':
            return default
        try:
            n = int(v)
        except ValueError:
            n = None
        if n is None or n < lo or n > hi:
            raise OssError(400, 'InvalidArgument', 'Argument %s must be an integer between %d and %d.'
                           % (name, lo, hi), extra=[('ArgumentName', name), ('ArgumentValue', v)])
        return n

    @staticmethod
    def _encoding(params):
        et = params.get('encoding-type')
        if et is None or et == '':
            return False
        if et != 'url':
            raise OssError(400, 'InvalidArgument', 'The encoding-type must be url.',
                           extra=[('ArgumentName', 'encoding-type'), ('ArgumentValue', et)])
        return True

    def list_objects(self, b, params, v2):
        url = self._encoding(params)
        enc = (lambda s: quote(s, safe='')) if url else (lambda s: s)
        prefix = params.get('prefix', '')
        delimiter = params.get('delimiter', '')
        max_keys = self._int_param(params, 'max-keys', 100, 0, MAX_KEYS_LIMIT)
        if len(prefix.encode('utf-8')) > 1023:
            raise OssError(400, 'InvalidArgument', 'The prefix is longer than 1023 bytes.')
        fetch_owner = True
        token = None
        if v2:
            token = params.get('continuation-token')
            start_after = params.get('start-after', '')
            fetch_owner = params.get('fetch-owner', 'false').lower() == 'true'
            if token:
                try:
                    marker_b = base64.b64decode(token.encode('ascii'), validate=True)
                    marker_b.decode('utf-8')
                except (binascii.Error, ValueError, UnicodeError):
                    raise OssError(400, 'InvalidArgument', 'The continuation token provided is incorrect.',
                                   extra=[('ArgumentName', 'continuation-token'), ('ArgumentValue', token)])
            else:
                marker_b = start_after.encode('utf-8')
        else:
            marker = params.get('marker', '')
            marker_b = marker.encode('utf-8')
        store = self.server.store
        with store.lock:
            entries, truncated = list_entries(b.keys, prefix.encode('utf-8'), delimiter.encode('utf-8'),
                                              marker_b, max_keys)
            metas = [(kind, name, b.objects.get(name.decode('utf-8')) if kind == 'k' else None)
                     for kind, name in entries]
        out = ['<ListBucketResult>', el('Name', b.name), el('Prefix', enc(prefix))]
        if v2:
            if params.get('start-after'):
                out.append(el('StartAfter', enc(params['start-after'])))
            if token:
                out.append(el('ContinuationToken', enc(token)))
        else:
            out.append(el('Marker', enc(params.get('marker', ''))))
        out.append(el('MaxKeys', max_keys))
        out.append(el('Delimiter', enc(delimiter)))
        if url:
            out.append(el('EncodingType', 'url'))
        out.append(el('IsTruncated', 'true' if truncated else 'false'))
        if v2:
            out.append(el('KeyCount', len(entries)))
        if truncated and entries:
            last = entries[-1][1]
            if v2:
                out.append(el('NextContinuationToken', enc(base64.b64encode(last).decode('ascii'))))
            else:
                out.append(el('NextMarker', enc(last.decode('utf-8'))))
        for kind, name, meta in metas:
            if kind != 'k' or meta is None:
                continue
            out.append('<Contents>' + el('Key', enc(name.decode('utf-8'))) + el('LastModified', iso8601(meta.mtime))
                       + el('ETag', quoted_etag(meta.etag)) + el('Type', meta.obj_type) + el('Size', meta.size)
                       + el('StorageClass', 'Standard'))
            if fetch_owner:
                out.append('<Owner>' + el('ID', OWNER_ID) + el('DisplayName', OWNER_NAME) + '</Owner>')
            out.append('</Contents>')
        for kind, name, _ in metas:
            if kind == 'p':
                out.append('<CommonPrefixes>' + el('Prefix', enc(name.decode('utf-8'))) + '</CommonPrefixes>')
        out.append('</ListBucketResult>')
        self._send_xml(200, ''.join(out))

    def delete_multiple(self, b, params):
        url = self._encoding(params)
        enc = (lambda s: quote(s, safe='')) if url else (lambda s: s)
        if not self.has_length:
            raise OssError(411, 'MissingContentLength', 'You must provide the Content-Length HTTP header.')
        want = self.headers.get('Content-MD5')
        if want is None:
            self._drain()
            raise OssError(400, 'InvalidDigest', 'The Content-MD5 header is required for DeleteMultipleObjects.')
        want_d = self._content_md5()
        data = self.body.read_all(MAX_XML_BODY)
        if hashlib.md5(data).digest() != want_d:
            raise OssError(400, 'InvalidDigest', 'The Content-MD5 you specified did not match what we received.')
        try:
            root = ET.fromstring(data)
        except ET.ParseError:
            raise OssError(400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate '
                                                'against our published schema.')
        if root.tag != 'Delete':
            raise OssError(400, 'MalformedXML', 'The root element must be <Delete>.')
        quiet_el = root.find('Quiet')
        quiet_text = (quiet_el.text or '').strip().lower() if quiet_el is not None else 'false'
        if quiet_text not in ('true', 'false'):
            raise OssError(400, 'MalformedXML', 'Quiet must be true or false.')
        quiet = quiet_text == 'true'
        keys = []
        for obj in root.findall('Object'):
            k = obj.find('Key')
            if k is None or not k.text:
                raise OssError(400, 'MalformedXML', 'Every <Object> needs a non-empty <Key>.')
            if obj.find('VersionId') is not None:
                raise OssError(501, 'NotImplemented', 'VersionId is not implemented by this test server.')
            keys.append(k.text)
        if not keys or len(keys) > 1000:
            raise OssError(400, 'MalformedXML', 'The request must contain between 1 and 1000 keys.')
        store = self.server.store
        with store.lock:
            for k in keys:
                store.remove(b, k)
        out = ['<DeleteResult>']
        if url:
            out.append(el('EncodingType', 'url'))
        if not quiet:
            for k in keys:
                out.append('<Deleted>' + el('Key', enc(k)) + '</Deleted>')
        out.append('</DeleteResult>')
        self._send_xml(200, ''.join(out))

    # ---- objects ---------------------------------------------------------------------------------
    def put_object(self, b, key):
        self._forbid_overwrite(b, key)
        content_type, headers, user_meta = self._meta_from_request()
        if self.headers.get('x-oss-object-acl') not in (None, 'default', 'private', 'public-read',
                                                         'public-read-write'):
            raise OssError(400, 'InvalidArgument', 'Invalid x-oss-object-acl.')
        store = self.server.store
        tmp, size, md5, crc = self._receive_body(MAX_OBJECT_SIZE)
        final = store.new_object_path()
        os.rename(tmp, final)
        etag = md5.hexdigest().upper()
        meta = ObjectMeta(final, size, etag, int(time.time()), content_type, headers, user_meta, 'Normal', crc)
        with store.lock:
            if self.headers.get('x-oss-forbid-overwrite', '').strip().lower() == 'true' and key in b.objects:
                Store.unlink(final)
                raise OssError(409, 'FileAlreadyExists', 'The object you specified already exists and can not be '
                                                          'overwritten.')
            store.install(b, key, meta)
        h = [('ETag', quoted_etag(etag)), ('x-oss-hash-crc64ecma', str(crc)),
             ('Content-MD5', base64.b64encode(md5.digest()).decode('ascii'))]
        h.extend((k, v) for k, v in headers if k.startswith('x-oss-server-side'))
        self._send(200, h)

    def _parse_range(self, header, size):
        """Returns None (whole object, 200) or (start, end) inclusive; raises 416 in standard mode."""
        standard = (self.headers.get('x-oss-range-behavior', '').strip().lower() == 'standard')
        spec = header.strip()
        if not spec.lower().startswith('bytes='):
            return None
        first = spec[6:].split(',')[0].strip()
        m = re.match(r'^(\d*)-(\d*)$', first)
        if not m or (m.group(1) == '' and m.group(2) == ''):
            return None
        a, z = m.group(1), m.group(2)

        def unsatisfiable():
            if standard:
                raise OssError(416, 'InvalidRange', 'The requested range cannot be satisfied',
                               headers=[('Content-Range', 'bytes */%d' % size)],
                               extra=[('RangeRequested', spec), ('ActualObjectSize', str(size))])
            return None

        if a == '':  # suffix
            n = int(z)
            if n == 0 or size == 0:
                return unsatisfiable()
            if n > size:
                return (0, size - 1) if standard else None
            return size - n, size - 1
        start = int(a)
        if z != '':
            end = int(z)
            if end < start:
                return None
        else:
            end = None
        if start >= size:
            return unsatisfiable()
        if end is None:
            return start, size - 1
        if end >= size:
            return (start, size - 1) if standard else None
        return start, end

    def _conditionals(self, meta):
        im = self.headers.get('If-Match')
        if im is not None and im.strip() != '*' and im.strip().strip('"').upper() != meta.etag.upper():
            raise OssError(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold.')
        ius = self.headers.get('If-Unmodified-Since')
        if ius is not None:
            t = _parse_http_date(ius)
            if t is not None and meta.mtime > t:
                raise OssError(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did '
                                                          'not hold.')
        inm = self.headers.get('If-None-Match')
        if inm is not None and (inm.strip() == '*' or inm.strip().strip('"').upper() == meta.etag.upper()):
            return False
        ims = self.headers.get('If-Modified-Since')
        if ims is not None and inm is None:
            t = _parse_http_date(ims)
            if t is not None and meta.mtime <= t:
                return False
        return True

    def get_object(self, b, key, params, head):
        store = self.server.store
        with store.lock:
            meta = b.objects.get(key)
            f = open(meta.path, 'rb') if meta is not None and not head else None
        if meta is None:
            raise OssError(404, 'NoSuchKey', 'The specified key does not exist.', extra=[('Key', key)])
        try:
            if not self._conditionals(meta):
                self._start(304, [('ETag', quoted_etag(meta.etag)), ('Last-Modified', http_date(meta.mtime))], 0)
                return
            h = self._object_headers(meta, params)
            size = meta.size
            rng = None
            rh = self.headers.get('Range')
            if rh is not None:
                rng = self._parse_range(rh, size)
            if rng is None:
                start, length, status = 0, size, 200
            else:
                start, length, status = rng[0], rng[1] - rng[0] + 1, 206
                h.append(('Content-Range', 'bytes %d-%d/%d' % (rng[0], rng[1], size)))
            self._start(status, h, length)
            if head or length == 0:
                return
            self.wfile.flush()
            try:
                sent = self.connection.sendfile(f, offset=start, count=length)
            except (AttributeError, ValueError, OSError) as e:
                if isinstance(e, (BrokenPipeError, ConnectionResetError)):
                    raise
                f.seek(start)
                sent = 0
                while sent < length:
                    d = f.read(min(CHUNK, length - sent))
                    if not d:
                        break
                    self.wfile.write(d)
                    sent += len(d)
            if sent != length:
                self.close_connection = True
        finally:
            if f is not None:
                f.close()

    def get_object_meta(self, b, key):
        meta = self._lookup(b, key)
        h = [('ETag', quoted_etag(meta.etag)), ('Last-Modified', http_date(meta.mtime)),
             ('x-oss-last-access-time', http_date(meta.mtime)), ('x-oss-hash-crc64ecma', str(meta.crc))]
        self._start(200, h, meta.size)

    def delete_object(self, b, key):
        store = self.server.store
        with store.lock:
            store.remove(b, key)
        self._send(204)

    def copy_object(self, b, key):
        sb, skey = self._parse_copy_source()
        store = self.server.store
        directive = self.headers.get('x-oss-metadata-directive', 'COPY').strip().upper()
        if directive not in ('COPY', 'REPLACE'):
            raise OssError(400, 'InvalidArgument', 'x-oss-metadata-directive must be COPY or REPLACE.')
        self._forbid_overwrite(b, key)
        with store.lock:
            meta = sb.objects.get(skey)
            src_f = open(meta.path, 'rb') if meta is not None else None
        if meta is None:
            raise OssError(404, 'NoSuchKey', 'The specified key does not exist.', extra=[('Key', skey)])
        try:
            self._copy_preconditions(meta)
            if meta.size > self.server.cfg.copy_limit:
                raise OssError(400, 'EntityTooLarge',
                               'CopyObject only copies objects up to %d bytes; this source has %d bytes. '
                               'Use UploadPartCopy.' % (self.server.cfg.copy_limit, meta.size))
            if directive == 'REPLACE':
                content_type, headers, user_meta = self._meta_from_request()
            else:
                content_type, headers, user_meta = meta.content_type, list(meta.headers), list(meta.user_meta)
                sse = self.headers.get('x-oss-server-side-encryption')
                if sse is not None:
                    headers = [(k, v) for k, v in headers if k != 'x-oss-server-side-encryption'] + \
                              [('x-oss-server-side-encryption', sse)]
            now = int(time.time())
            if sb is b and skey == key:
                # OSS: copying an object onto itself only updates its metadata.
                new_meta = ObjectMeta(meta.path, meta.size, meta.etag, now, content_type, headers, user_meta,
                                      meta.obj_type, meta.crc, meta.md5)
                final = meta.path
            else:
                tmp = store.tmp_path()
                try:
                    with open(tmp, 'wb') as fo:
                        left = meta.size
                        while left > 0:
                            d = src_f.read(min(CHUNK, left))
                            if not d:
                                raise OssError(500, 'InternalError', 'Source object changed during copy.')
                            fo.write(d)
                            left -= len(d)
                    final = store.new_object_path()
                    os.rename(tmp, final)
                except BaseException:
                    Store.unlink(tmp)
                    raise
                new_meta = ObjectMeta(final, meta.size, meta.etag, now, content_type, headers, user_meta,
                                      'Normal' if meta.obj_type == 'Appendable' else meta.obj_type, meta.crc)
            with store.lock:
                if self.headers.get('x-oss-forbid-overwrite', '').strip().lower() == 'true' and key in b.objects \
                        and not (sb is b and skey == key):
                    Store.unlink(final)
                    raise OssError(409, 'FileAlreadyExists', 'The object you specified already exists and can not '
                                                              'be overwritten.')
                store.install(b, key, new_meta)
        finally:
            src_f.close()
        h = [('ETag', quoted_etag(new_meta.etag)), ('x-oss-hash-crc64ecma', str(new_meta.crc))]
        h.extend((k, v) for k, v in new_meta.headers if k.startswith('x-oss-server-side'))
        self._send_xml(200, '<CopyObjectResult>' + el('ETag', quoted_etag(new_meta.etag))
                       + el('LastModified', iso8601(new_meta.mtime)) + '</CopyObjectResult>', h)

    def append_object(self, b, key, params):
        store = self.server.store
        try:
            position = int(params.get('position', ''))
            if position < 0:
                raise ValueError
        except ValueError:
            raise OssError(400, 'InvalidArgument', 'The position parameter must be a non-negative integer.',
                           extra=[('ArgumentName', 'position'), ('ArgumentValue', params.get('position', ''))])
        with store.lock:
            meta = b.objects.get(key)
            if meta is not None and meta.obj_type != 'Appendable':
                raise OssError(409, 'ObjectNotAppendable', 'The object is not appendable')
            current = meta.size if meta is not None else 0
        if position != current:
            raise OssError(409, 'PositionNotEqualToLength', 'Position is not equal to file length',
                           headers=[('x-oss-next-append-position', str(current))])
        content_type, headers, user_meta = self._meta_from_request()
        tmp, size, md5_new, crc_new = self._receive_body(MAX_OBJECT_SIZE)
        try:
            with store.lock:
                meta = b.objects.get(key)
                if meta is not None and meta.obj_type != 'Appendable':
                    raise OssError(409, 'ObjectNotAppendable', 'The object is not appendable')
                current = meta.size if meta is not None else 0
                if position != current:
                    raise OssError(409, 'PositionNotEqualToLength', 'Position is not equal to file length',
                                   headers=[('x-oss-next-append-position', str(current))])
                if current + size > MAX_OBJECT_SIZE:
                    raise OssError(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size.')
                now = int(time.time())
                if meta is None:
                    path = store.new_object_path()
                    os.rename(tmp, path)
                    tmp = None
                    meta = ObjectMeta(path, size, md5_new.hexdigest().upper(), now, content_type, headers, user_meta,
                                      'Appendable', crc_new, md5_new)
                    store.install(b, key, meta)
                else:
                    with open(meta.path, 'ab') as fo, open(tmp, 'rb') as fi:
                        while True:
                            d = fi.read(CHUNK)
                            if not d:
                                break
                            fo.write(d)
                            meta.md5.update(d)
                    meta.crc = crc64_combine(meta.crc, crc_new, size)
                    meta.size = current + size
                    meta.etag = meta.md5.hexdigest().upper()
                    meta.mtime = now
                next_pos, crc, etag = meta.size, meta.crc, meta.etag
        finally:
            if tmp is not None:
                Store.unlink(tmp)
        self._send(200, [('ETag', quoted_etag(etag)), ('x-oss-next-append-position', str(next_pos)),
                         ('x-oss-hash-crc64ecma', str(crc))])

    # ---- multipart ---------------------------------------------------------------------------------
    def _get_upload(self, b, key, params):
        upload_id = params.get('uploadId', '')
        with self.server.store.lock:
            up = b.uploads.get(upload_id)
        if up is None or up.key != key or up.finished:
            raise OssError(404, 'NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, '
                                                'or the upload may have been aborted or completed.',
                           extra=[('UploadId', upload_id)])
        return up

    def _part_number(self, params):
        v = params.get('partNumber', '')
        try:
            n = int(v)
        except ValueError:
            n = 0
        if n < 1 or n > MAX_PART_NUMBER:
            raise OssError(400, 'InvalidArgument', 'Part number must be an integer between 1 and %d.'
                           % MAX_PART_NUMBER, extra=[('ArgumentName', 'partNumber'), ('ArgumentValue', v)])
        return n

    def initiate_upload(self, b, key, params):
        url = self._encoding(params)
        self._forbid_overwrite(b, key)
        content_type, headers, user_meta = self._meta_from_request()
        store = self.server.store
        upload_id = store.new_upload_id()
        up = Upload(upload_id, key, int(time.time()), content_type, headers, user_meta)
        with store.lock:
            b.uploads[upload_id] = up
        out = '<InitiateMultipartUploadResult>' + el('Bucket', b.name) + el('Key', quote(key, safe='') if url else key)
        out += el('UploadId', upload_id)
        if url:
            out += el('EncodingType', 'url')
        out += '</InitiateMultipartUploadResult>'
        h = [(k, v) for k, v in headers if k.startswith('x-oss-server-side')]
        self._send_xml(200, out, h)

    def _register_part(self, up, number, path, size, md5, crc):
        part = Part(number, path, size, md5.hexdigest().upper(), int(time.time()), crc, md5.digest())
        with up.lock:
            if up.finished:
                Store.unlink(path)
                raise OssError(404, 'NoSuchUpload', 'The specified upload does not exist.',
                               extra=[('UploadId', up.upload_id)])
            old = up.parts.get(number)
            up.parts[number] = part
        if old is not None:
            Store.unlink(old.path)
        return part

    def upload_part(self, b, key, params):
        up = self._get_upload(b, key, params)
        number = self._part_number(params)
        store = self.server.store
        tmp, size, md5, crc = self._receive_body(MAX_OBJECT_SIZE)
        path = store.new_part_path()
        os.rename(tmp, path)
        part = self._register_part(up, number, path, size, md5, crc)
        h = [('ETag', quoted_etag(part.etag)), ('x-oss-hash-crc64ecma', str(crc)),
             ('Content-MD5', base64.b64encode(part.md5).decode('ascii'))]
        h.extend((k, v) for k, v in up.headers if k.startswith('x-oss-server-side'))
        self._send(200, h)

    def upload_part_copy(self, b, key, params):
        up = self._get_upload(b, key, params)
        number = self._part_number(params)
        sb, skey = self._parse_copy_source()
        store = self.server.store
        with store.lock:
            meta = sb.objects.get(skey)
            src_f = open(meta.path, 'rb') if meta is not None else None
        if meta is None:
            raise OssError(404, 'NoSuchKey', 'The specified key does not exist.', extra=[('Key', skey)])
        try:
            self._copy_preconditions(meta)
            if meta.obj_type == 'Appendable':
                raise OssError(400, 'InvalidArgument', 'UploadPartCopy cannot copy an Appendable object '
                                                       '(OSS: objects created by AppendObject cannot be copied).')
            start, length = 0, meta.size
            rng = self.headers.get('x-oss-copy-source-range')
            if rng is not None:
                m = re.match(r'^\s*bytes=(\d+)-(\d+)\s*$', rng)
                if m and int(m.group(1)) <= int(m.group(2)) < meta.size:
                    start, length = int(m.group(1)), int(m.group(2)) - int(m.group(1)) + 1
                # OSS: an invalid x-oss-copy-source-range copies the whole source object
            if length > MAX_OBJECT_SIZE:
                raise OssError(400, 'EntityTooLarge', 'A part may not be larger than 5 GB.')
            tmp = store.tmp_path()
            md5 = hashlib.md5()
            crc = Crc64(0)
            try:
                with open(tmp, 'wb') as fo:
                    src_f.seek(start)
                    left = length
                    while left > 0:
                        d = src_f.read(min(CHUNK, left))
                        if not d:
                            raise OssError(500, 'InternalError', 'Source object changed during copy.')
                        fo.write(d)
                        md5.update(d)
                        crc.update(d)
                        left -= len(d)
                path = store.new_part_path()
                os.rename(tmp, path)
            except BaseException:
                Store.unlink(tmp)
                raise
        finally:
            src_f.close()
        part = self._register_part(up, number, path, length, md5, crc.crc)
        h = [('ETag', quoted_etag(part.etag)), ('x-oss-hash-crc64ecma', str(part.crc))]
        self._send_xml(200, '<CopyPartResult>' + el('LastModified', iso8601(part.mtime))
                       + el('ETag', quoted_etag(part.etag)) + '</CopyPartResult>', h)

    def complete_upload(self, b, key, params):
        url = self._encoding(params)
        up = self._get_upload(b, key, params)
        complete_all = self.headers.get('x-oss-complete-all', '').strip().lower() == 'yes'
        data = self.body.read_all(MAX_XML_BODY)
        store = self.server.store
        with up.lock:
            if up.finished:
                raise OssError(404, 'NoSuchUpload', 'The specified upload does not exist.',
                               extra=[('UploadId', up.upload_id)])
            if complete_all:
                if data.strip():
                    raise OssError(400, 'InvalidArgument', 'With x-oss-complete-all: yes the body must be empty.')
                chosen = [up.parts[n] for n in sorted(up.parts)]
                if not chosen:
                    raise OssError(400, 'InvalidPart', 'The upload has no parts.')
            else:
                try:
                    root = ET.fromstring(data)
                except ET.ParseError:
                    raise OssError(400, 'MalformedXML', 'The XML you provided was not well-formed or did not '
                                                        'validate against our published schema.')
                if root.tag != 'CompleteMultipartUpload':
                    raise OssError(400, 'MalformedXML', 'The root element must be <CompleteMultipartUpload>.')
                listed = []
                for pn in root.findall('Part'):
                    num_el, etag_el = pn.find('PartNumber'), pn.find('ETag')
                    if num_el is None or etag_el is None:
                        raise OssError(400, 'MalformedXML', 'Every <Part> needs <PartNumber> and <ETag>.')
                    try:
                        num = int((num_el.text or '').strip())
                    except ValueError:
                        raise OssError(400, 'MalformedXML', 'PartNumber must be an integer.')
                    listed.append((num, (etag_el.text or '').strip().strip('"').upper()))
                if not listed:
                    raise OssError(400, 'MalformedXML', 'The request must list at least one part.')
                prev = 0
                for num, _ in listed:
                    if num <= prev:
                        raise OssError(400, 'InvalidPartOrder', 'The list of parts was not in ascending order. '
                                                                'Parts must be ordered by part number.')
                    prev = num
                chosen = []
                for num, etag in listed:
                    part = up.parts.get(num)
                    if part is None or part.etag != etag:
                        raise OssError(400, 'InvalidPart', 'One or more of the specified parts could not be found or '
                                                           'the specified entity tag might not have matched the '
                                                           "part's entity tag.",
                                       extra=[('PartNumber', str(num)), ('ETag', etag)])
                    chosen.append(part)
            for part in chosen[:-1]:
                if part.size < MIN_PART_SIZE:
                    raise OssError(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed '
                                                          'size.',
                                   extra=[('MinSizeAllowed', str(MIN_PART_SIZE)), ('ProposedSize', str(part.size)),
                                          ('PartNumber', str(part.number)), ('PartEtag', part.etag)])
            total = sum(p.size for p in chosen)
            if total > 48.8 * 1024 ** 4:
                raise OssError(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size.')
            self._forbid_overwrite(b, key)
            tmp = store.tmp_path()
            crc = 0
            try:
                with open(tmp, 'wb') as fo:
                    for part in chosen:
                        with open(part.path, 'rb') as fi:
                            while True:
                                d = fi.read(CHUNK)
                                if not d:
                                    break
                                fo.write(d)
                        crc = crc64_combine(crc, part.crc, part.size)
                final = store.new_object_path()
                os.rename(tmp, final)
            except BaseException:
                Store.unlink(tmp)
                raise
            etag = '%s-%d' % (hashlib.md5(b''.join(p.md5 for p in chosen)).hexdigest().upper(), len(chosen))
            meta = ObjectMeta(final, total, etag, int(time.time()), up.content_type, up.headers, up.user_meta,
                              'Multipart', crc)
            with store.lock:
                store.install(b, key, meta)
                b.uploads.pop(up.upload_id, None)
            up.finished = True
            for part in up.parts.values():
                Store.unlink(part.path)
        host = self.headers.get('Host', 'localhost')
        enc_key = quote(key, safe='') if url else key
        out = ('<CompleteMultipartUploadResult>' + (el('EncodingType', 'url') if url else '')
               + el('Location', 'http://%s/%s/%s' % (host, b.name, quote(key, safe='/')))
               + el('Bucket', b.name) + el('Key', enc_key) + el('ETag', quoted_etag(etag))
               + '</CompleteMultipartUploadResult>')
        h = [('ETag', quoted_etag(etag)), ('x-oss-hash-crc64ecma', str(crc))]
        h.extend((k, v) for k, v in up.headers if k.startswith('x-oss-server-side'))
        self._send_xml(200, out, h)

    def abort_upload(self, b, key, params):
        up = self._get_upload(b, key, params)
        store = self.server.store
        with up.lock:
            if up.finished:
                raise OssError(404, 'NoSuchUpload', 'The specified upload does not exist.',
                               extra=[('UploadId', up.upload_id)])
            up.finished = True
            with store.lock:
                b.uploads.pop(up.upload_id, None)
            for part in up.parts.values():
                Store.unlink(part.path)
        self._send(204)

    def list_multipart_uploads(self, b, params):
        url = self._encoding(params)
        enc = (lambda s: quote(s, safe='')) if url else (lambda s: s)
        prefix = params.get('prefix', '')
        delimiter = params.get('delimiter', '')
        key_marker = params.get('key-marker', '')
        id_marker = params.get('upload-id-marker', '')
        max_uploads = self._int_param(params, 'max-uploads', 1000, 1, 1000)
        with self.server.store.lock:
            ups = [(u.key.encode('utf-8'), u.upload_id, u) for u in b.uploads.values() if not u.finished]
        ups.sort(key=lambda t: (t[0], t[1]))
        pb, db, kmb = prefix.encode('utf-8'), delimiter.encode('utf-8'), key_marker.encode('utf-8')
        items = []
        truncated = False
        last_cp = None
        for kb, uid, u in ups:
            if not kb.startswith(pb):
                continue
            if key_marker:
                if id_marker:
                    if kb < kmb or (kb == kmb and uid <= id_marker):
                        continue
                elif kb <= kmb:
                    continue
            if db:
                j = kb.find(db, len(pb))
                if j >= 0:
                    cp = kb[:j + len(db)]
                    if cp == last_cp or (key_marker and cp <= kmb):
                        continue
                    if len(items) >= max_uploads:
                        truncated = True
                        break
                    items.append(('p', cp, None))
                    last_cp = cp
                    continue
            if len(items) >= max_uploads:
                truncated = True
                break
            items.append(('u', kb, u))
        next_key, next_id = '', ''
        if truncated and items:
            kind, name, u = items[-1]
            next_key = name.decode('utf-8')
            next_id = u.upload_id if u is not None else ''
        out = ['<ListMultipartUploadsResult>', el('Bucket', b.name), el('KeyMarker', enc(key_marker)),
               el('UploadIdMarker', id_marker), el('NextKeyMarker', enc(next_key)),
               el('NextUploadIdMarker', next_id), el('Delimiter', enc(delimiter)), el('Prefix', enc(prefix)),
               el('MaxUploads', max_uploads), el('IsTruncated', 'true' if truncated else 'false')]
        if url:
            out.append(el('EncodingType', 'url'))
        for kind, name, u in items:
            if kind == 'u':
                out.append('<Upload>' + el('Key', enc(u.key)) + el('UploadId', u.upload_id)
                           + el('StorageClass', 'Standard') + el('Initiated', iso8601(u.initiated)) + '</Upload>')
        for kind, name, u in items:
            if kind == 'p':
                out.append('<CommonPrefixes>' + el('Prefix', enc(name.decode('utf-8'))) + '</CommonPrefixes>')
        out.append('</ListMultipartUploadsResult>')
        self._send_xml(200, ''.join(out))

    def list_parts(self, b, key, params):
        url = self._encoding(params)
        up = self._get_upload(b, key, params)
        max_parts = self._int_param(params, 'max-parts', 1000, 1, 1000)
        marker = self._int_param(params, 'part-number-marker', 0, 0, MAX_PART_NUMBER)
        with up.lock:
            parts = sorted((p for p in up.parts.values() if p.number > marker), key=lambda p: p.number)
        truncated = len(parts) > max_parts
        parts = parts[:max_parts]
        next_marker = str(parts[-1].number) if parts else ''
        out = ['<ListPartsResult>', el('Bucket', b.name), el('Key', quote(key, safe='') if url else key),
               el('UploadId', up.upload_id), el('StorageClass', 'Standard'),
               el('PartNumberMarker', marker), el('NextPartNumberMarker', next_marker),
               el('MaxParts', max_parts), el('IsTruncated', 'true' if truncated else 'false')]
        if url:
            out.append(el('EncodingType', 'url'))
        for p in parts:
            out.append('<Part>' + el('PartNumber', p.number) + el('LastModified', iso8601(p.mtime))
                       + el('ETag', quoted_etag(p.etag)) + el('HashCrc64ecma', p.crc) + el('Size', p.size) + '</Part>')
        out.append('</ListPartsResult>')
        self._send_xml(200, ''.join(out))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, cfg):
        self.cfg = cfg
        self.store = Store(cfg.data_dir, cfg.bucket)
        self.stats = Stats()
        ThreadingHTTPServer.__init__(self, addr, Handler)

    def handle_error(self, request, client_address):
        if self.cfg.verbose:
            ThreadingHTTPServer.handle_error(self, request, client_address)


_BUCKET_RE = re.compile(r'^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$')


def main(argv=None):
    ap = argparse.ArgumentParser(description='OSS test server (signatures checked by oss2).')
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0, help='0 picks a free port')
    ap.add_argument('--bucket', action='append', required=True, help='an existing bucket (repeatable)')
    ap.add_argument('--access-key-id', required=True)
    ap.add_argument('--access-key-secret', required=True)
    ap.add_argument('--security-token', default=None,
                    help='when set, the access key is an STS key: every request must carry this token')
    ap.add_argument('--region', default='cn-hangzhou', help='region V4 signatures must be scoped to')
    ap.add_argument('--data-dir', required=True)
    ap.add_argument('--copy-limit', type=int, default=1024 * 1024 * 1024,
                    help='largest source CopyObject accepts (bytes; OSS: 1 GiB)')
    ap.add_argument('--verbose', action='store_true', help='log every request to stderr')
    cfg = ap.parse_args(argv)
    for name in cfg.bucket:
        if not _BUCKET_RE.match(name):
            ap.error('invalid bucket name: %r' % name)
    srv = Server((cfg.host, cfg.port), cfg)
    port = srv.server_address[1]
    sys.stdout.write('READY %d\n' % port)
    sys.stdout.flush()
    if cfg.verbose:
        sys.stderr.write('oss-test-server: listening on %s:%d, buckets %s, data in %s\n'
                         % (cfg.host, port, ', '.join(cfg.bucket), srv.store.data_dir))
    try:
        srv.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
