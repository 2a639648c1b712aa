"""Domain errors raised by resolvers; the schema layer turns each into `extensions.code`."""

from __future__ import annotations


class AppError(Exception):
    code = "INTERNAL_SERVER_ERROR"
    default_message = "Internal server error."

    def __init__(self, message: str | None = None, *, fields: dict[str, list[str]] | None = None):
        self.message = message or self.default_message
        self.fields = fields
        super().__init__(self.message)

    @property
    def extensions(self) -> dict[str, object]:
        ext: dict[str, object] = {"code": self.code}
        if self.fields:
            ext["fields"] = self.fields
        return ext


class Unauthenticated(AppError):
    code = "UNAUTHENTICATED"
    default_message = "Authentication required."


class Forbidden(AppError):
    code = "FORBIDDEN"
    default_message = "You are not allowed to do this."


class BadUserInput(AppError):
    code = "BAD_USER_INPUT"
    default_message = "Invalid input."


class NotFound(AppError):
    code = "NOT_FOUND"
    default_message = "Not found."


class Conflict(AppError):
    code = "CONFLICT"
    default_message = "This change no longer applies."


class RateLimited(AppError):
    code = "RATE_LIMITED"
    default_message = "Too many attempts; try again later."


class ServiceUnavailable(AppError):
    code = "SERVICE_UNAVAILABLE"
    default_message = "A backend is unreachable right now; retry later."


class Overloaded(ServiceUnavailable):
    """New work turned away while the process is saturated (taxi.domain.admission)."""

    default_message = "The service is saturated; retry after `retryAfter` seconds."

    def __init__(self, *, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after

    @property
    def extensions(self) -> dict[str, object]:
        return {**super().extensions, "retryAfter": self.retry_after}
