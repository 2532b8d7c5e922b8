"""``desktop-llm chat``: an interactive, streamed chat in the terminal."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from desktop_llm.cli.args import load_options, parse_param_value, sampling_params
from desktop_llm.cli.common import load_model, make_client, stats_line
from desktop_llm.core.errors import ContextOverflow, DesktopLLMError, EngineCrashed
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.client import EngineClient

HELP = """Commands:
  /system [TEXT]       show or set the system prompt (starts a new chat)
  /set NAME VALUE      set a sampling parameter, e.g. /set temperature 0.2, /set seed 42, /set stop a|b
  /params              show the sampling parameters
  /reset               forget the conversation (keeps the system prompt)
  /model [NAME]        show the loaded model, or load another
  /help                this help
  /quit                leave (Ctrl+D too)
Ctrl+C stops a reply and keeps what was written so far."""


class ChatSession:
    def __init__(self, client: EngineClient, params: SamplingParams, system: str | None, out: Any = sys.stdout) -> None:
        self.client = client
        self.params = params
        self.system = system
        self.history: list[dict[str, str]] = []
        self.out = out

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def command(self, line: str, args: argparse.Namespace) -> bool:
        """Handle a /command; return False to leave the chat."""
        name, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            self.say(HELP)
        elif name == "system":
            if rest:
                self.system, self.history = rest, []
                self.say("System prompt set; new conversation.")
            else:
                self.say(f"System prompt: {self.system or '(none: the model’s default)'}")
        elif name == "reset":
            self.history = []
            self.say("Conversation cleared.")
        elif name == "params":
            for key, value in self.params.to_dict().items():
                self.say(f"  {key} = {value}")
        elif name == "set":
            key, _, value = rest.partition(" ")
            self.params = self.params.with_updates(**{key: parse_param_value(key, value.strip())})
            self.say(f"{key} = {getattr(self.params, key)}")
        elif name == "model":
            if rest:
                load_model(self.client, rest, args.backend, load_options(args))
                self.history = []
            else:
                info = self.client.info()
                model = info.get("model") or {}
                self.say(f"{model.get('name')} ({model.get('path')}) on {(info.get('load') or {}).get('backend')}")
        else:
            self.say(f"Unknown command /{name}. Type /help.")
        return True

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def reply(self, user_text: str) -> None:
        self.history.append({"role": "user", "content": user_text})
        while True:
            try:
                self._stream_reply()
                return
            except ContextOverflow:
                # Leave out the oldest turns (never the system prompt) until the chat fits.
                if len(self.history) <= 1:
                    self.history.pop()
                    raise
                del self.history[:2]
                self.say("(The conversation no longer fits the context: the oldest turn was left out.)")

    def _stream_reply(self) -> None:
        stream = self.client.generate(messages=self.messages(), params=self.params)
        parts: list[str] = []
        try:
            for event in stream:
                parts.append(event["text"])
                self.out.write(event["text"])
                self.out.flush()
        except KeyboardInterrupt:
            stream.cancel()
            for event in _drain(stream):
                parts.append(event["text"])
                self.out.write(event["text"])
        done = stream.result
        text = "".join(parts)
        if text:
            self.history.append({"role": "assistant", "content": text})
        self.out.write("\n")
        self.say(stats_line(done))


def _drain(stream: Any) -> Any:
    """Token events that were already on their way when the user pressed Ctrl+C."""
    try:
        yield from stream.tokens()
    except KeyboardInterrupt:
        yield from _drain(stream)


def run(args: argparse.Namespace) -> int:
    params = sampling_params(args)
    with make_client() as client:
        load_model(client, args.model, args.backend, load_options(args))
        session = ChatSession(client, params, args.system)
        interactive = sys.stdin.isatty()
        if interactive:
            session.say("Type a message, /help for commands, Ctrl+C stops a reply, Ctrl+D or /quit leaves.")
        while True:
            try:
                line = input(">>> " if interactive else "")
            except EOFError:
                break
            except KeyboardInterrupt:
                session.say("\n(Ctrl+D or /quit to leave)")
                continue
            line = line.strip()
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if not session.command(line, args):
                        break
                else:
                    session.reply(line)
            except EngineCrashed as exc:
                session.say(f"\nerror: {exc}")
                if session.history and session.history[-1]["role"] == "user":
                    session.history.pop()
            except DesktopLLMError as exc:
                session.say(f"error: {exc}")
    return 0
