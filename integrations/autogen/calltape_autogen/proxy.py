"""Transparent proxies that put an AutoGen tool behind a calltape session.

AutoGen runs a tool through exactly two methods, so those are the only ones the proxies change:

* ``BaseTool.run_json(args, cancellation_token, call_id=None)``: ``AssistantAgent`` before 0.6,
  ``StaticWorkbench.call_tool`` (``AssistantAgent(workbench=...)``), and
  ``StaticStreamWorkbench.call_tool_stream`` (``AssistantAgent(tools=...)`` from 0.6) for tools that
  do not stream;
* ``StreamTool.run_json_stream(...)``: ``StaticStreamWorkbench.call_tool_stream`` for anything that
  passes ``isinstance(tool, StreamTool)``.

``StreamTool`` is a runtime-checkable Protocol, so the plain :class:`CalltapeTool` never defines
``run_json_stream`` (the agent would take every tool for a streaming one);
:class:`CalltapeStreamTool` adds it and is used only for tools that already stream. Both are
``wrapt.ObjectProxy`` subclasses: ``isinstance(proxy, BaseTool)``, ``name``, ``description``,
``schema``, ``args_type()`` and ``return_value_as_string()`` are the wrapped tool's own, and AutoGen
neither copies nor revalidates tools, so the proxy stays in place for the whole run. ``copy`` and
``deepcopy`` re-wrap the copied tool with the same session.

A blocked call raises :class:`calltape.errors.ToolBlocked` (an ``Exception``) from the tool method:
the workbench turns ``str(e)``, which names the rule and the reason, into
``FunctionExecutionResult(is_error=True)`` (``"Error: ..."`` before 0.6) and the run goes on.
"""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import AsyncGenerator, Awaitable, Mapping
from typing import Any

import wrapt  # type: ignore[import-untyped,unused-ignore]  # typed from wrapt 2
from autogen_core import CancellationToken
from pydantic import BaseModel

from calltape import CallResult, Session

__all__ = ["CalltapeStreamTool", "CalltapeTool"]

FRAMEWORK = "autogen"

_DONE = object()
_NOTHING = object()


class CalltapeTool(wrapt.ObjectProxy):  # type: ignore[type-arg,misc,unused-ignore]
    """An AutoGen ``BaseTool`` whose ``run_json`` goes through a calltape session.

    Build it with :func:`calltape_autogen.wrap_tool`; everything but ``run_json`` is the wrapped
    tool's own.

    Args:
        wrapped: The AutoGen tool to gate.
        session: The session that records, gates and replays its calls.
    """

    def __init__(self, wrapped: Any, session: Session) -> None:
        super().__init__(wrapped)
        self._self_session = session

    @property
    def calltape_session(self) -> Session:
        """The session this tool's calls go through."""
        return self._self_session

    @property
    def _calltape_original(self) -> Any:
        return self.__wrapped__

    async def run_json(
        self,
        args: Mapping[str, Any],
        cancellation_token: CancellationToken,
        call_id: str | None = None,
    ) -> Any:
        """Run the tool through the session: record, gate, execute or replay.

        Args:
            args: The arguments the model sent (the framework validates them into the tool's
                ``args_type``).
            cancellation_token: AutoGen's cancellation token, passed on to the tool.
            call_id: The model's tool-call id (AutoGen >= 0.6 passes it); stored in the trace.

        Returns:
            What the tool returned, or on replay the recorded value (rebuilt into the tool's
            pydantic return type or MCP content where it has one).

        Raises:
            calltape.errors.ToolBlocked: The policy blocked the call; the tool did not run.
            calltape.errors.ReplayMiss: Strict replay found no recording; the tool did not run.
            calltape.errors.TraceError: The trace could not be written.
            Exception: Whatever the tool itself raised.
        """
        tool = self.__wrapped__

        def invoke() -> Awaitable[Any]:
            if call_id is None:  # 0.4/0.5 and third-party tools without the parameter
                return tool.run_json(args, cancellation_token)  # type: ignore[no-any-return]
            return tool.run_json(args, cancellation_token, call_id=call_id)  # type: ignore[no-any-return]

        result = await self._self_session.arun_tool(
            tool.name, tool_args(tool, args), invoke, call_id=call_id, framework=FRAMEWORK
        )
        return _deliver(tool, result)

    def __copy__(self) -> CalltapeTool:
        return type(self)(copy.copy(self.__wrapped__), self._self_session)

    def __deepcopy__(self, memo: dict[int, Any]) -> CalltapeTool:
        # The session is shared state (trace, budget), never duplicated.
        return type(self)(copy.deepcopy(self.__wrapped__, memo), self._self_session)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            f"a calltape-gated tool ({self.__wrapped__.name!r}) cannot be pickled: it holds a live "
            "session; pickle the original tool (tool.__wrapped__) and wrap it again after loading"
        )


