#!/usr/bin/env python3
"""Prints the signing vectors of crates/driver-oss/testdata/signing-vectors.json.

Every vector is a request as the oss driver sends it (method, URL, headers) signed by
Aliyun's own Python SDK, oss2 (pinned in ../testserver/requirements.txt), with fixed keys
and a frozen clock: V1 (HMAC-SHA1) and V4 (OSS4-HMAC-SHA256) Authorization headers, and
V1/V4 presigned URLs. The Rust test `signing_vectors_match_oss2` signs the same requests
with the driver's signer under the same frozen clock and compares.

    <venv with oss2>/bin/python gen_signing_vectors.py > signing-vectors.json
"""
import datetime
import json
import sys
import urllib.parse

import oss2
import oss2.auth
import oss2.utils

AK = "LTAI5tTestAccessKeyId"
SK = "TestAccessKeySecret/with+odd=chars"
TOKEN = "CAIS+sts/token==example"
REGION = "cn-hangzhou"
BUCKET = "examplebucket"
# 2025-04-11T06:41:24Z
NOW = 1744353684
NOW_DT = datetime.datetime(2025, 4, 11, 6, 41, 24)

# Freeze oss2's clocks: V1 Date header, V1 presign expiry, V4 x-oss-date.
oss2.utils.http_date = lambda timeval=None: "Fri, 11 Apr 2025 06:41:24 GMT"
oss2.auth.time.time = lambda: float(NOW)


class FrozenDatetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return NOW_DT


oss2.auth.datetime = FrozenDatetime

ENDPOINTS = {
    # virtual-hosted (real OSS)
    "virtual": ("https", f"{BUCKET}.oss-{REGION}.aliyuncs.com", ""),
    # path-style (the test server)
    "path": ("http", "127.0.0.1:9000", f"/{BUCKET}"),
}

# (name, method, key, query pairs, headers) as the driver sends them; content-length is
# what reqwest sends for bodies (Call::parts sets it for PUT and POST).
REQUESTS = [
    ("put_object", "PUT", "docker/registry/v2/blobs/sha256/ab/abcdef/data", [],
     {"content-type": "application/octet-stream", "content-length": "1024",
      "content-md5": "eB5eJF1ptWaXm4bijSPyxw==", "x-oss-meta-upload-id": "0004B9894A22E5B1888A1E29F823****",
      "x-oss-server-side-encryption": "AES256"}),
    ("get_range", "GET", "docker/a b/ünïcode+file", [],
     {"range": "bytes=1048576-", "x-oss-range-behavior": "standard"}),
    ("head", "HEAD", "docker/registry/v2/repositories/library/ubuntu/_layers/link", [], {}),
    ("list_v2", "GET", "", [("list-type", "2"), ("prefix", "docker/registry/v2/"), ("max-keys", "1000"),
                           ("encoding-type", "url"), ("delimiter", "/"), ("continuation-token", "ChR0b2tlbisvPQ==")], {}),
    ("list_start_after", "GET", "", [("list-type", "2"), ("prefix", "a/"), ("max-keys", "1000"),
                                     ("encoding-type", "url"), ("start-after", "a/b,")], {}),
    ("initiate", "POST", "big/object", [("uploads", "")],
     {"content-type": "application/octet-stream", "content-length": "0"}),
    ("upload_part", "PUT", "big/object", [("partNumber", "3"), ("uploadId", "0004B9894A22E5B1888A1E29F823+/=")],
     {"content-length": "5242880"}),
    ("upload_part_copy", "PUT", "big/copy", [("partNumber", "1"), ("uploadId", "UPLOAD1")],
     {"content-length": "0", "x-oss-copy-source": "/examplebucket/big/object",
      "x-oss-copy-source-range": "bytes=0-33554431"}),
    ("complete", "POST", "big/object", [("uploadId", "UPLOAD1")],
     {"content-type": "application/xml", "content-length": "120", "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg=="}),
    ("list_parts", "GET", "big/object", [("uploadId", "UPLOAD1"), ("part-number-marker", "1000")], {}),
    ("list_uploads", "GET", "", [("uploads", ""), ("prefix", "big/object"), ("key-marker", "big/object"),
                                 ("upload-id-marker", "UPLOAD1")], {}),
    ("abort", "DELETE", "big/object", [("uploadId", "UPLOAD1")], {}),
    ("copy_object", "PUT", "dst/file", [],
     {"content-length": "0", "x-oss-copy-source": "/examplebucket/src/file%20name"}),
    ("append", "POST", "log/appendable", [("append", ""), ("position", "1024")],
     {"content-type": "application/octet-stream", "content-length": "77"}),
    ("delete_multiple", "POST", "", [("delete", ""), ("encoding-type", "url")],
     {"content-type": "application/xml", "content-length": "210", "content-md5": "kX0bvVx8zjXWy0F1O2m0Xw=="}),
    ("delete_object", "DELETE", "dir/file", [], {}),
]

