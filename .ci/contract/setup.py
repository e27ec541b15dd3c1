"""Realistic data for the contract run, created over the REST API like a region would.

Prints shell assignments (`NAME=value`) for `.ci/contract.sh` to evaluate: the tokens
schemathesis authenticates with and the ids of what was created. Standard library only.
"""

import base64
import hashlib
import hmac
import json
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = sys.argv[1].rstrip("/") + "/api/v1"
BOOTSTRAP_PASSWORD = sys.argv[2]


def call(method, path, token=None, body=None, raw=None, content_type="application/json"):
    headers = {}
    data = None
    if token:
        headers["authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = content_type
    elif raw is not None:
        data = raw
        headers["content-type"] = content_type
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        sys.exit(f"setup: {method} {path} answered {e.code}: {e.read()[:300]!r}")


def login(login_id, password, totp=None):
    body = {"login": login_id, "password": password}
    if totp:
        body["totp"] = totp
    return call("POST", "/auth/login", body=body)


def totp_code(secret_b32, at=None):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    step = int((at or time.time()) // 30)
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def user(admin, login_id, name, profession, role="user", org=None):
    body = {
        "login": login_id,
        "display_name": name,
        "password": PASSWORD,
        "profession": profession,
        "role": role,
        "must_change_password": False,
    }
    if org:
        body["organization_id"] = org
    return call("POST", "/admin/users", admin, body)["id"]


PASSWORD = "contract check passphrase"
out = {}

boot = login("admin", BOOTSTRAP_PASSWORD)["access_token"]
# The longest access-token lifetime the policy allows (1 h): one token lasts the run.
call("PATCH", "/admin/policy", boot, {"access_token_ttl_secs": 3600})
org = call("POST", "/admin/organizations", boot, {"name": "つなぐ訪問看護ステーション", "kind": "visiting_nursing_station"})["id"]
out["ORG_ID"] = org
out["ADMIN_ID"] = user(boot, "contract.admin", "契約 管理者", "clerk", "region_admin", org)
out["NURSE_ID"] = user(boot, "contract.nurse", "佐藤 看護師", "nurse", org=org)
out["FAMILY_ID"] = user(boot, "contract.family", "山田 花子", "family")
out["OUTSIDER_ID"] = user(boot, "contract.outsider", "鈴木 医師", "doctor")

admin = login("contract.admin", PASSWORD)["access_token"]
# The identity schemathesis uses has a second factor, so a fuzzed `mfa_required: true`
# in PATCH /admin/policy does not lock it out of the rest of the run.
enrol = call("POST", "/me/totp", admin)
call("POST", "/me/totp/confirm", admin, {"code": totp_code(enrol["secret"])})
nurse = login("contract.nurse", PASSWORD)["access_token"]

group = call(
    "POST",
    "/groups",
    admin,
    {
        "kind": "patient",
        "name": "山田 太郎 様",
        "patient": {
            "name": "山田 太郎",
            "name_kana": "ヤマダ タロウ",
            "birth_date": "1938-04-01",
            "sex": "male",
            "care_level": "care_3",
        },
    },
)
out["GROUP_ID"] = group["id"]
out["MAIN_THREAD_ID"] = group["main_thread_id"]
for member in (out["NURSE_ID"], out["FAMILY_ID"]):
    call("POST", f"/groups/{group['id']}/members", admin, {"user_id": member})
private = call(
    "POST", f"/groups/{group['id']}/threads", admin, {"title": "主治医と相談", "member_ids": [out["NURSE_ID"]]}
)
out["PRIVATE_THREAD_ID"] = private["id"]
msg = call(
    "POST",
    f"/threads/{group['main_thread_id']}/messages",
    nurse,
    {"body": "本日の訪問: バイタル安定。", "client_msg_id": "contract-setup-1"},
)
out["MESSAGE_ID"] = msg["id"]
call(
    "POST",
    f"/threads/{private['id']}/messages",
    admin,
    {"body": "ご家族への説明について相談です。", "client_msg_id": "contract-setup-2"},
)
name = urllib.parse.quote("訪問記録.txt")
f = call(
    "POST",
    f"/threads/{group['main_thread_id']}/files?name={name}",
    nurse,
    raw="訪問記録: 血圧 128/76\n".encode(),
    content_type="application/octet-stream",
)
out["FILE_ID"] = f["id"]
call("POST", f"/groups/{group['id']}/invitations", admin, {"max_uses": 5})

out["ADMIN_TOKEN"] = admin
# A sign-in of its own for POST /auth/logout, which ends the session its token names.
out["LOGOUT_TOKEN"] = login("contract.outsider", PASSWORD)["access_token"]
for k, v in out.items():
    print(f"{k}={v}")
