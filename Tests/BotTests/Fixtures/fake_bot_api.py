#!/usr/bin/env python3
"""A fake Telegram Bot API server for tgsess-bot's end-to-end tests (Python stdlib only).

It speaks the JSON of getUpdates (long polling, confirmation by offset), sendMessage,
editMessageText (with the real "message is not modified" 400), answerCallbackQuery,
setMyCommands, deleteWebhook and getMe on /bot<TOKEN>/<method>, like api.telegram.org.
It records every request and injects faults: 429 with retry_after, 400, 403, 409, 500, 502,
slow answers, malformed JSON and dropped connections ("pass" lets one request through, to order faults).

Anything a test did not set up (an unknown method, a bad parameter, a text over 4096 UTF-16
units, an edit of an unknown message, a second answer to a callback query, a body that is not
JSON) is answered with an error AND recorded in `errors`, which every test asserts is empty.

A control API for the test lives under /_control/: inject updates, queue faults, read the state.

Usage: fake_bot_api.py --token TOKEN   (prints "PORT <n>" once listening on 127.0.0.1)
"""

import argparse
import json
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
ALLOWED_UPDATES = ["message", "callback_query"]
BOT_USER = {"id": 7000000001, "is_bot": True, "first_name": "tgsess test bot", "username": "tgsess_test_bot"}


class State:
    def __init__(self, token):
        self.token = token
        self.cond = threading.Condition()
        self.updates = []  # pending update objects, in id order
        self.next_update_id = 1
        self.confirmed_offset = 0
        self.deliveries = {}  # update id -> times returned by getUpdates
        self.requests = []
        self.sent = []  # {"kind": "send"|"edit", "chat_id", "message_id", "text", "reply_markup"}
        self.messages = {}  # message id -> {"chat_id", "text", "reply_markup"}
        self.next_message_id = 1000
        self.callbacks = {}  # id -> answered?
        self.callback_answers = []
        self.next_callback = 1
        self.commands = []
        self.faults = []
        self.errors = []
        self.polls_waiting = 0
        self.poll_generation = 0
        self.unauthorized = 0

    def error(self, text):
        self.errors.append(text)
        print("fake_bot_api: UNEXPECTED: " + text, file=sys.stderr, flush=True)

    def add_update(self, update):
        if "update_id" not in update:
            update["update_id"] = self.next_update_id
        self.next_update_id = max(self.next_update_id, int(update["update_id"]) + 1)
        self.updates.append(update)
        self.cond.notify_all()
        return update["update_id"]

    def new_message_id(self):
        self.next_message_id += 1
        return self.next_message_id


