"""schemathesis hooks for surveyd (loaded by scripts/contract-test).

Twilio's webhook calls are signed the way Twilio signs them, so the fuzzer reaches the webhook
handlers instead of stopping at 403: a case that carries an X-Twilio-Signature header
gets the right signature for its URL and form. A case without the header (the
fuzzer's missing-header test) stays unsigned and must be refused.

One check of our own: a problem's `status` member is the response's HTTP status. The
contract's error responses all use the plain `Problem` schema (status 400-599), since a
per-response `const` made client generators drop every error response.
"""

import base64
import hashlib
import hmac
import json
import os
import re

import schemathesis

AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "")
ACCOUNT_SHAPE = re.compile(r"^AC[0-9a-f]{32}$")
SID_SHAPE = re.compile(r"^(SM|MM)[0-9a-f]{32}$")


def twilio_signature(url, form):
    data = url + "".join(key + value for key, value in sorted(form.items()))
    mac = hmac.new(AUTH_TOKEN.encode(), data.encode("utf-8", "surrogatepass"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


# What the schema cannot say of a company webhook's URL: its host must resolve, to public
# addresses only. A schema-valid URL (a string of 1 to 2048 characters) is made one this
# server accepts: the contract's server allows private addresses
# (WEBHOOK_ALLOW_PRIVATE_URLS=1), and nothing listens on port 9, so /test fails fast.
# The URL rules themselves are tested in WebhookEndpointAPITests.
WEBHOOK_URL = "http://127.0.0.1:9/contract"
WEBHOOK_PATH = re.compile(r"^/survey/1\.0\.0/webhooks(/[^/]+)?$")


def accepted_webhook_url(case):
    if case.method.upper() not in ("POST", "PATCH") or not WEBHOOK_PATH.match(case.path):
        return
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("url"), str) and 1 <= len(body["url"]) <= 2048:
        body["url"] = WEBHOOK_URL


@schemathesis.hook
def before_call(context, case, kwargs):
    accepted_webhook_url(case)
    if not case.path.startswith("/webhooks/twilio/") or not case.headers:
        return
    name = next((key for key in case.headers if key.lower() == "x-twilio-signature"), None)
    if name is None or not isinstance(case.body, dict):
        return
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in case.body.items()):
        return
    # What the schema cannot say: the account is this server's, and a message's ids and
    # statuses under their old names agree with the new ones. Values of the right shape are
    # made to agree (a schema-valid case stays valid); others are left for the server to refuse.
    form = case.body
    if ACCOUNT_SHAPE.match(form.get("AccountSid", "")):
        form["AccountSid"] = ACCOUNT_SID
    for alias in ("SmsSid", "SmsMessageSid"):
        if SID_SHAPE.match(form.get(alias, "")) and SID_SHAPE.match(form.get("MessageSid", "")):
            form[alias] = form["MessageSid"]
    if "MessageStatus" in form and "SmsStatus" in form and re.match(r"^[A-Za-z_]{1,32}$", form["SmsStatus"]):
        form["SmsStatus"] = form["MessageStatus"]
    signature = twilio_signature(PUBLIC_BASE_URL + case.formatted_path, form)
    case.headers[name] = signature
    if isinstance(kwargs.get("headers"), dict):
        kwargs["headers"][name] = signature


@schemathesis.check
def problem_status_is_response_status(ctx, response, case):
    """An application/problem+json body's `status` is the HTTP status (RFC 9457, 3.1.2)."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if content_type.split(";")[0].strip().lower() != "application/problem+json":
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None  # not JSON: the schema checks report it
    if not isinstance(body, dict) or "status" not in body:
        return None  # a missing member: the schema checks report it
    if body["status"] != response.status_code:
        raise AssertionError(
            f"problem status {body['status']!r} is not the response's status {response.status_code}"
        )
    return True
