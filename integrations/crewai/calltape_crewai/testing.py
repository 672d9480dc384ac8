"""An offline, scripted CrewAI model for tests and examples (no network, no API key).

:class:`ScriptedLLM` is a real ``crewai.BaseLLM`` subclass: CrewAI's own agent loop drives it.
With ``function_calling=True`` it answers in OpenAI tool-call form (CrewAI's native
function-calling path); with ``False`` it writes "Action:/Action Input:" text (the ReAct path).
After the scripted calls it answers ``"done: <text of the last tool result it saw>"``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crewai import Agent, BaseLLM, Crew, Task

__all__ = ["CrewRun", "Script", "ScriptedLLM", "last_tool_result", "run_crew"]

#: How :func:`run_crew` can start a crew.
MODES = ("sync", "async", "akickoff")

# crewai < 1.10's BaseLLM is a plain class and newer ones are pydantic models; state kept
# outside the instance (keyed by the model name) works with both.
_SCRIPTS: dict[str, Script] = {}
_COUNTER = itertools.count(1)
_LOCK = threading.Lock()
_FORMAT_REMINDER = "\n\n\nYou ONLY have access to the following tools"


@dataclass
class Script:
    """What a :class:`ScriptedLLM` says, and what it saw.

    Attributes:
        calls: ``(tool_name, args)`` pairs, one tool call per model turn, in order.
        function_calling: Answer with native tool calls (True) or ReAct text (False).
        tool_results: The text of each tool result the model saw, in order.
        turns: How many times CrewAI called the model.
    """

    calls: list[tuple[str, dict[str, Any]]]
    function_calling: bool = True
    tool_results: list[str] = field(default_factory=list)
    turns: int = 0
    _issued: int = 0


def last_tool_result(messages: Sequence[Any]) -> str | None:
    """The text of the newest tool result in a CrewAI message list.

    Args:
        messages: What CrewAI passed to the model.

    Returns:
        The ``tool`` message's content (native path) or the observation CrewAI appended to the
        model's last "Action:" turn (ReAct path), or None when there is none yet.
    """
    for message in reversed(list(messages)):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if message.get("role") == "tool":
            return str(content)
        if message.get("role") == "assistant" and isinstance(content, str):
            _, found, observation = content.partition("\nObservation:")
            if found:
                # Every few tool uses CrewAI appends its tool list and format reminder.
                return observation.split(_FORMAT_REMINDER, 1)[0].strip()
    return None


class ScriptedLLM(BaseLLM):
    """A CrewAI model that plays a script.

    Build one with :meth:`create`; read what it saw from :attr:`script`.
    """

    @classmethod
    def create(
        cls, calls: Iterable[tuple[str, dict[str, Any]]], *, function_calling: bool = True
    ) -> ScriptedLLM:
        """A model that issues ``calls`` (one per turn), then answers ``"done: <last result>"``.

        Args:
            calls: ``(tool_name, args)`` pairs.
            function_calling: Native tool calls (True) or ReAct text (False).

        Returns:
            The model.
        """
        with _LOCK:
            model = f"calltape-scripted-{next(_COUNTER)}"
            _SCRIPTS[model] = Script(list(calls), function_calling)
        return cls(model=model)

    @property
    def script(self) -> Script:
        """The script, with the tool results seen so far."""
        return _SCRIPTS[self.model]

    def supports_function_calling(self) -> bool:
        """CrewAI picks its execution path from this."""
        return self.script.function_calling

    def supports_stop_words(self) -> bool:
        """The ReAct path stops at "Observation:"; a script never writes one."""
        return False

    def get_context_window_size(self) -> int:
        """Large enough that CrewAI never summarises a test conversation."""
        return 128_000

    def get_input_tokens_count(self, messages: Any, *args: Any, **kwargs: Any) -> int:
        """A rough count (four characters a token), without CrewAI's fallback warning.

        Returns:
            The estimated number of input tokens.
        """
        text = messages if isinstance(messages, str) else json.dumps(messages, default=str)
        return (len(text) + 3) // 4

    def call(self, messages: str | list[Any], *args: Any, **kwargs: Any) -> Any:
        """Answer the next turn of the script.

        Returns:
            A list with one OpenAI-style tool call, ReAct text, or the final answer.
        """
        script = self.script
        with _LOCK:
            script.turns += 1
            if isinstance(messages, str):
                messages = [{"role": "user", "content": messages}]
            seen = last_tool_result(messages)
            if script._issued and len(script.tool_results) < script._issued and seen is not None:
                script.tool_results.append(seen)
            if script._issued < len(script.calls):
                name, call_args = script.calls[script._issued]
                script._issued += 1
                if script.function_calling:
                    return [
                        {
                            "id": f"call_{script._issued}",
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(call_args)},
                        }
                    ]
                return (
                    f"Thought: I should use {name}\nAction: {name}\n"
                    f"Action Input: {json.dumps(call_args)}"
                )
            answer = f"done: {seen if seen is not None else ''}"
        if script.function_calling:
            return answer
        return f"Thought: I now know the final answer\nFinal Answer: {answer}"

    async def acall(self, messages: str | list[Any], *args: Any, **kwargs: Any) -> Any:
        """Async twin of :meth:`call` (``Crew.akickoff``).

        Returns:
            Same as :meth:`call`.
        """
        return self.call(messages, *args, **kwargs)


@dataclass
class CrewRun:
    """A finished crew run.

    Attributes:
        output: What the kickoff returned (a ``CrewOutput``).
        script: The model's script, with the tool results it saw.
        crew: The crew.
    """

    output: Any
    script: Script
    crew: Any

    @property
    def final_answer(self) -> str:
        """The crew's final text."""
        return str(self.output.raw)


def run_crew(
    tools: Sequence[Any],
    calls: Iterable[tuple[str, dict[str, Any]]],
    *,
    function_calling: bool = True,
    mode: str = "sync",
    agent_kwargs: dict[str, Any] | None = None,
    task_kwargs: dict[str, Any] | None = None,
    crew_kwargs: dict[str, Any] | None = None,
) -> CrewRun:
    """Run a real ``Crew`` (one ``Agent``, one ``Task``) with a :class:`ScriptedLLM`.

    Args:
        tools: The agent's tools.
        calls: ``(tool_name, args)`` pairs the model makes, one per turn.
        function_calling: CrewAI's native function-calling path (True) or the ReAct path.
        mode: ``"sync"`` (``kickoff``), ``"async"`` (``kickoff_async``) or ``"akickoff"``.
        agent_kwargs: Extra ``Agent`` arguments (e.g. ``tool_failure_policy``).
        task_kwargs: Extra ``Task`` arguments.
        crew_kwargs: Extra ``Crew`` arguments (e.g. ``cache=True``).

    Returns:
        The :class:`CrewRun`.

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    llm = ScriptedLLM.create(calls, function_calling=function_calling)
    agent = Agent(
        role="Assistant",
        goal="Use the tools to answer",
        backstory="A careful assistant.",
        llm=llm,
        tools=list(tools),
        allow_delegation=False,
        verbose=False,
        **(agent_kwargs or {}),
    )
    task = Task(
        description="Use the tools as needed, then answer.",
        expected_output="A short answer.",
        agent=agent,
        **(task_kwargs or {}),
    )
    crew = Crew(agents=[agent], tasks=[task], verbose=False, **(crew_kwargs or {}))
    if mode == "sync":
        output = crew.kickoff()
    elif mode == "async":
        output = asyncio.run(crew.kickoff_async())
    else:
        output = asyncio.run(crew.akickoff())
    return CrewRun(output=output, script=llm.script, crew=crew)
