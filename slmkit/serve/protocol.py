"""The OpenAI wire format: request schemas (strict, with the API's ranges and defaults), OpenAI-style
error bodies, and the response and stream-chunk objects of ``/v1/completions`` and
``/v1/chat/completions``.

Requests are validated by pydantic in strict mode (``"5"`` is not a number, ``true`` is not an integer,
NaN is not a temperature). Unknown fields are ignored, as vLLM and llama.cpp do, but known OpenAI fields
this server cannot honour (logprobs, echo, best_of > n, suffix, logit_bias, penalties, tools, non-text
content) are refused with 400 rather than silently ignored. Every refusal is an ``ApiError`` carrying
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Float = Annotated[float, Field(allow_inf_nan=False)]
TokenIds = list[Annotated[int, Field(ge=0)]]


class ApiError(Exception):
    """An error answered to the client with an OpenAI-style body."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
             405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
             503: "server_error", 504: "server_error"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        kind = self.TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    include_usage: bool = False


class _Sampling(BaseModel):
    """Fields shared by both endpoints (OpenAI defaults)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    model: str
    temperature: Float | None = Field(None, ge=0.0, le=2.0)
    top_p: Float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    presence_penalty: Float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: Float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, Any] | None = None

    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise ApiError(400, "'stop' holds at most 4 sequences", "stop")
        if any(s == "" for s in stops):
            raise ApiError(400, "'stop' sequences must not be empty", "stop")
        return tuple(stops)

    def refuse_unsupported(self) -> None:
        if self.presence_penalty or self.frequency_penalty:
            raise ApiError(400, "presence_penalty and frequency_penalty are not supported by this server",
                           "presence_penalty" if self.presence_penalty else "frequency_penalty")
        if self.logit_bias:
            raise ApiError(400, "logit_bias is not supported by this server", "logit_bias")


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str], TokenIds, list[TokenIds]]
    max_tokens: int | None = Field(16, ge=1)
    echo: bool | None = False
    logprobs: int | None = None
    best_of: int | None = Field(None, ge=1)
    suffix: str | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        for name, bad in (("echo", self.echo), ("logprobs", self.logprobs is not None),
                          ("best_of", (self.best_of or 1) > (self.n or 1)), ("suffix", self.suffix)):
            if bad:
                raise ApiError(400, f"'{name}' is not supported by this server", name)


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self, where: str) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ApiError(400, f"{where}: only text content parts are supported (got '{part.type}')", where)
        return "".join(part.text or "" for part in self.content)


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        fmt = (self.response_format or {}).get("type", "text")
        for name, bad in (("logprobs", self.logprobs or self.top_logprobs is not None),
                          ("tools", self.tools or self.functions or self.tool_choice not in (None, "none")),
                          ("response_format", fmt != "text")):
            if bad:
                raise ApiError(400, f"'{name}' is not supported by this server", name)


UNION_HINTS = {"prompt": "a string, an array of strings, an array of token ids or an array of token-id arrays",
               "stop": "a string or an array of strings",
               "content": "a string or an array of text parts"}


def parse(schema: type[BaseModel], body: bytes) -> Any:
    """Validate a JSON body against ``schema``; any problem becomes a 400 naming the field."""
    try:
        request = schema.model_validate_json(body)
    except ValidationError as err:
        raise _as_api_error(err) from None
    request.refuse_unsupported()
    return request


def _as_api_error(err: ValidationError) -> ApiError:
    first = err.errors()[0]
    if first["type"] == "json_invalid":
        return ApiError(400, f"request body is not valid JSON ({first['msg'].removeprefix('Invalid JSON: ')})")
    if not first["loc"]:
        return ApiError(400, "request body must be a JSON object")
    loc = [str(x) for x in first["loc"]]
    union = next((name for name in UNION_HINTS if name in loc), None)
    if union and first["type"] != "missing":
        param = ".".join(loc[:loc.index(union) + 1])
        return ApiError(400, f"'{param}' must be {UNION_HINTS[union]}", param)
    param = ".".join(x for x in loc if not x.startswith(("str", "list[", "int", "float", "bool")))
    message = "field required" if first["type"] == "missing" else first["msg"]
    return ApiError(400, f"'{param}': {message}", param, "missing_field" if first["type"] == "missing" else None)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(rid: str, model: str, choices: list[dict[str, Any]], use: dict[str, int],
                    chat: bool) -> dict[str, Any]:
    """The non-streaming answer; ``choices`` hold index, text, finish_reason (and refusal for chat)."""
    if chat:
        items = [{"index": c["index"], "message": {"role": "assistant", "content": c["text"],
                                                   "refusal": c.get("refusal")},
                  "logprobs": None, "finish_reason": c["finish_reason"]} for c in choices]
    else:
        items = [{"index": c["index"], "text": c["text"], "logprobs": None, "finish_reason": c["finish_reason"]}
                 for c in choices]
    return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": model, "system_fingerprint": None, "choices": items, "usage": use}


def chunk_body(rid: str, model: str, index: int, text: str | None, finish_reason: str | None, chat: bool,
               first: bool = False) -> dict[str, Any]:
    """One stream chunk for one choice (the first chat chunk of a choice carries the role)."""
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else (
            {"content": text} if text else {})
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
    return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model, "system_fingerprint": None, "choices": [choice]}


def usage_chunk(rid: str, model: str, use: dict[str, int], chat: bool) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [], "usage": use}
