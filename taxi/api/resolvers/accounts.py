"""Accounts: sign-up, log-in, tokens, me."""

from __future__ import annotations

import strawberry
from strawberry.file_uploads import Upload

from taxi.api.context import Context
from taxi.api.schema.types import AuthPayload, Info, field, mutation
from taxi.domain.admission import admit
from taxi.domain.errors import BadUserInput
from taxi.domain.models import UserGroup
from taxi.domain.readmodels import UserView
from taxi.domain.services import accounts


@strawberry.input
class SignUpInput:
    username: str
    first_name: str
    last_name: str
    password1: str
    password2: str
    group: UserGroup = UserGroup.RIDER
    photo: Upload | None = strawberry.UNSET


async def _read_upload(upload: object, limit: int) -> bytes | None:
    if upload is None or upload is strawberry.UNSET:
        return None
    read = getattr(upload, "read", None)
    if read is None:
        raise BadUserInput("Invalid input.", fields={"photo": ["Send the photo as a file."]})
    # Read one byte past the limit: enough to know it is too large, never the whole file.
    data: bytes = await read(limit + 1)
    return data


def _client(ctx: Context) -> str | None:
    """The peer, or X-Forwarded-For from a TRUSTED_PROXIES peer (uvicorn's proxy
    headers handling rewrites `client` only for those)."""
    return ctx.request.client.host if ctx.request.client else None


def _payload(result: accounts.AuthResult) -> AuthPayload:
    return AuthPayload(access=result.access, refresh=result.refresh, user=result.user)


@strawberry.type
class AccountQuery:
    @field(description="The signed-in user.")
    async def me(self, info: Info) -> UserView:
        ctx = info.context
        return await accounts.me(db=ctx.db, user=await ctx.user())


@strawberry.type
class AccountMutation:
    @strawberry.mutation
    async def sign_up(self, info: Info, input: SignUpInput) -> UserView:
        admit("signUp")
        ctx = info.context
        photo = await _read_upload(input.photo, ctx.settings.max_upload_bytes)
        view = await accounts.sign_up(
            db=ctx.db,
            settings=ctx.settings,
            username=input.username,
            first_name=input.first_name,
            last_name=input.last_name,
            password1=input.password1,
            password2=input.password2,
            group=input.group,
            photo=photo,
            signups=ctx.services.signups,
            limits=ctx.services.logins,
            client=_client(ctx),
        )
        return view

    @strawberry.mutation
    async def log_in(self, info: Info, username: str, password: str) -> AuthPayload:
        admit("logIn")
        ctx = info.context
        return _payload(
            await accounts.log_in(
                db=ctx.db,
                settings=ctx.settings,
                limits=ctx.services.logins,
                username=username,
                password=password,
                client=_client(ctx),
            )
        )

    @mutation(
        description="Trade a refresh token for a new pair; the old refresh token stops working."
    )
    async def refresh_token(self, info: Info, refresh: str) -> AuthPayload:
        ctx = info.context
        return _payload(
            await accounts.refresh_token(
                db=ctx.db, events=ctx.services.events, settings=ctx.settings, refresh=refresh
            )
        )

    @mutation(
        description="End the refresh token's session (its access tokens and sockets too). "
        "True when it was live."
    )
    async def log_out(self, info: Info, refresh: str) -> bool:
        ctx = info.context
        return await accounts.log_out(
            db=ctx.db, events=ctx.services.events, settings=ctx.settings, refresh=refresh
        )
