"""Error bodies, in the three shapes the two APIs use.

- application errors (organizations API, v1 and v2):
    {"errors":[{"id","status","code","title","detail"}]}
- gateway errors (401 and 429 before the application, 502/503/504):
    {"code": <number>, "message": "..."}
- user management API errors: {"key": "...", ...}
"""

TITLES = {
    "ADMIN-400-1": "Invalid page cursor",
    "ADMIN-400-4": "Invalid resource",
    "ADMIN-400-24": "Invalid request body",
    "ADMIN-403-3": "Not allowed to manage the org",
    "ADMIN-404-1": "Unknown resource",
    "ADMIN-404-2": "Organization not found",
    "ADMIN-404-8": "User not found",
    "ADMIN-404-10": "Group not found",
    "ADMIN-405-1": "Method not supported",
    "ADMIN-409-3": "License limit exceeded",
    "ADMIN-409-28": "Conflict",
    "ADMIN-500-1": "Internal error",
    "ADMIN-UAM-400-1": "Bad Request",
    "ADMIN-UAM-404-3": "Not Found",
}

GATEWAY_MESSAGES = {
    401: "Unauthorized",
    429: "Too many requests. Please try again later.",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ApiError(Exception):
    """An organizations-API application error."""

    def __init__(self, status, code, detail, title=None):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.title = title or TITLES.get(code, "Error")

    def body(self, error_id):
        return {"errors": [{"id": error_id, "status": str(self.status),
                            "code": self.code, "title": self.title,
                            "detail": self.detail}]}


class GatewayError(Exception):
    def __init__(self, status, message=None):
        super().__init__(message)
        self.status = status
        self.message = message or GATEWAY_MESSAGES.get(status, "Error")
        self.retry_after = None      # seconds, for 429 with --retry-after

    def body(self, error_id=None):
        return {"code": self.status, "message": self.message}


class UmError(Exception):
    """A user-management-API error: {"key": ..., [context]}."""

    def __init__(self, status, key, context=None):
        super().__init__(key)
        self.status, self.key, self.context = status, key, context

    def body(self, error_id=None):
        out = {"key": self.key}
        if self.context is not None:
            out["context"] = self.context
        return out


def bad_body(detail, code="ADMIN-400-24"):
    return ApiError(400, code, detail)
