"""User management API (base https://api.atlassian.com, no /admin):
account lifecycle.  Errors are {"key": ...} bodies."""

import json

from .errors import UmError


def _account(ctx):
    u = ctx.org.by_id.get(ctx.params["account_id"])
    if u is None:
        raise UmError(404, "accountNotFound")
    if u.claim != "managed":
        # Only managed accounts can be deactivated or reactivated.
        raise UmError(403, "forbidden.targetUnverified")
    return u


def _lifecycle_conflict(u, code, message):
    return UmError(409, "conflict.lifecycleErrors", {
        "message": message, "accountId": u.account_id,
        "errorCodes": [{"code": code, "message": message}]})


def disable(ctx):
    try:
        body = json.loads(ctx.req.body) if ctx.req.body.strip() else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise UmError(400, "bodyParseFailure")
    if "message" in body and not isinstance(body["message"], str):
        raise UmError(400, "fieldConstraintsViolated", {"fieldViolations": [
            {"field": "message", "violations": [{"key": "type"}]}]})
    u = _account(ctx)
    if u.account_status == "closed":
        raise _lifecycle_conflict(u, "ACCOUNT_CLOSED", "The account is closed")
    ctx.org.deactivate(u)
    return 204, None


def enable(ctx):
    u = _account(ctx)
    if u.account_status == "closed":
        raise _lifecycle_conflict(u, "ACCOUNT_CLOSED", "The account is closed")
    if u.for_deletion:
        raise _lifecycle_conflict(u, "ACCOUNT_PENDING_DELETION",
                                  "Cancel the deletion before reactivating the account")
    ctx.org.activate(u)
    return 204, None
