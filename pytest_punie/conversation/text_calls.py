"""Tool calls a model wrote as text become real tool calls in the pydantic-ai run.

Small local models often answer ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` as
plain text, and an OpenAI-compatible server passes it through as text. ``TextToolCallModel``
wraps the server's model: when a response has no structured tool call but its text holds calls
of the request's tools, those text parts are replaced by tool-call parts, so the agent runs the
tools, sends the results back and the conversation goes on as with structured calls. Their ids
start with ``TEXT_CALL_PREFIX`` so results can tell where a call came from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import TYPE_CHECKING, Any

from pydantic_ai.messages import ModelResponse, ModelResponsePart, TextPart, ToolCallPart
from pydantic_ai.models.wrapper import WrapperModel

from pytest_punie.conversation.progress import InactivityTimeout, watched
from pytest_punie.tools.parsing import parse_tool_calls

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.models import ModelRequestParameters
    from pydantic_ai.settings import ModelSettings

    from pytest_punie.conversation.progress import ProgressClock

__all__ = ["TEXT_CALL_PREFIX", "TextToolCallModel", "convert_text_calls"]

TEXT_CALL_PREFIX = "punie-text-"
_ids = itertools.count()


def convert_text_calls(
    response: ModelResponse, parameters: ModelRequestParameters
) -> ModelResponse:
    """``response`` with the tool calls written in its text parts turned into tool-call parts."""
    tools = parameters.function_tools
    if not tools or any(isinstance(part, ToolCallPart) for part in response.parts):
        return response
    names = [tool.name for tool in tools]
    schemas: dict[str, Any] = {tool.name: tool.parameters_json_schema for tool in tools}
    parts: list[ModelResponsePart] = []
    found = False
    for part in response.parts:
        calls = (
            parse_tool_calls(part.content, tool_names=names, schemas=schemas)
            if isinstance(part, TextPart)
            else []
        )
        if not calls:
            parts.append(part)
            continue
        found = True
        parts.extend(
            ToolCallPart(call.name, call.arguments, tool_call_id=f"{TEXT_CALL_PREFIX}{next(_ids)}")
            for call in calls
        )
    return dataclasses.replace(response, parts=parts) if found else response


class TextToolCallModel(WrapperModel):
    """A model whose tool calls written as text are executed like structured ones.

    It also sends a request again when the server reset its connection before answering:
    mlx_lm's HTTP server listens with a backlog of 5, and a burst of concurrent cases can
    overflow it. A timed-out request is never repeated.
    """

    connection_retries = 4

    def __init__(
        self, wrapped: Any, *, clock: ProgressClock | None = None, timeout: float | None = None
    ) -> None:
        """With a ``clock`` (ticked by the client's transport), requests are streamed and time
        out after ``timeout`` seconds without progress (``pytest_punie.conversation.progress``),
        not while they wait behind others inside the server."""
        super().__init__(wrapped)
        self.clock = clock
        self.timeout = timeout

    async def _once(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        if self.clock is None or self.timeout is None:
            return await super().request(messages, model_settings, model_request_parameters)
        from pydantic_ai.exceptions import ModelTimeoutError

        async def streamed() -> ModelResponse:
            async with self.wrapped.request_stream(
                messages, model_settings, model_request_parameters
            ) as stream:
                async for _ in stream:
                    pass
                return stream.get()

        try:
            return await watched(streamed(), self.clock, self.timeout)
        except InactivityTimeout as exc:
            raise ModelTimeoutError(self.model_name, str(exc)) from exc

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        from pydantic_ai.exceptions import ModelConnectionError, ModelTimeoutError

        for attempt in range(self.connection_retries + 1):
            try:
                response = await self._once(messages, model_settings, model_request_parameters)
                break
            except ModelConnectionError as exc:
                if isinstance(exc, ModelTimeoutError) or attempt == self.connection_retries:
                    raise
                await asyncio.sleep(0.25 * 2**attempt)
        return convert_text_calls(response, model_request_parameters)
