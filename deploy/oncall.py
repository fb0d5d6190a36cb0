"""On-call's side of the demo and the end-to-end tests, on loopback: a real SMTP server and a
server that speaks WeCom's API.

``MailServer`` is aiosmtpd (a real SMTP server: Alertmanager's email integration talks
to it as to the bank's smarthost, AUTH included); each mail is parsed and kept.
``WeComServer`` answers WeCom's two calls as its documentation gives them:
``GET gettoken?corpid=&corpsecret=`` (a token only for the right secret) and
``POST message/send?access_token=`` (``errcode`` 0, or 40014 for a bad token),
reached through Alertmanager's configurable ``api_url``.
"""

from __future__ import annotations

import email
import email.policy
import logging
import secrets
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiohttp import web

from deploy.procs import free_port


@dataclass(frozen=True)
class Mail:
    sender: str
    to: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def html(self) -> str:
        part = self.message.get_body(("html",))
        return "" if part is None else str(part.get_content())  # type: ignore[attr-defined]


# aiosmtpd says these once per connection: AUTH without TLS is deliberate on loopback (see
# MailServer), and its own AUTH code reads the deprecated attribute.
warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
warnings.filterwarnings("ignore", "Session.login_data is deprecated")
logging.getLogger("mail.log").setLevel(logging.ERROR)


class MailServer:
    """aiosmtpd on 127.0.0.1 with AUTH PLAIN for one user; ``start``/``stop``."""

    def __init__(
        self,
        username: str,
        password: str,
        on_mail: Callable[[Mail], None] | None = None,
    ) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.port = free_port()
        self.mails: list[Mail] = []
        self.failed_logins = 0
        self._lock = threading.Lock()
        self._on_mail = on_mail

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> Any:
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == username
                and secrets.compare_digest(data.password.decode(), password)
            )
            if not ok:
                self.failed_logins += 1
            return AuthResult(success=ok)

        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                mail = Mail(envelope.mail_from, tuple(envelope.rcpt_tos), msg)  # type: ignore[arg-type]
                with outer._lock:
                    outer.mails.append(mail)
                if outer._on_mail is not None:
                    outer._on_mail(mail)
                return "250 OK"

        self._controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticate,
            auth_required=True,
            # Loopback only: Alertmanager (Go's net/smtp) sends PLAIN to localhost without TLS.
            auth_require_tls=False,
            # aiosmtpd's LOGIN prompts ("User Name") are not the "Username:" Alertmanager's
            # LOGIN client expects; PLAIN is what it then uses, as with most smarthosts.
            auth_exclude_mechanism=["LOGIN"],
        )

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


class WeComServer:
    """WeCom's token and message API for one corp and application."""

    def __init__(
        self, corp_id: str, secret: str, on_message: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.corp_id = corp_id
        self.secret = secret
        self.token = secrets.token_urlsafe(16)
        self.messages: list[dict[str, Any]] = []
        self.token_requests = 0
        self._on_message = on_message
        self.app = web.Application()
        self.app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        self.app.router.add_post("/cgi-bin/message/send", self._send)

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        q = request.query
        if q.get("corpid") != self.corp_id or not secrets.compare_digest(
            q.get("corpsecret", ""), self.secret
        ):
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": self.token, "expires_in": 7200}
        )

    async def _send(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") != self.token:
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        body = await request.json()
        self.messages.append(body)
        if self._on_message is not None:
            self._on_message(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})