def utf16_len(text):
    return len(text.encode("utf-16-le")) // 2


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-bot-api/1"

    def log_message(self, fmt, *args):  # keep stderr quiet
        pass

    # -- plumbing -------------------------------------------------------------------------
    def reply(self, status, obj=None, raw=None, content_type="application/json"):
        body = raw if raw is not None else json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def ok(self, result):
        self.reply(200, {"ok": True, "result": result})

    def fail(self, status, description, parameters=None):
        obj = {"ok": False, "error_code": status, "description": description}
        if parameters:
            obj["parameters"] = parameters
        self.reply(status, obj)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def dispatch(self):
        try:
            if self.path.startswith("/_control/"):
                self.control()
            else:
                self.api()
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- the Bot API ----------------------------------------------------------------------
    def api(self):
        state = self.server.state
        body = self.read_body()
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", self.path.split("?")[0])
        if not match:
            with state.cond:
                state.error("request to an unknown path (not /bot<token>/<method>)")
            return self.fail(404, "Not Found")
        token, method = match.group(1), match.group(2)
        if token != state.token:
            with state.cond:
                state.unauthorized += 1
                state.requests.append({"method": method, "params": {}, "at": time.time(), "unauthorized": True})
            return self.fail(401, "Unauthorized")
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            with state.cond:
                state.error(f"{method}: body is not application/json")
            return self.fail(400, "Bad Request: expected JSON")
        try:
            params = json.loads(body or b"{}")
            assert isinstance(params, dict)
        except Exception:
            with state.cond:
                state.error(f"{method}: body is not a JSON object")
            return self.fail(400, "Bad Request: invalid JSON")
        with state.cond:
            state.requests.append({"method": method, "params": params, "at": time.time()})
            fault = None
            for index, candidate in enumerate(state.faults):
                if candidate.get("method") == method:
                    fault = state.faults.pop(index)
                    break
        if fault and not self.apply_fault(fault, method):
            return
        handler = getattr(self, "m_" + method, None)
        if handler is None:
            with state.cond:
                state.error(f"unexpected method {method}")
            return self.fail(404, "Not Found: method not found")
        handler(params)

    def apply_fault(self, fault, method):
        """Returns True when the request should go on normally afterwards."""
        kind = fault["kind"]
        if kind == "429":
            seconds = int(fault.get("retry_after", 1))
            self.fail(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})
        elif kind == "502":
            self.reply(502, raw=b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
        elif kind == "500":
            self.fail(500, "Internal Server Error: restart")
        elif kind == "400":
            # What Telegram answers to an answerCallbackQuery after a restart replayed the update.
            self.fail(400, fault.get("description", "Bad Request: query is too old and response timeout "
                                                    "expired or query ID is invalid"))
        elif kind == "403":
            self.fail(403, "Forbidden: bot was blocked by the user")
        elif kind == "409":
            self.fail(409, fault.get("description", "Conflict: terminated by other getUpdates request; "
                                                    "make sure that only one bot instance is running"))
        elif kind == "malformed":
            self.reply(200, raw=b'{"ok": true, "result": [{"update_id": ')
        elif kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif kind == "pass":
            return True
        elif kind == "slow":
            time.sleep(float(fault.get("seconds", 1)))
            return True
        else:
            with self.server.state.cond:
                self.server.state.error(f"unknown fault kind {kind}")
            self.fail(500, "fake: unknown fault")
        return False

    def m_getMe(self, params):
        self.ok(BOT_USER)

    def m_deleteWebhook(self, params):
        self.ok(True)

    def m_setMyCommands(self, params):
        state = self.server.state
        commands = params.get("commands")
        with state.cond:
            bad = not isinstance(commands, list) or not commands or any(
                not isinstance(c, dict)
                or not re.fullmatch(r"[a-z0-9_]{1,32}", str(c.get("command", "")))
                or not (1 <= len(str(c.get("description", ""))) <= 256)
                for c in commands
            )
            if bad:
                state.error("setMyCommands: invalid commands")
                return self.fail(400, "Bad Request: invalid commands")
            state.commands.append(params)
        self.ok(True)

    def m_getUpdates(self, params):
        state = self.server.state
        timeout = min(max(int(params.get("timeout", 0)), 0), 50)
        limit = min(max(int(params.get("limit", 100)), 1), 100)
        offset = params.get("offset")
        with state.cond:
            if params.get("allowed_updates") != ALLOWED_UPDATES:
                state.error(f"getUpdates: allowed_updates is {params.get('allowed_updates')!r}")
            if offset is not None:
                offset = int(offset)
                if offset > state.confirmed_offset:
                    state.confirmed_offset = offset
                    state.updates = [u for u in state.updates if u["update_id"] >= offset]
            state.poll_generation += 1
            generation = state.poll_generation
            state.cond.notify_all()
            deadline = time.time() + timeout
            state.polls_waiting += 1
            try:
                while True:
                    if generation != state.poll_generation:
                        # A newer poll parks: the older one gets the 409, like the real server.
                        return self.fail(409, "Conflict: terminated by other getUpdates request; "
                                              "make sure that only one bot instance is running")
                    ready = state.updates[:limit]
                    remaining = deadline - time.time()
                    if ready or remaining <= 0:
                        break
                    state.cond.wait(min(remaining, 0.5))
            finally:
                state.polls_waiting -= 1
            for update in ready:
                state.deliveries[update["update_id"]] = state.deliveries.get(update["update_id"], 0) + 1
        self.ok(ready)

    def check_markup(self, state, method, markup):
        if markup is None:
            return True
        rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
        if not isinstance(rows, list):
            state.error(f"{method}: reply_markup is not an inline keyboard")
            return False
        for row in rows:
            for button in row:
                data = button.get("callback_data", "")
                if not button.get("text") or not (1 <= len(data.encode()) <= 64):
                    state.error(f"{method}: bad button {button!r}")
                    return False
        return True

    def check_text(self, state, method, text):
        if not isinstance(text, str) or not text:
            state.error(f"{method}: empty text")
            self.fail(400, "Bad Request: message text is empty")
            return False
        if utf16_len(text) > 4096:
            state.error(f"{method}: text of {utf16_len(text)} UTF-16 units")
            self.fail(400, "Bad Request: message is too long")
            return False
        if "parse_mode" in self.current_params:
            state.error(f"{method}: parse_mode is set")
        return True

    def m_sendMessage(self, params):
        state = self.server.state
        self.current_params = params
        with state.cond:
            chat_id = params.get("chat_id")
            if not isinstance(chat_id, int):
                state.error("sendMessage: chat_id is not an integer")
                return self.fail(400, "Bad Request: chat not found")
            text = params.get("text")
            if not self.check_text(state, "sendMessage", text):
                return
            markup = params.get("reply_markup")
            if not self.check_markup(state, "sendMessage", markup):
                return self.fail(400, "Bad Request: bad reply markup")
            message_id = state.new_message_id()
            state.messages[message_id] = {"chat_id": chat_id, "text": text, "reply_markup": markup}
            state.sent.append({"kind": "send", "chat_id": chat_id, "message_id": message_id, "text": text,
                               "reply_markup": markup, "at": time.time()})
        self.ok({"message_id": message_id, "from": BOT_USER, "chat": {"id": chat_id, "type": "private"},
                 "date": int(time.time()), "text": text})

    def m_editMessageText(self, params):
        state = self.server.state
        self.current_params = params
        with state.cond:
            chat_id = params.get("chat_id")
            message_id = params.get("message_id")
            message = state.messages.get(message_id)
            if message is None or message["chat_id"] != chat_id:
                state.error(f"editMessageText: no message {message_id} in chat {chat_id}")
                return self.fail(400, "Bad Request: message to edit not found")
            text = params.get("text")
            if not self.check_text(state, "editMessageText", text):
                return
            markup = params.get("reply_markup")
            if not self.check_markup(state, "editMessageText", markup):
                return self.fail(400, "Bad Request: bad reply markup")
            if text == message["text"] and markup == message["reply_markup"]:
                state.sent.append({"kind": "not-modified", "chat_id": chat_id, "message_id": message_id,
                                   "text": text, "at": time.time()})
                return self.fail(400, NOT_MODIFIED)
            message["text"] = text
            message["reply_markup"] = markup
            state.sent.append({"kind": "edit", "chat_id": chat_id, "message_id": message_id, "text": text,
                               "reply_markup": markup, "at": time.time()})
        self.ok({"message_id": message_id, "from": BOT_USER, "chat": {"id": chat_id, "type": "private"},
                 "date": int(time.time()), "text": text})

    def m_answerCallbackQuery(self, params):
        state = self.server.state
        with state.cond:
            query_id = params.get("callback_query_id")
            if query_id not in state.callbacks:
                state.error(f"answerCallbackQuery: unknown id {query_id!r}")
                return self.fail(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
            if state.callbacks[query_id]:
                state.error(f"answerCallbackQuery: {query_id!r} answered twice")
                return self.fail(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
            text = params.get("text")
            if text is not None and len(text) > 200:
                state.error("answerCallbackQuery: text over 200 characters")
            state.callbacks[query_id] = True
            state.callback_answers.append({"id": query_id, "text": text})
        self.ok(True)

    # -- the control API ------------------------------------------------------------------
    def control(self):
        state = self.server.state
        body = self.read_body()
        params = json.loads(body) if body else {}
        path = self.path
        with state.cond:
            if path == "/_control/state":
                return self.reply(200, {
                    "requests": state.requests, "sent": state.sent, "errors": state.errors,
                    "confirmed_offset": state.confirmed_offset,
                    "pending": [u["update_id"] for u in state.updates],
                    "deliveries": {str(k): v for k, v in state.deliveries.items()},
                    "polls_waiting": state.polls_waiting, "faults_left": len(state.faults),
                    "commands": state.commands, "callback_answers": state.callback_answers,
                    "unauthorized": state.unauthorized,
                })
            if path == "/_control/updates":
                ids = [state.add_update(update) for update in params["updates"]]
                return self.reply(200, {"ids": ids})
            if path == "/_control/message":
                message_id = state.new_message_id()
                chat_id = params.get("chat_id", params["from_id"])
                text = params["text"]
                message = {
                    "message_id": message_id, "date": int(time.time()), "text": text,
                    "from": {"id": params["from_id"], "is_bot": False, "first_name": f"user{params['from_id']}"},
                    "chat": {"id": chat_id, "type": params.get("chat_type", "private")},
                }
                if text.startswith("/"):
                    message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
                update_id = state.add_update({"message": message})
                return self.reply(200, {"update_id": update_id, "message_id": message_id})
            if path == "/_control/callback":
                query_id = f"cbq{state.next_callback}"
                state.next_callback += 1
                state.callbacks[query_id] = False
                chat_id = params.get("chat_id", params["from_id"])
                update_id = state.add_update({"callback_query": {
                    "id": query_id, "chat_instance": "1",
                    "from": {"id": params["from_id"], "is_bot": False, "first_name": f"user{params['from_id']}"},
                    "message": {"message_id": params["message_id"], "date": int(time.time()),
                                "chat": {"id": chat_id, "type": "private"}, "from": BOT_USER, "text": "menu"},
                    "data": params["data"],
                }})
                return self.reply(200, {"update_id": update_id, "callback_query_id": query_id})
            if path == "/_control/faults":
                state.faults.extend(params["faults"])
                return self.reply(200, {"queued": len(state.faults)})
        state.error(f"unknown control path {path}")
        self.reply(404, {"error": "unknown control path"})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State(args.token)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
