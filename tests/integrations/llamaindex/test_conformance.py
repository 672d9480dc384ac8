"""The shared integration contract, run against LlamaIndex's real loops.

Modes: ``sync`` (``llm.predict_and_call``), ``async`` (``FunctionAgent``), ``react``
(``ReActAgent``).
"""

from __future__ import annotations

from llamaindex_support import LlamaIndexDriver

from calltape.testing import ConformanceSuite


class TestLlamaIndexConformance(ConformanceSuite):
    driver = LlamaIndexDriver()
