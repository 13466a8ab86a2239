#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""Proves oss_test_server.py right with oss2's own client.

Runs every call the storage driver relies on through oss2 (V1 ``oss2.Auth``,
V4 ``oss2.AuthV4``, and ``oss2.StsAuth`` V1/V4 when a security token is given),
plus presigned URLs fetched with urllib, and a set of requests that must be
rejected (wrong secret, unknown key, tampered signatures, expired URLs,
anonymous access).  Prints one line per check and ``ALL OK (<n> checks)`` at the
end; exits 1 on any failure.

    python check_with_oss2.py --endpoint http://127.0.0.1:PORT --bucket B \
        --access-key-id AK --access-key-secret SK [--security-token T] \
        [--region cn-hangzhou] [--copy-limit BYTES]

Pass ``--copy-limit`` when the server was started with the same value to also
check that CopyObject refuses larger sources and UploadPartCopy copies them.
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from urllib.parse import quote

import oss2
from oss2 import exceptions as E
from oss2.models import PartInfo
from oss2.utils import Crc64


def md5_hex(data):
    return hashlib.md5(data).hexdigest().upper()


def crc64(data):
    c = Crc64(0)
    c.update(data)
    return c.crc


class Checker(object):
    def __init__(self):
        self.count = 0
        self.failures = 0
        self.expected_signature_failures = 0

    def ok(self, name, cond, detail=''):
        self.count += 1
        if cond:
            print('ok    %s' % name)
        else:
            self.failures += 1
            print('FAIL  %s %s' % (name, detail))
        sys.stdout.flush()
        return cond

    def eq(self, name, got, want):
        return self.ok(name, got == want, '(got %r, want %r)' % (_short(got), _short(want)))

    def raises(self, name, fn, status, code, signature=False):
        if signature:
            self.expected_signature_failures += 1
        try:
            fn()
        except E.OssError as e:
            return self.ok(name, e.status == status and e.code == code,
                           '(got %s %s %s)' % (e.status, e.code, e.message))
        except Exception as e:  # noqa
            return self.ok(name, False, '(unexpected %s: %s)' % (type(e).__name__, e))
        return self.ok(name, False, '(no error raised, wanted %s %s)' % (status, code))

    def section(self, name, fn, *args):
        try:
            fn(*args)
        except Exception as e:  # an unexpected exception fails the section
            traceback.print_exc()
            self.ok('%s completed without an unexpected exception' % name, False, '(%s: %s)' % (type(e).__name__, e))


def _short(v):
    if isinstance(v, (bytes, bytearray)) and len(v) > 64:
        return '%s...(%d bytes, md5 %s)' % (bytes(v[:16]), len(v), md5_hex(bytes(v)))
    return v