class CalltapeStreamTool(CalltapeTool):
    """A gated AutoGen ``StreamTool``: ``run_json`` and ``run_json_stream`` go through the session.

    Streamed items reach the agent as they are produced; the trace records the final item (the
    tool's return value). A replayed call yields only that recorded final value.
    """

    async def run_json_stream(
        self,
        args: Mapping[str, Any],
        cancellation_token: CancellationToken,
        call_id: str | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Stream the tool through the session.

        Args:
            args: The arguments the model sent.
            cancellation_token: AutoGen's cancellation token, passed on to the tool.
            call_id: The model's tool-call id; stored in the trace.

        Yields:
            The tool's items as it streams them (its last item is its return value); on replay,
            the recorded return value alone.

        Raises:
            calltape.errors.ToolBlocked: The policy blocked the call; the tool did not run.
            calltape.errors.ReplayMiss: Strict replay found no recording; the tool did not run.
            calltape.errors.TraceError: The trace could not be written.
            Exception: Whatever the tool itself raised.
        """
        tool = self.__wrapped__
        items: asyncio.Queue[Any] = asyncio.Queue()

        async def invoke() -> Any:
            kwargs = {} if call_id is None else {"call_id": call_id}
            last: Any = _NOTHING
            async for item in tool.run_json_stream(args, cancellation_token, **kwargs):
                last = item
                items.put_nowait(item)
            if last is _NOTHING:
                raise ValueError(f"streaming tool {tool.name!r} yielded nothing")
            return last

        task = asyncio.ensure_future(
            self._self_session.arun_tool(
                tool.name, tool_args(tool, args), invoke, call_id=call_id, framework=FRAMEWORK
            )
        )
        task.add_done_callback(lambda _t: items.put_nowait(_DONE))
        try:
            while (item := await items.get()) is not _DONE:
                yield item
            result: CallResult = task.result()
        finally:
            if not task.done():  # the consumer stopped early
                task.cancel()
        value = _deliver(tool, result)
        if result.replayed:
            yield value  # live items (the final one included) were already streamed above


def tool_args(tool: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments the tool will actually receive, restricted to its schema keys.

    AutoGen validates ``args`` into ``tool.args_type()`` inside ``run_json``; fingerprinting
    that validated form (defaults filled in) makes ``{"a": 1}`` and ``{"a": 1, "b": <default>}``
    one call. When validation fails the raw arguments are used and the tool reports the error.

    Args:
        tool: The wrapped AutoGen tool.
        args: The arguments the model sent.

    Returns:
        A JSON-able dict.
    """
    raw = dict(args)
    try:
        data: dict[str, Any] = (
            tool.args_type().model_validate(raw).model_dump(mode="json", by_alias=True)
        )
    except Exception:  # the tool's own run_json raises the validation error, recorded as such
        data = raw
    keys = _schema_keys(tool)
    return data if keys is None else {k: v for k, v in data.items() if k in keys}


def _schema_keys(tool: Any) -> set[str] | None:
    try:
        properties = tool.schema.get("parameters", {}).get("properties")
    except Exception:  # e.g. a strict tool whose schema raises: keep every key
        return None
    return set(properties) if isinstance(properties, Mapping) else None


def _deliver(tool: Any, result: CallResult) -> Any:
    """The value AutoGen gets: live output as is, replayed output rebuilt, anything else raised."""
    value = result.unwrap()
    return _revive(tool, value) if result.replayed else value


def _revive(tool: Any, value: Any) -> Any:
    """Rebuild a recorded JSON value into what the tool returns live.

    The model sees ``tool.return_value_as_string(value)``: without this, a pydantic return value
    would be shown as a Python dict repr on replay, and MCP content as ``{}``.
    """
    try:
        return_type = tool.return_type()
    except Exception:
        return_type = None
    if (
        isinstance(value, dict)
        and isinstance(return_type, type)
        and issubclass(return_type, BaseModel)
    ):
        try:
            return return_type.model_validate(value)
        except Exception:
            return _revive_task_result(return_type, value)
    if isinstance(value, list) and _is_mcp_tool(tool):
        return [_revive_mcp_content(item) for item in value]
    return value


def _revive_task_result(return_type: type[BaseModel], value: dict[str, Any]) -> Any:
    """``AgentTool``/``TeamTool`` return a ``TaskResult`` of abstract message types."""
    messages = sys.modules.get("autogen_agentchat.messages")
    factory_type = getattr(messages, "MessageFactory", None)
    if (
        return_type.__name__ != "TaskResult"
        or not return_type.__module__.startswith("autogen_agentchat")
        or factory_type is None
        or not isinstance(value.get("messages"), list)
    ):
        return value
    try:
        factory = factory_type()
        return return_type(
            messages=[factory.create(m) for m in value["messages"]],
            stop_reason=value.get("stop_reason"),
        )
    except Exception:  # e.g. a custom message type this factory does not know
        return value


def _is_mcp_tool(tool: Any) -> bool:
    # autogen_ext.tools.mcp needs the optional ``mcp`` package: look at the class, import nothing.
    return any(
        cls.__name__ == "McpToolAdapter" and cls.__module__.startswith("autogen_ext.tools.mcp")
        for cls in type(tool).__mro__
    )


def _revive_mcp_content(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    types = sys.modules.get("mcp.types")
    name = {
        "text": "TextContent",
        "image": "ImageContent",
        "audio": "AudioContent",
        "resource": "EmbeddedResource",
        "resource_link": "ResourceLink",
    }.get(str(item.get("type")))
    cls = getattr(types, name, None) if name else None
    if cls is None:
        return item
    try:
        return cls.model_validate(item)
    except Exception:
        return item