PRESIGNS = [
    ("presign_get", "GET", "docker/registry/v2/blobs/sha256/ab/abcdef/data", 1200),
    ("presign_head", "HEAD", "a b/ünï", 604800),
]


def url_of(endpoint, key, query):
    scheme, host, base = ENDPOINTS[endpoint]
    path = base + "/" + "/".join(urllib.parse.quote(seg, safe="") for seg in key.split("/")) if key else base + "/"
    q = "&".join(
        urllib.parse.quote(k, safe="-_.~") + ("=" + urllib.parse.quote(v, safe="-_.~") if v else "")
        for k, v in query
    )
    return f"{scheme}://{host}{path}" + ("?" + q if q else ""), host


def oss2_request(method, endpoint, key, query, headers):
    scheme, host, base = ENDPOINTS[endpoint]
    req = oss2.http.Request(method, f"{scheme}://{host}{base}/{key}", params=dict(query), headers=dict(headers))
    # oss2.http.Request adds its own defaults (User-Agent, Accept-Encoding); the driver's
    # signed headers are exactly `headers`.
    req.headers = oss2.http.CaseInsensitiveDict(dict(headers))
    req.region = REGION
    req.product = "oss"
    req.cloudbox_id = None
    return req


def auth_of(version, token):
    creds = oss2.credentials.StaticCredentialsProvider(AK, SK, token)
    return oss2.ProviderAuth(creds) if version == "v1" else oss2.ProviderAuthV4(creds)


def additional_headers_v4(headers):
    # What the driver's signer declares: every header that is not signed by default.
    return sorted(h for h in headers if not (h.startswith("x-oss-") or h in ("content-type", "content-md5")))


def main():
    out = {"generator": f"oss2 {oss2.__version__}", "access_key_id": AK, "access_key_secret": SK,
           "security_token": TOKEN, "region": REGION, "bucket": BUCKET, "now": NOW,
           "now_rfc3339": "2025-04-11T06:41:24Z", "vectors": []}
    for endpoint in ENDPOINTS:
        for token in (None, TOKEN):
            for version in ("v1", "v4"):
                for name, method, key, query, headers in REQUESTS:
                    if token and name not in ("put_object", "get_range", "list_v2"):
                        continue
                    url, host = url_of(endpoint, key, query)
                    req = oss2_request(method, endpoint, key, query, headers)
                    if version == "v1":
                        auth_of(version, token)._sign_request(req, BUCKET, key)
                    else:
                        auth_of(version, token)._sign_request(req, BUCKET, key, additional_headers_v4(headers))
                    signed = {k.lower(): v for k, v in req.headers.items()}
                    out["vectors"].append({
                        "name": f"{version}/{endpoint}/{name}" + ("+sts" if token else ""),
                        "version": version, "kind": "header", "sts": bool(token),
                        "method": method, "url": url, "headers": headers,
                        "expected_headers": {k: signed[k] for k in sorted(signed)
                                             if k not in headers},
                    })
                for name, method, key, expires in PRESIGNS:
                    url, host = url_of(endpoint, key, [])
                    req = oss2_request(method, endpoint, key, [], {})
                    if version == "v1":
                        signed_url = auth_of(version, token)._sign_url(req, BUCKET, key, expires)
                    else:
                        req.headers["host"] = host
                        signed_url = auth_of(version, token)._sign_url(req, BUCKET, key, expires, {"host"})
                    query = urllib.parse.parse_qsl(urllib.parse.urlsplit(signed_url).query, keep_blank_values=True)
                    out["vectors"].append({
                        "name": f"{version}/{endpoint}/{name}" + ("+sts" if token else ""),
                        "version": version, "kind": "presign", "sts": bool(token),
                        "method": method, "url": url, "expires": expires,
                        "expected_query": dict(sorted(query)),
                    })
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