def http(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def error_code(body):
    import xml.etree.ElementTree as ET
    try:
        root = ET.fromstring(body)
        return root.findtext('Code'), root.findtext('Message')
    except ET.ParseError:
        return None, None


class Suite(object):
    def __init__(self, c, args, label, auth, auth_factory, session):
        self.c = c
        self.args = args
        self.label = label
        self.auth = auth
        self.auth_factory = auth_factory  # (ak, sk, token) -> auth of the same flavour
        self.session = session
        self.b = self.bucket(auth)
        self.base = 'check/%s-%s/' % (label, uuid.uuid4().hex[:8])

    def bucket(self, auth, name=None):
        return oss2.Bucket(auth, self.args.endpoint, name or self.args.bucket, is_path_style=True,
                           region=self.args.region, session=self.session)

    def n(self, s):
        return '[%s] %s' % (self.label, s)

    def run(self):
        c = self.c
        for name, fn in [('objects', self.objects), ('ranges', self.ranges), ('special keys', self.special_keys),
                         ('listing', self.listing), ('batch delete', self.batch_delete), ('copy', self.copy),
                         ('multipart', self.multipart), ('multipart errors', self.multipart_errors),
                         ('list uploads', self.list_uploads), ('append', self.append), ('delete', self.delete),
                         ('presign', self.presign), ('bucket', self.bucket_calls), ('rejections', self.rejections),
                         ('large and concurrent', self.large_and_concurrent)]:
            c.section(self.n(name), fn)

    # ------------------------------------------------------------------------------------------
    def objects(self):
        c, b = self.c, self.b
        data = os.urandom(1000)
        key = self.base + 'obj.bin'
        r = b.put_object(key, data, headers={'Content-Type': 'application/x-test', 'x-oss-meta-author': 'alice',
                                             'x-oss-meta-Mixed-Case': 'Yes', 'Cache-Control': 'no-cache',
                                             'x-oss-server-side-encryption': 'AES256'})
        c.eq(self.n('put_object status'), r.status, 200)
        c.eq(self.n('put_object ETag is uppercase hex MD5'), r.etag, md5_hex(data))
        c.eq(self.n('put_object crc64 (oss2 also verified it)'), r.crc, crc64(data))
        c.eq(self.n('put_object echoes x-oss-server-side-encryption'),
             r.headers.get('x-oss-server-side-encryption'), 'AES256')
        c.ok(self.n('put_object has x-oss-request-id'), bool(r.request_id))
        g = b.get_object(key)
        body = g.read()
        c.eq(self.n('get_object body'), body, data)
        c.eq(self.n('get_object status'), g.status, 200)
        c.eq(self.n('get_object x-oss-meta-author'), g.headers.get('x-oss-meta-author'), 'alice')
        c.eq(self.n('get_object x-oss-meta-mixed-case (lowercased name)'), g.headers.get('x-oss-meta-mixed-case'), 'Yes')
        c.eq(self.n('get_object content type'), g.content_type, 'application/x-test')
        c.eq(self.n('get_object Cache-Control'), g.headers.get('Cache-Control'), 'no-cache')
        c.eq(self.n('get_object object type'), g.object_type, 'Normal')
        c.eq(self.n('get_object etag'), g.etag, md5_hex(data))
        c.eq(self.n('get_object content length'), g.content_length, 1000)
        c.ok(self.n('get_object Last-Modified is recent'), abs(g.last_modified - time.time()) < 120)
        c.ok(self.n('get_object has Date header'), 'Date' in g.headers)
        c.eq(self.n('get_object SSE header'), g.headers.get('x-oss-server-side-encryption'), 'AES256')
        h = b.head_object(key)
        c.eq(self.n('head_object content length'), h.content_length, 1000)
        c.eq(self.n('head_object etag'), h.etag, md5_hex(data))
        c.eq(self.n('head_object object type'), h.object_type, 'Normal')
        c.eq(self.n('head_object meta'), h.headers.get('x-oss-meta-author'), 'alice')
        c.eq(self.n('head_object crc'), h.server_crc, crc64(data))
        m = b.get_object_meta(key)
        c.eq(self.n('get_object_meta content length'), m.content_length, 1000)
        c.eq(self.n('get_object_meta etag'), m.etag, md5_hex(data))
        c.ok(self.n('object_exists (present)'), b.object_exists(key) is True)
        c.ok(self.n('object_exists (absent)'), b.object_exists(key + '.missing') is False)
        c.raises(self.n('head_object absent -> 404 NoSuchKey via x-oss-err'),
                 lambda: b.head_object(key + '.missing'), 404, 'NoSuchKey')
        c.raises(self.n('get_object absent -> 404 NoSuchKey'), lambda: b.get_object(key + '.missing'),
                 404, 'NoSuchKey')
        md5b64 = base64.b64encode(hashlib.md5(data).digest()).decode()
        r = b.put_object(key + '.md5', data, headers={'Content-MD5': md5b64})
        c.eq(self.n('put_object with correct Content-MD5'), r.status, 200)
        c.raises(self.n('put_object with wrong Content-MD5 -> InvalidDigest'),
                 lambda: b.put_object(key + '.badmd5', data + b'x', headers={'Content-MD5': md5b64}),
                 400, 'InvalidDigest')
        c.ok(self.n('failed Content-MD5 upload left no object'), not b.object_exists(key + '.badmd5'))
        # overwrite replaces content and metadata
        b.put_object(key + '.ow', b'first', headers={'x-oss-meta-v': '1'})
        b.put_object(key + '.ow', b'second!')
        g = b.get_object(key + '.ow')
        c.eq(self.n('overwrite replaces content'), g.read(), b'second!')
        c.eq(self.n('overwrite replaces metadata'), g.headers.get('x-oss-meta-v'), None)
        c.raises(self.n('x-oss-forbid-overwrite -> FileAlreadyExists'),
                 lambda: b.put_object(key + '.ow', b'x', headers={'x-oss-forbid-overwrite': 'true'}),
                 409, 'FileAlreadyExists')
        g = b.get_object(key, params={'response-content-type': 'text/x-override'})
        g.read()
        c.eq(self.n('response-content-type override'), g.headers.get('Content-Type'), 'text/x-override')

    def ranges(self):
        c, b = self.c, self.b
        data = os.urandom(1000)
        key = self.base + 'range.bin'
        b.put_object(key, data)
        g = b.get_object(key, byte_range=(10, 19))
        c.eq(self.n('range 10-19 status'), g.status, 206)
        c.eq(self.n('range 10-19 body'), g.read(), data[10:20])
        c.eq(self.n('range 10-19 Content-Range'), g.headers.get('Content-Range'), 'bytes 10-19/1000')
        g = b.get_object(key, byte_range=(990, None))
        c.eq(self.n('range 990- body'), g.read(), data[990:])
        g = b.get_object(key, byte_range=(None, 7))
        c.eq(self.n('range -7 (suffix) body'), g.read(), data[-7:])
        g = b.get_object(key, byte_range=(999, 999))
        c.eq(self.n('range last byte'), g.read(), data[999:])
        g = b.get_object(key, byte_range=(5000, 6000))
        c.eq(self.n('unsatisfiable range without standard behaviour -> 200'), g.status, 200)
        c.eq(self.n('unsatisfiable range without standard behaviour -> whole object'), g.read(), data)
        g = b.get_object(key, byte_range=(900, 5000))
        c.eq(self.n('range past the end without standard behaviour -> 200'), g.status, 200)
        g.read()
        std = {'x-oss-range-behavior': 'standard'}
        c.raises(self.n('unsatisfiable range with x-oss-range-behavior: standard -> 416 InvalidRange'),
                 lambda: b.get_object(key, byte_range=(5000, 6000), headers=std), 416, 'InvalidRange')
        c.raises(self.n('range start == size with standard -> 416'),
                 lambda: b.get_object(key, byte_range=(1000, None), headers=std), 416, 'InvalidRange')
        g = b.get_object(key, byte_range=(900, 5000), headers=std)
        c.eq(self.n('range past the end with standard -> 206'), g.status, 206)
        c.eq(self.n('range past the end with standard -> clamped body'), g.read(), data[900:])
        c.eq(self.n('range past the end with standard -> Content-Range'), g.headers.get('Content-Range'),
             'bytes 900-999/1000')
        empty = self.base + 'empty-range'
        b.put_object(empty, b'')
        g = b.get_object(empty, byte_range=(0, 0))
        c.eq(self.n('range on 0-byte object without standard -> 200 empty'), (g.status, g.read()), (200, b''))
        c.raises(self.n('range on 0-byte object with standard -> 416'),
                 lambda: b.get_object(empty, byte_range=(0, 0), headers=std), 416, 'InvalidRange')

    SPECIAL = [u'unicode-\u00e9\u4e2d\u6587\U0001F680', 'space key', 'hash#key', 'pct%25key%', 'plus+key',
               'a//b', 'dir/trailing/', 'q?mark&amp=x', 'quote\'"<>&', 'tilde~*()!$,;:@=', 'zero-byte',
               u'mixed \u00fc/ #%+ /end', 'dots/../x/./y']

    def special_keys(self):
        c, b = self.c, self.b
        prefix = self.base + 'keys/'
        stored = {}
        for i, name in enumerate(self.SPECIAL):
            key = prefix + name
            data = b'' if name == 'zero-byte' else (u'content of %s #%d' % (name, i)).encode('utf-8')
            b.put_object(key, data)
            stored[key] = data
        for key, data in stored.items():
            c.eq(self.n('special key round-trip %r' % key[len(prefix):]), b.get_object(key).read(), data)
            c.eq(self.n('special key head size %r' % key[len(prefix):]), b.head_object(key).content_length, len(data))
        listed = [o.key for o in oss2.ObjectIteratorV2(b, prefix=prefix, max_keys=4)]
        want = sorted(stored, key=lambda k: k.encode('utf-8'))
        c.eq(self.n('special keys listed (utf-8 byte order, url-encoded transport)'), listed, want)
        sizes = dict((o.key, o.size) for o in oss2.ObjectIteratorV2(b, prefix=prefix))
        c.eq(self.n('listed sizes'), sizes, dict((k, len(v)) for k, v in stored.items()))
        # oss2's list_objects_v2(encoding_type=None) crashes V4 signing client-side (None param value), so
        # send the request without encoding-type through oss2's own request path and parser.
        resp = getattr(b, '_Bucket__do_bucket')('GET', params={'list-type': '2', 'prefix': prefix, 'max-keys': '1000'})
        res = oss2.xml_utils.parse_list_objects_v2(oss2.models.ListObjectsV2Result(resp), resp.read())
        c.eq(self.n('listing without encoding-type (XML escaped)'), [o.key for o in res.object_list], want)

    def listing(self):
        c, b = self.c, self.b
        p = self.base + 'list/'
        names = ['a1', 'a2', 'a3', 'd1/x', 'd1/y', 'd2/z', 'd2/w/q', 'e', 'f', 'g/', 'h']
        for nm in names:
            b.put_object(p + nm, nm.encode())
        # no delimiter, paging by 2
        got, pages, token, truncs = [], 0, '', []
        while True:
            r = b.list_objects_v2(prefix=p, continuation_token=token, max_keys=2)
            pages += 1
            c.ok(self.n('page %d has <= 2 entries' % pages), len(r.object_list) <= 2)
            got.extend(o.key for o in r.object_list)
            truncs.append(r.is_truncated)
            if not r.is_truncated:
                break
            token = r.next_continuation_token
        c.eq(self.n('paged listing (max_keys=2) returns every key once, in order'), got, [p + n for n in sorted(names)])
        c.eq(self.n('paged listing truncation flags'), truncs, [True] * (pages - 1) + [False])
        # delimiter
        keys, prefixes, token, pages = [], [], '', 0
        while True:
            r = b.list_objects_v2(prefix=p, delimiter='/', continuation_token=token, max_keys=2)
            pages += 1
            c.ok(self.n('delimiter page %d has <= 2 entries' % pages), len(r.object_list) + len(r.prefix_list) <= 2)
            keys.extend(o.key for o in r.object_list)
            prefixes.extend(r.prefix_list)
            if not r.is_truncated:
                break
            token = r.next_continuation_token
        c.eq(self.n('delimiter listing keys'), keys, [p + n for n in ['a1', 'a2', 'a3', 'e', 'f', 'h']])
        c.eq(self.n('delimiter listing common prefixes'), prefixes, [p + 'd1/', p + 'd2/', p + 'g/'])
        r = b.list_objects_v2(prefix=p + 'd', delimiter='/')
        c.eq(self.n('prefix "d" + delimiter'), (r.prefix_list, [o.key for o in r.object_list]),
             ([p + 'd1/', p + 'd2/'], []))
        r = b.list_objects_v2(prefix=p, start_after=p + 'a2', max_keys=3)
        c.eq(self.n('start_after'), [o.key for o in r.object_list], [p + 'a3', p + 'd1/x', p + 'd1/y'])
        r = b.list_objects_v2(prefix=p + 'nothing-here/')
        c.eq(self.n('empty listing'), (r.object_list, r.prefix_list, r.is_truncated), ([], [], False))
        r = b.list_objects_v2(prefix=p, fetch_owner=True, max_keys=1)
        c.ok(self.n('fetch_owner returns Owner'), r.object_list[0].owner is not None)
        o = r.object_list[0]
        c.eq(self.n('listed ETag/Type/Size/StorageClass'), (o.etag, o.type, o.size, o.storage_class),
             (md5_hex(b'a1'), 'Normal', 2, 'Standard'))
        c.ok(self.n('listed LastModified is recent'), abs(o.last_modified - time.time()) < 120)
        v1 = [o.key for o in oss2.ObjectIterator(b, prefix=p, max_keys=3)]
        c.eq(self.n('ListObjects (v1, marker paging)'), v1, [p + n for n in sorted(names)])
        v1d = oss2.ObjectIterator(b, prefix=p, delimiter='/', max_keys=2)
        got = [(o.key, o.is_prefix()) for o in v1d]
        c.eq(self.n('ListObjects (v1) with delimiter'), got,
             [(p + 'a1', False), (p + 'a2', False), (p + 'a3', False), (p + 'd1/', True), (p + 'd2/', True),
              (p + 'e', False), (p + 'f', False), (p + 'g/', True), (p + 'h', False)])
        c.raises(self.n('max-keys 1001 -> InvalidArgument'), lambda: b.list_objects_v2(prefix=p, max_keys=1001),
                 400, 'InvalidArgument')

    def batch_delete(self):
        c, b = self.c, self.b
        p = self.base + 'batch/'
        keys = [p + 'one', p + u't w\u00f6 #%', p + 'three/x', p + 'amp&<>']
        for k in keys:
            b.put_object(k, b'x')
        r = b.batch_delete_objects(keys + [p + 'never-existed'])
        c.eq(self.n('batch_delete_objects deleted keys (incl. missing key)'), sorted(r.deleted_keys),
             sorted(keys + [p + 'never-existed']))
        c.eq(self.n('batch-deleted objects are gone'), [b.object_exists(k) for k in keys], [False] * len(keys))
        c.raises(self.n('batch delete of 1001 keys -> MalformedXML'),
                 lambda: b.batch_delete_objects(['k%d' % i for i in range(1001)]), 400, 'MalformedXML')
        do_bucket = getattr(b, '_Bucket__do_bucket')
        xml = b'<Delete><Quiet>false</Quiet><Object><Key>x</Key></Object></Delete>'
        c.raises(self.n('batch delete with wrong Content-MD5 -> InvalidDigest'),
                 lambda: do_bucket('POST', data=xml, params={'delete': ''},
                                   headers={'Content-MD5': base64.b64encode(b'0' * 16).decode()}),
                 400, 'InvalidDigest')
        c.raises(self.n('batch delete without Content-MD5 -> InvalidDigest'),
                 lambda: do_bucket('POST', data=xml, params={'delete': ''}), 400, 'InvalidDigest')
        b.put_object(p + 'q1', b'x')
        quiet = b'<Delete><Quiet>true</Quiet><Object><Key>%s</Key></Object></Delete>' % (p + 'q1').encode()
        resp = do_bucket('POST', data=quiet, params={'delete': ''},
                         headers={'Content-MD5': base64.b64encode(hashlib.md5(quiet).digest()).decode()})
        body = resp.read()
        c.ok(self.n('quiet batch delete lists nothing'), b'<Deleted>' not in body and b'<DeleteResult' in body)
        c.ok(self.n('quiet batch delete deleted'), not b.object_exists(p + 'q1'))

    def copy(self):
        c, b, a = self.c, self.b, self.args
        p = self.base + 'copy/'
        data = os.urandom(5000)
        src = p + u'src \u00e9#%+.bin'
        b.put_object(src, data, headers={'x-oss-meta-author': 'bob', 'Content-Type': 'application/x-src'})
        r = b.copy_object(a.bucket, src, p + 'dst 1')
        c.eq(self.n('copy_object ETag header'), r.etag, md5_hex(data))
        g = b.get_object(p + 'dst 1')
        c.eq(self.n('copy_object content'), g.read(), data)
        c.eq(self.n('copy_object copies metadata (COPY)'), (g.headers.get('x-oss-meta-author'), g.content_type),
             ('bob', 'application/x-src'))
        b.copy_object(a.bucket, src, p + 'dst 2', headers={'x-oss-metadata-directive': 'REPLACE',
                                                         'x-oss-meta-new': 'v', 'Content-Type': 'text/x-new'})
        h = b.head_object(p + 'dst 2')
        c.eq(self.n('copy_object REPLACE metadata'),
             (h.headers.get('x-oss-meta-author'), h.headers.get('x-oss-meta-new'), h.content_type),
             (None, 'v', 'text/x-new'))
        c.raises(self.n('copy_object missing source -> NoSuchKey'),
                 lambda: b.copy_object(a.bucket, p + 'nope', p + 'dst 3'), 404, 'NoSuchKey')
        c.raises(self.n('copy_object from unknown bucket -> NoSuchBucket'),
                 lambda: b.copy_object('no-such-bucket-here', 'k', p + 'dst 3'), 404, 'NoSuchBucket')
        b.update_object_meta(src, {'x-oss-meta-author': 'carol', 'Content-Type': 'application/x-src'})
        g = b.get_object(src)
        c.eq(self.n('update_object_meta (copy onto itself)'), (g.read(), g.headers.get('x-oss-meta-author')),
             (data, 'carol'))
        resp = getattr(b, '_Bucket__do_object')('PUT', p + 'dst 4', headers={
            'x-oss-copy-source': '/%s/%s' % (a.bucket, quote(src, safe=''))})
        body = resp.read()
        c.ok(self.n('CopyObject XML body'), b'<CopyObjectResult>' in body and md5_hex(data).encode() in body
             and b'<LastModified>' in body, body)
        if a.copy_limit:
            big = os.urandom(a.copy_limit + 1)
            b.put_object(p + 'big', big)
            c.raises(self.n('copy_object above --copy-limit -> 400 EntityTooLarge'),
                     lambda: b.copy_object(a.bucket, p + 'big', p + 'big-copy'), 400, 'EntityTooLarge')
            # the way the driver must do it: multipart + UploadPartCopy
            up = b.init_multipart_upload(p + 'big-copy').upload_id
            half = max(len(big) // 2, 100 * 1024)
            parts = []
            for n, (s, e) in enumerate([(0, half - 1), (half, len(big) - 1)], 1):
                r = b.upload_part_copy(a.bucket, p + 'big', (s, e), p + 'big-copy', up, n)
                parts.append(PartInfo(n, r.etag))
                c.eq(self.n('upload_part_copy part %d ETag' % n), r.etag, md5_hex(big[s:e + 1]))
            b.complete_multipart_upload(p + 'big-copy', up, parts)
            c.eq(self.n('large copy via UploadPartCopy content'), b.get_object(p + 'big-copy').read(), big)

    def multipart(self):
        c, b, a = self.c, self.b, self.args
        p = self.base + 'mp/'
        key = p + u'obj \u00fc#%.bin'
        src = p + 'src.bin'
        srcdata = os.urandom(300 * 1024)
        b.put_object(src, srcdata)
        init = b.init_multipart_upload(key, headers={'Content-Type': 'application/x-mp', 'x-oss-meta-mp': 'yes'})
        uid = init.upload_id
        c.ok(self.n('init_multipart_upload returns an upload id'), bool(uid))
        p1 = os.urandom(150 * 1024)
        p3 = os.urandom(120 * 1024)
        p4 = b'tail-bytes'
        r1 = b.upload_part(key, uid, 1, p1)
        c.eq(self.n('upload_part 1 ETag'), r1.etag, md5_hex(p1))
        c.eq(self.n('upload_part 1 crc'), r1.crc, crc64(p1))
        rng = (1000, 1000 + 110 * 1024 - 1)
        p2 = srcdata[rng[0]:rng[1] + 1]
        r2 = b.upload_part_copy(a.bucket, src, rng, key, uid, 2)
        c.eq(self.n('upload_part_copy (byte range) ETag'), r2.etag, md5_hex(p2))
        r3 = b.upload_part(key, uid, 3, p3)
        r4 = b.upload_part(key, uid, 4, p4)
        # re-uploading a part replaces it
        b.upload_part(key, uid, 3, b'will be replaced')
        r3 = b.upload_part(key, uid, 3, p3)
        lp = b.list_parts(key, uid, max_parts=2)
        c.eq(self.n('list_parts page 1'), [(x.part_number, x.etag, x.size) for x in lp.parts],
             [(1, md5_hex(p1), len(p1)), (2, md5_hex(p2), len(p2))])
        c.eq(self.n('list_parts page 1 truncated / next marker'), (lp.is_truncated, lp.next_marker), (True, '2'))
        lp2 = b.list_parts(key, uid, marker=lp.next_marker, max_parts=2)
        c.eq(self.n('list_parts page 2'), [(x.part_number, x.size) for x in lp2.parts], [(3, len(p3)), (4, len(p4))])
        c.eq(self.n('list_parts page 2 not truncated'), lp2.is_truncated, False)
        ups = b.list_multipart_uploads(prefix=p)
        c.eq(self.n('list_multipart_uploads finds the upload'), [(u.key, u.upload_id) for u in ups.upload_list],
             [(key, uid)])
        c.ok(self.n('list_multipart_uploads Initiated is recent'),
             abs(ups.upload_list[0].initiation_date - time.time()) < 120)
        parts = [PartInfo(1, r1.etag), PartInfo(2, r2.etag), PartInfo(3, r3.etag), PartInfo(4, r4.etag)]
        bad = [PartInfo(1, r1.etag), PartInfo(2, r2.etag), PartInfo(3, r1.etag), PartInfo(4, r4.etag)]
        c.raises(self.n('complete with a wrong part ETag -> InvalidPart'),
                 lambda: b.complete_multipart_upload(key, uid, bad), 400, 'InvalidPart')
        c.raises(self.n('complete with an unknown part -> InvalidPart'),
                 lambda: b.complete_multipart_upload(key, uid, parts + [PartInfo(9, r4.etag)]), 400, 'InvalidPart')
        do_object = getattr(b, '_Bucket__do_object')
        unordered = (b'<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>"%s"</ETag></Part>'
                     b'<Part><PartNumber>1</PartNumber><ETag>"%s"</ETag></Part></CompleteMultipartUpload>'
                     % (r2.etag.encode(), r1.etag.encode()))
        c.raises(self.n('complete with parts out of order -> InvalidPartOrder'),
                 lambda: do_object('POST', key, params={'uploadId': uid}, data=unordered), 400, 'InvalidPartOrder')
        c.raises(self.n('complete with malformed XML -> MalformedXML'),
                 lambda: do_object('POST', key, params={'uploadId': uid}, data=b'<nope'), 400, 'MalformedXML')
        r = b.complete_multipart_upload(key, uid, parts)
        want_etag = '%s-4' % hashlib.md5(b''.join(hashlib.md5(x).digest() for x in (p1, p2, p3, p4))).hexdigest().upper()
        c.eq(self.n('complete_multipart_upload ETag "<HEX>-<n>"'), r.etag, want_etag)
        whole = p1 + p2 + p3 + p4
        g = b.get_object(key)
        c.eq(self.n('multipart object content'), g.read(), whole)
        c.eq(self.n('multipart object type / meta / content type'),
             (g.object_type, g.headers.get('x-oss-meta-mp'), g.content_type), ('Multipart', 'yes', 'application/x-mp'))
        c.eq(self.n('multipart object crc64'), g.server_crc, crc64(whole))
        c.raises(self.n('upload_part after complete -> NoSuchUpload'),
                 lambda: b.upload_part(key, uid, 5, b'x'), 404, 'NoSuchUpload')
        c.eq(self.n('completed upload no longer listed'), b.list_multipart_uploads(prefix=p).upload_list, [])
        # complete-all header
        uid2 = b.init_multipart_upload(p + 'all').upload_id
        b.upload_part(p + 'all', uid2, 1, p1)
        b.upload_part(p + 'all', uid2, 2, p4)
        b.complete_multipart_upload(p + 'all', uid2, None, headers={'x-oss-complete-all': 'yes'})
        c.eq(self.n('complete with x-oss-complete-all: yes'), b.get_object(p + 'all').read(), p1 + p4)

    def multipart_errors(self):
        c, b = self.c, self.b
        p = self.base + 'mperr/'
        key = p + 'small'
        uid = b.init_multipart_upload(key).upload_id
        s1 = b.upload_part(key, uid, 1, b'a' * 1024)
        s2 = b.upload_part(key, uid, 2, b'b' * 1024)
        c.raises(self.n('complete with a non-last part < 100 KiB -> EntityTooSmall'),
                 lambda: b.complete_multipart_upload(key, uid, [PartInfo(1, s1.etag), PartInfo(2, s2.etag)]),
                 400, 'EntityTooSmall')
        r = b.complete_multipart_upload(key, uid, [PartInfo(1, s1.etag)])
        c.eq(self.n('single small part completes'), b.get_object(key).read(), b'a' * 1024)
        c.ok(self.n('single part ETag "-1"'), r.etag.endswith('-1'))
        uid = b.init_multipart_upload(key + '2').upload_id
        b.upload_part(key + '2', uid, 1, b'x')
        r = b.abort_multipart_upload(key + '2', uid)
        c.eq(self.n('abort_multipart_upload -> 204'), r.status, 204)
        c.raises(self.n('abort twice -> NoSuchUpload'), lambda: b.abort_multipart_upload(key + '2', uid),
                 404, 'NoSuchUpload')
        c.raises(self.n('list_parts of aborted upload -> NoSuchUpload'), lambda: b.list_parts(key + '2', uid),
                 404, 'NoSuchUpload')
        c.raises(self.n('upload_part with unknown upload id -> NoSuchUpload'),
                 lambda: b.upload_part(key, 'DEADBEEF', 1, b'x'), 404, 'NoSuchUpload')
        uid = b.init_multipart_upload(key + '3').upload_id
        c.raises(self.n('upload id used with another key -> NoSuchUpload'),
                 lambda: b.upload_part(key + '-other', uid, 1, b'x'), 404, 'NoSuchUpload')
        c.raises(self.n('part number 10001 -> InvalidArgument'),
                 lambda: b.upload_part(key + '3', uid, 10001, b'x'), 400, 'InvalidArgument')
        c.raises(self.n('part number 0 -> InvalidArgument'),
                 lambda: b.upload_part(key + '3', uid, 0, b'x'), 400, 'InvalidArgument')
        b.abort_multipart_upload(key + '3', uid)

    def list_uploads(self):
        c, b = self.c, self.b
        p = self.base + 'ups/'
        made = []
        for k in ['a', 'a', 'b', 'dir/x', 'dir/y', 'z']:
            made.append((p + k, b.init_multipart_upload(p + k).upload_id))
        got = [(u.key, u.upload_id) for u in oss2.MultipartUploadIterator(b, prefix=p, max_uploads=2)]
        c.eq(self.n('MultipartUploadIterator paging (max_uploads=2)'), got, sorted(made))
        res = b.list_multipart_uploads(prefix=p, delimiter='/')
        c.eq(self.n('list_multipart_uploads with delimiter'),
             ([u.key for u in res.upload_list], res.prefix_list), ([p + 'a', p + 'a', p + 'b', p + 'z'], [p + 'dir/']))
        for k, u in made:
            b.abort_multipart_upload(k, u)
        c.eq(self.n('aborted uploads no longer listed'), b.list_multipart_uploads(prefix=p).upload_list, [])

    def append(self):
        c, b = self.c, self.b
        key = self.base + u'append \u00e9.log'
        r1 = b.append_object(key, 0, b'abc', headers={'x-oss-meta-kind': 'log', 'Content-Type': 'text/plain'})
        c.eq(self.n('append_object(0) next position'), r1.next_position, 3)
        c.eq(self.n('append_object(0) crc'), r1.crc, crc64(b'abc'))
        r2 = b.append_object(key, 3, b'defg', init_crc=r1.crc)  # oss2 checks the combined crc itself
        c.eq(self.n('append_object(3) next position'), r2.next_position, 7)
        c.eq(self.n('append_object(3) crc of whole object'), r2.crc, crc64(b'abcdefg'))
        try:
            b.append_object(key, 3, b'zzz')
            c.ok(self.n('append at a wrong position -> PositionNotEqualToLength'), False, '(no error)')
        except E.PositionNotEqualToLength as e:
            c.ok(self.n('append at a wrong position -> 409 PositionNotEqualToLength'), e.status == 409)
            c.eq(self.n('PositionNotEqualToLength x-oss-next-append-position'),
                 e.headers.get('x-oss-next-append-position'), '7')
        g = b.get_object(key)
        c.eq(self.n('appendable object content'), g.read(), b'abcdefg')
        c.eq(self.n('appendable object type / meta'), (g.object_type, g.headers.get('x-oss-meta-kind')),
             ('Appendable', 'log'))
        h = b.head_object(key)
        c.eq(self.n('head appendable next position'), h.headers.get('x-oss-next-append-position'), '7')
        b.put_object(self.base + 'normal', b'n')
        c.raises(self.n('append to a Normal object -> ObjectNotAppendable'),
                 lambda: b.append_object(self.base + 'normal', 1, b'x'), 409, 'ObjectNotAppendable')
        b.put_object(key, b'replaced')
        c.eq(self.n('PutObject over an appendable object makes it Normal'), b.head_object(key).object_type, 'Normal')

    def delete(self):
        c, b = self.c, self.b
        key = self.base + 'del me'
        b.put_object(key, b'x')
        r = b.delete_object(key)
        c.eq(self.n('delete_object -> 204'), r.status, 204)
        c.raises(self.n('get after delete -> NoSuchKey'), lambda: b.get_object(key), 404, 'NoSuchKey')
        r = b.delete_object(key)
        c.eq(self.n('delete_object of a missing key -> 204'), r.status, 204)

    def presign(self):
        c, b = self.c, self.b
        p = self.base + 'presign/'
        for name in ['plain.txt', u'\u00fcnicode #%+ sp', 'zero', 'a//b']:
            data = b'' if name == 'zero' else os.urandom(333)
            b.put_object(p + name, data)
            url = b.sign_url('GET', p + name, 60)
            st, _, body = http('GET', url)
            c.eq(self.n('presigned GET %r' % name), (st, body), (200, data))
        data = os.urandom(1000)
        b.put_object(p + 'r', data)
        st, hdrs, body = http('GET', b.sign_url('GET', p + 'r', 60), headers={'Range': 'bytes=5-9'})
        c.eq(self.n('presigned GET with Range'), (st, body), (206, data[5:10]))
        url = b.sign_url('PUT', p + 'put.txt', 60, headers={'Content-Type': 'text/plain'})
        st, _, body = http('PUT', url, data=b'presigned put', headers={'Content-Type': 'text/plain'})
        c.eq(self.n('presigned PUT with signed Content-Type'), st, 200)
        g = b.get_object(p + 'put.txt')
        c.eq(self.n('presigned PUT content/type'), (g.read(), g.content_type), (b'presigned put', 'text/plain'))
        st, _, body = http('PUT', url, data=b'x', headers={'Content-Type': 'text/html'})
        self.c.expected_signature_failures += 1
        c.eq(self.n('presigned PUT with a different Content-Type -> SignatureDoesNotMatch'),
             (st, error_code(body)[0]), (403, 'SignatureDoesNotMatch'))
        url = b.sign_url('GET', p + 'plain.txt', 60)
        sig_param = 'Signature=' if 'Signature=' in url and 'x-oss-signature=' not in url else 'x-oss-signature='
        i = url.index(sig_param) + len(sig_param)
        j = url.find('&', i)
        j = len(url) if j < 0 else j
        sig = url[i:j]
        # A character that differs from the first one even ignoring case (V4's hex
        # signature is compared case-insensitively, so 'a' -> 'A' would change nothing).
        tampered = url[:i] + ('0' if sig[0].lower() != '0' else '1') + sig[1:] + url[j:]
        st, _, body = http('GET', tampered)
        self.c.expected_signature_failures += 1
        c.eq(self.n('tampered presigned URL -> SignatureDoesNotMatch'), (st, error_code(body)[0]),
             (403, 'SignatureDoesNotMatch'))
        other = url.replace(quote(p + 'plain.txt', safe=''), quote(p + 'zero', safe=''))
        st, _, body = http('GET', other)
        self.c.expected_signature_failures += 1
        c.eq(self.n('presigned URL used for another key -> SignatureDoesNotMatch'), (st, error_code(body)[0]),
             (403, 'SignatureDoesNotMatch'))
        expired = b.sign_url('GET', p + 'plain.txt', 1)
        time.sleep(2.2)
        st, _, body = http('GET', expired)
        code, msg = error_code(body)
        c.eq(self.n('expired presigned URL -> 403 AccessDenied'), (st, code), (403, 'AccessDenied'))
        c.ok(self.n('expired presigned URL message'), 'expired' in (msg or ''), msg)

    def bucket_calls(self):
        c, b = self.c, self.b
        info = b.get_bucket_info()
        c.eq(self.n('get_bucket_info name'), info.name, self.args.bucket)
        c.eq(self.n('get_bucket_location'), b.get_bucket_location().location, 'oss-' + self.args.region)
        nb = self.bucket(self.auth, 'no-such-bucket-here')
        c.raises(self.n('get_object on unknown bucket -> NoSuchBucket'), lambda: nb.get_object('k'),
                 404, 'NoSuchBucket')
        c.raises(self.n('put_object on unknown bucket -> NoSuchBucket'), lambda: nb.put_object('k', b'x' * 5000),
                 404, 'NoSuchBucket')
        c.raises(self.n('list_objects_v2 on unknown bucket -> NoSuchBucket'), lambda: nb.list_objects_v2(),
                 404, 'NoSuchBucket')

    def rejections(self):
        c, b, a = self.c, self.b, self.args
        key = self.base + 'reject.bin'
        b.put_object(key, b'protected')
        wrong = self.bucket(self.auth_factory(a.access_key_id, a.access_key_secret + 'x', a.security_token))
        c.raises(self.n('wrong secret: put_object (200 KiB body) -> SignatureDoesNotMatch'),
                 lambda: wrong.put_object(key, os.urandom(200 * 1024)), 403, 'SignatureDoesNotMatch', signature=True)
        c.eq(self.n('connection still usable after a rejected upload'), b.get_object(key).read(), b'protected')
        c.raises(self.n('wrong secret: get_object -> SignatureDoesNotMatch'), lambda: wrong.get_object(key),
                 403, 'SignatureDoesNotMatch', signature=True)
        c.raises(self.n('wrong secret: head_object -> SignatureDoesNotMatch (x-oss-err)'),
                 lambda: wrong.head_object(key), 403, 'SignatureDoesNotMatch', signature=True)
        c.raises(self.n('wrong secret: list_objects_v2 -> SignatureDoesNotMatch'),
                 lambda: wrong.list_objects_v2(prefix=self.base), 403, 'SignatureDoesNotMatch', signature=True)
        unknown = self.bucket(self.auth_factory('NoSuchAccessKey', a.access_key_secret, a.security_token))
        c.raises(self.n('unknown access key -> InvalidAccessKeyId'), lambda: unknown.get_object(key),
                 403, 'InvalidAccessKeyId')
        if a.security_token:
            badtok = self.bucket(self.auth_factory(a.access_key_id, a.access_key_secret, a.security_token + 'x'))
            c.raises(self.n('wrong security token -> InvalidSecurityToken'), lambda: badtok.get_object(key),
                     403, 'InvalidSecurityToken')
            notok = self.bucket(self.auth_factory(a.access_key_id, a.access_key_secret, None))
            c.raises(self.n('missing security token -> InvalidAccessKeyId'), lambda: notok.get_object(key),
                     403, 'InvalidAccessKeyId')
        else:
            tok = self.bucket(self.auth_factory(a.access_key_id, a.access_key_secret, 'unexpected-token'))
            c.raises(self.n('token sent for a non-STS key -> InvalidAccessKeyId'), lambda: tok.get_object(key),
                     403, 'InvalidAccessKeyId')
        # tampering after signing
        tamper_meta = self.bucket(Tamper(self.auth, 'meta'))
        c.raises(self.n('x-oss-meta header changed after signing -> SignatureDoesNotMatch'),
                 lambda: tamper_meta.put_object(key + '.t', b'x', headers={'x-oss-meta-a': 'signed'}),
                 403, 'SignatureDoesNotMatch', signature=True)
        tamper_sig = self.bucket(Tamper(self.auth, 'signature'))
        c.raises(self.n('Authorization signature altered -> SignatureDoesNotMatch'),
                 lambda: tamper_sig.get_object(key), 403, 'SignatureDoesNotMatch', signature=True)
        tamper_date = self.bucket(Tamper(self.auth, 'old-date'))
        c.raises(self.n('request dated 20 minutes ago -> RequestTimeTooSkewed'),
                 lambda: tamper_date.get_object(key), 403, 'RequestTimeTooSkewed')
        tamper_ua = self.bucket(Tamper(self.auth, 'user-agent'))
        g = tamper_ua.get_object(key)
        c.eq(self.n('unsigned header (User-Agent) changed after signing is accepted'), g.read(), b'protected')
        if self.label.startswith('v4'):
            extra = self.bucket(Tamper(self.auth, 'v4-additional'))
            g = extra.get_object(key, byte_range=(0, 3))
            c.eq(self.n('V4 with AdditionalHeaders=range;user-agent accepted'), g.read(), b'prot')
            extra_bad = self.bucket(Tamper(self.auth, 'v4-additional-then-ua'))
            c.raises(self.n('V4: additional header (user-agent) changed after signing -> SignatureDoesNotMatch'),
                     lambda: extra_bad.get_object(key), 403, 'SignatureDoesNotMatch', signature=True)
            region_bad = oss2.Bucket(self.auth, a.endpoint, a.bucket, is_path_style=True, region='us-west-1',
                                     session=self.session)
            c.raises(self.n('V4 scoped to another region -> SignatureDoesNotMatch'),
                     lambda: region_bad.get_object(key), 403, 'SignatureDoesNotMatch', signature=True)
        st, _, body = http('GET', '%s/%s/%s' % (a.endpoint, a.bucket, quote(key, safe='/')))
        c.eq(self.n('anonymous GET -> 403 AccessDenied'), (st, error_code(body)[0]), (403, 'AccessDenied'))
        st, _, body = http('PUT', '%s/%s/%s' % (a.endpoint, a.bucket, quote(key, safe='/')), data=b'y' * 100000)
        c.eq(self.n('anonymous PUT -> 403 AccessDenied'), (st, error_code(body)[0]), (403, 'AccessDenied'))
        c.eq(self.n('object untouched by rejected requests'), b.get_object(key).read(), b'protected')

    def large_and_concurrent(self):
        c, b = self.c, self.b
        big = os.urandom(24 * 1024 * 1024 + 17)
        key = self.base + 'big.bin'
        b.put_object(key, big)
        g = b.get_object(key)
        h = hashlib.md5()
        n = 0
        for chunk in g:
            h.update(chunk)
            n += len(chunk)
        c.eq(self.n('24 MiB object streamed back'), (n, h.hexdigest().upper()), (len(big), md5_hex(big)))
        errors = []

        def worker(i):
            try:
                for j in range(5):
                    k = '%sconc/%d/%d' % (self.base, i, j)
                    d = os.urandom(1000 + i * 100 + j)
                    b.put_object(k, d)
                    if b.get_object(k).read() != d:
                        errors.append('mismatch %s' % k)
            except Exception as e:  # noqa
                errors.append(repr(e))
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        c.eq(self.n('8 concurrent writers/readers'), errors, [])
        c.eq(self.n('concurrent objects listed'),
             len(list(oss2.ObjectIteratorV2(b, prefix=self.base + 'conc/'))), 40)


class Tamper(object):
    """Wraps an oss2 auth object and alters the request after oss2 signed it."""

    def __init__(self, inner, mode):
        self.inner = inner
        self.mode = mode

    def auth_version(self):
        return self.inner.auth_version()

    def _sign_request(self, req, bucket_name, key):
        if self.mode == 'old-date':
            offset = time.time() - 20 * 60
            import oss2.utils as u
            orig = u.http_date
            u.http_date = lambda timeval=None: orig(offset)
            try:
                import datetime as dt
                import oss2.auth as oa
                orig_dt = oa.datetime

                class Old(dt.datetime):
                    @classmethod
                    def utcnow(cls):
                        return dt.datetime.utcfromtimestamp(offset)
                oa.datetime = Old
                try:
                    self.inner._sign_request(req, bucket_name, key)
                finally:
                    oa.datetime = orig_dt
            finally:
                u.http_date = orig
            return
        if self.mode.startswith('v4-additional'):
            inner = getattr(self.inner, '_StsAuth__auth', self.inner)
            inner._sign_request(req, bucket_name, key, in_additional_headers=['range', 'user-agent'])
            if self.mode == 'v4-additional-then-ua':
                req.headers['User-Agent'] = 'changed-after-signing'
            return
        self.inner._sign_request(req, bucket_name, key)
        if self.mode == 'meta':
            req.headers['x-oss-meta-a'] = 'changed'
        elif self.mode == 'signature':
            a = req.headers['authorization']
            req.headers['authorization'] = a[:-2] + ('AA' if not a.endswith('AA') else 'BB')
        elif self.mode == 'user-agent':
            req.headers['User-Agent'] = 'changed-after-signing'

    def _sign_url(self, *a, **kw):
        return self.inner._sign_url(*a, **kw)


def stats(endpoint, path='/__stats', method='GET'):
    st, _, body = http(method, endpoint + path, data=b'' if method == 'POST' else None)
    return st, (json.loads(body) if body else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--endpoint', required=True)
    ap.add_argument('--bucket', required=True)
    ap.add_argument('--access-key-id', required=True)
    ap.add_argument('--access-key-secret', required=True)
    ap.add_argument('--security-token', default=None)
    ap.add_argument('--region', default='cn-hangzhou')
    ap.add_argument('--copy-limit', type=int, default=0,
                    help='the server\'s --copy-limit; when given, checks CopyObject rejects larger sources')
    a = ap.parse_args()
    a.endpoint = a.endpoint.rstrip('/')
    c = Checker()
    st, _ = stats(a.endpoint, '/__reset_stats', 'POST')
    c.eq('POST /__reset_stats', st, 204)
    session = oss2.Session()
    flavours = []
    if a.security_token:
        flavours.append(('v1-sts', oss2.StsAuth(a.access_key_id, a.access_key_secret, a.security_token),
                         lambda ak, sk, tok: oss2.StsAuth(ak, sk, tok) if tok else oss2.Auth(ak, sk)))
        flavours.append(('v4-sts', oss2.StsAuth(a.access_key_id, a.access_key_secret, a.security_token,
                                                auth_version=oss2.AUTH_VERSION_4),
                         lambda ak, sk, tok: oss2.StsAuth(ak, sk, tok, auth_version=oss2.AUTH_VERSION_4)
                         if tok else oss2.AuthV4(ak, sk)))
    else:
        flavours.append(('v1', oss2.Auth(a.access_key_id, a.access_key_secret),
                         lambda ak, sk, tok: oss2.StsAuth(ak, sk, tok) if tok else oss2.Auth(ak, sk)))
        flavours.append(('v4', oss2.AuthV4(a.access_key_id, a.access_key_secret),
                         lambda ak, sk, tok: oss2.StsAuth(ak, sk, tok, auth_version=oss2.AUTH_VERSION_4)
                         if tok else oss2.AuthV4(ak, sk)))
    for label, auth, factory in flavours:
        Suite(c, a, label, auth, factory, session).run()
    st, s = stats(a.endpoint)
    c.eq('GET /__stats', st, 200)
    if s:
        c.eq('__stats signature_failures == the deliberate ones', s['signature_failures'],
             c.expected_signature_failures)
        for op in ['PutObject', 'GetObject', 'HeadObject', 'DeleteObject', 'ListObjectsV2', 'DeleteMultipleObjects',
                   'CopyObject', 'InitiateMultipartUpload', 'UploadPart', 'UploadPartCopy', 'CompleteMultipartUpload',
                   'AbortMultipartUpload', 'ListMultipartUploads', 'ListParts', 'AppendObject', 'GetBucketInfo']:
            c.ok('__stats counted %s' % op, s['ops'].get(op, 0) > 0, s['ops'])
        print('stats: %s' % json.dumps(s, sort_keys=True))
    if c.failures:
        print('FAILED %d of %d checks' % (c.failures, c.count))
        return 1
    print('ALL OK (%d checks)' % c.count)
    return 0


if __name__ == '__main__':
    sys.exit(main())
