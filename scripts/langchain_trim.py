"""P2 peer: LangChain's trim_messages on the same 5 MB bundle flowfail prunes, end to end.

Usage: langchain_trim.py IN.json OUT.json [MAX_BYTES]

Reads the bundle, turns its turns into LangChain messages (the system prompt as a
SystemMessage), keeps the most recent turns that fit MAX_BYTES (default 180000) with
LangChain's own approximate counter (count_tokens_approximately: about 4 characters a
token), and writes the bundle back with the kept turns. Prints the in-process time of
parse -> trim -> write, without the import, on stderr.
"""

import json
import sys
import time

from langchain_core.messages import (
    AIMessage,
    HumanMessage,
    SystemMessage,
    trim_messages,
)
from langchain_core.messages.utils import count_tokens_approximately


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    max_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else 180_000
    start = time.perf_counter()
    with open(src, "rb") as f:
        bundle = json.load(f)
    messages = [SystemMessage(content=bundle.get("system_prompt", ""))]
    for turn in bundle["messages"]:
        cls = HumanMessage if turn["role"] == "user" else AIMessage
        messages.append(cls(content=turn["content"], additional_kwargs={"turn": turn["turn"]}))
    kept = trim_messages(
        messages,
        max_tokens=max_bytes // 4,
        token_counter=count_tokens_approximately,
        strategy="last",
        include_system=True,
        start_on="human",
    )
    out = dict(bundle)
    out["messages"] = [
        {
            "role": "user" if isinstance(m, HumanMessage) else "assistant",
            "turn": m.additional_kwargs.get("turn"),
            "content": m.content,
        }
        for m in kept
        if not isinstance(m, SystemMessage)
    ]
    with open(dst, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    took = time.perf_counter() - start
    print(f"langchain in-process parse+trim+write: {took * 1e3:.1f} ms; kept {len(out['messages'])} turns", file=sys.stderr)


if __name__ == "__main__":
    main()
