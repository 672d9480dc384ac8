"""The real LangChain / LangGraph agent loops, driven offline by the scripted chat model.

Three loops, each run sync (``invoke``) and async (``ainvoke``):

* ``create_agent``: ``langchain.agents.create_agent`` (langchain >= 1.0 only);
* ``react_agent``: ``langgraph.prebuilt.create_react_agent``;
* ``tool_node``: a hand-built ``StateGraph`` with LangGraph's ``ToolNode`` and ``tools_condition``.
"""

from __future__ import annotations

import asyncio
import copy
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from calltape import Session
from calltape.testing import AgentRun, ScriptedCall
from calltape_langchain import create_langchain_toolkit
from calltape_langchain.testing import ScriptedChatModel, call_tool, last_tool_text

LOOPS = ("create_agent", "react_agent", "tool_node")


def has_create_agent() -> bool:
    """Whether ``langchain.agents.create_agent`` (langchain >= 1.0) is installed."""
    try:
        from langchain.agents import create_agent  # noqa: F401
    except ImportError:
        return False
    return True


def scripted_model(calls: Sequence[tuple[str, dict[str, Any]]]) -> ScriptedChatModel:
    """A model that makes ``calls`` (one per turn), then answers "done: <last tool result>"."""
    responses: list[Any] = [call_tool(name, args) for name, args in calls]
    responses.append(lambda messages: f"done: {last_tool_text(messages)}")
    return ScriptedChatModel(responses=responses)


def build_agent(loop: str, model: ScriptedChatModel, tools: Sequence[BaseTool]) -> Any:
    """The compiled graph of one of :data:`LOOPS`."""
    with warnings.catch_warnings():
        # create_react_agent is deprecated in langgraph 1.x in favour of create_agent.
        warnings.simplefilter("ignore", DeprecationWarning)
        if loop == "create_agent":
            from langchain.agents import create_agent

            return create_agent(model, list(tools))
        if loop == "react_agent":
            from langgraph.prebuilt import create_react_agent

            return create_react_agent(model, list(tools))
        if loop == "tool_node":
            return _tool_node_graph(model, tools)
    raise ValueError(f"unknown loop {loop!r}; use one of {LOOPS}")


def _tool_node_graph(model: ScriptedChatModel, tools: Sequence[BaseTool]) -> Any:
    from langchain_core.runnables import RunnableLambda
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    bound = model.bind_tools(list(tools))

    def call_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [bound.invoke(state["messages"])]}

    async def acall_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", RunnableLambda(call_model, afunc=acall_model))
    graph.add_node("tools", ToolNode(list(tools)))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "model")
    return graph.compile()


def run_graph(agent: Any, mode: str, prompt: str = "go") -> list[BaseMessage]:
    """Run a compiled agent graph to the end; the final list of messages."""
    state = {"messages": [HumanMessage(prompt)]}
    if mode == "sync":
        result = agent.invoke(state)
    elif mode == "async":
        result = asyncio.run(agent.ainvoke(state))
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return list(result["messages"])


def transcript(messages: Sequence[BaseMessage]) -> AgentRun:
    """The final answer and the text of every tool result the model saw."""
    final = messages[-1]
    assert isinstance(final, AIMessage), f"the agent did not finish with an answer: {final!r}"
    results = [_text(m) for m in messages if isinstance(m, ToolMessage)]
    return AgentRun(final_answer=_text(final), tool_results=results)


def _text(message: BaseMessage) -> str:
    content = message.content
    return content if isinstance(content, str) else str(content)


class LangChainDriver:
    """The conformance-kit driver for one loop."""

    name = "langchain"
    modes: tuple[str, ...] = ("sync", "async")
    records_call_id = True

    def __init__(self, loop: str) -> None:
        self.loop = loop

    def toolkit(self, session: Session, tools: list[Any] | None = None) -> list[Any]:
        return create_langchain_toolkit(session, tools)

    def native_tool(self, fn: Callable[..., Any]) -> Any:
        return tool(fn)

    def schema(self, tool: Any) -> Any:
        return convert_to_openai_tool(tool)

    def copies(self, tool: Any) -> list[Any]:
        return [
            tool.model_copy(),
            tool.model_copy(deep=True),
            tool.model_copy(update={"description": tool.description}),
            copy.deepcopy(tool),
        ]

    def run_agent(self, tools: list[Any], script: list[ScriptedCall], *, mode: str) -> AgentRun:
        model = scripted_model([(c.tool, c.args) for c in script])
        messages = run_graph(build_agent(self.loop, model, tools), mode)
        assert model.turns_left == 0, "the agent stopped before the script ended"
        assert model.tool_schemas == [convert_to_openai_tool(t) for t in tools]
        return transcript(messages)
