"""LaunchDarkly-shaped error answers for the sandbox."""

from __future__ import annotations

from django.http import JsonResponse


class ApiError(Exception):
    """Raised inside a sandbox endpoint; turned into `{"code", "message"}` with its status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JsonResponse:
        return JsonResponse({"code": self.code, "message": self.message}, status=self.status)


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def not_found(message: str = "Invalid resource identifier") -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, message)
